# SPDX-License-Identifier: GPL-2.0-only
"""pytest setup: the environment every host test runs in (see _support)."""

import _support  # noqa: F401  (sets the MORPHEUS_* environment first)
