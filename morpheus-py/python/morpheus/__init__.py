# SPDX-License-Identifier: GPL-2.0-only
"""Morpheus for Python asyncio services.

The ABI values below come from the native module, which takes them from the
one C definition shared with the kernel scheduler.
"""

from . import _morpheus as _native

ABI_VERSION: int = _native.ABI_VERSION
SCB_SIZE: int = _native.SCB_SIZE
DEFAULT_SOCKET_PATH: str = _native.DEFAULT_SOCKET_PATH
DEFAULT_GRACE_MS: int = _native.DEFAULT_GRACE_MS
WORKER_STATES: "dict[str, int]" = dict(_native.WORKER_STATES)
RUNTIME_MODES: "dict[str, int]" = dict(_native.RUNTIME_MODES)
YIELD_CAUSES: "dict[str, int]" = dict(_native.YIELD_CAUSES)
ESCALATION_POLICIES: "dict[str, int]" = dict(_native.ESCALATION_POLICIES)
__version__: str = _native.__version__

__all__ = [
    "ABI_VERSION",
    "SCB_SIZE",
    "DEFAULT_SOCKET_PATH",
    "DEFAULT_GRACE_MS",
    "WORKER_STATES",
    "RUNTIME_MODES",
    "YIELD_CAUSES",
    "ESCALATION_POLICIES",
    "__version__",
]
