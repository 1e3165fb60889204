# SPDX-License-Identifier: GPL-2.0-only
"""``python -m morpheus.run``: runs a Python program under Morpheus, like
``python`` itself would run it. ``python -m morpheus.run --help`` (the
``_HELP`` text below) says how.
"""

from __future__ import annotations

import logging
import os
import runpy
import sys
import types
from typing import List, Optional, Sequence

_USAGE = "usage: python -m morpheus.run [OPTIONS] (-m MODULE | -c CODE | SCRIPT) [ARGS...]"

# Options that take a value, and the key each sets in the parsed options.
_VALUE_OPTIONS = {
    "--budget-ms": "budget_ms",
    "--mode": "mode",
    "--sources": "sources",
    "--log-level": "log_level",
}

_HELP = f"""{_USAGE}

Runs a Python program as python would (python -m MODULE, python SCRIPT,
python -c CODE: same sys.argv, sys.path[0] and __main__), after turning on
Morpheus's event-loop integration (morpheus.install()): every standard
asyncio event loop the program runs registers its thread with Morpheus and
passes a checkpoint before each callback. The morpheus logger prints to
stderr (unless logging is configured already), so the one line saying
whether the scx_morpheus scheduler is in use shows.

options (before the program; MORPHEUS_*: the environment variable it overrides):
  --budget-ms MS     local time budget per worker (MORPHEUS_BUDGET_MS)
  --mode MODE        auto, deterministic, pressured or defensive
                     (MORPHEUS_MODE)
  --sources LIST     hint sources, e.g. kernel,budget (MORPHEUS_SOURCES)
  --log-level LEVEL  level of the morpheus logger on stderr (default INFO)
  --no-install       no event-loop integration (checkpoints only)
  --version          print the version of morpheus and exit
  -h, --help         print this help and exit

example (from morpheus-py/):
  python -m morpheus.run --budget-ms 5 -m uvicorn examples.fastapi_app:app \\
      --loop asyncio --port 8000

uvicorn: use --loop asyncio (uvloop has no per-callback hook). The new
interpreters of uvicorn --workers and --reload do not run under
morpheus.run; with uvicorn 0.36+, Morpheus's loop factory reaches them
(without morpheus.run):
  uvicorn --loop morpheus:new_event_loop examples.fastapi_app:app --workers 2
"""


class _UsageError(Exception):
    pass


def _parse(argv: Sequence[str]):
    """Splits our options from the program and its arguments."""
    opts = {"budget_ms": None, "mode": None, "sources": None, "log_level": "INFO", "install": True}
    args: List[str] = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-h", "--help"):
            print(_HELP, end="")
            raise SystemExit(0)
        if a == "--version":
            import morpheus

            print(f"morpheus {morpheus.__version__}")
            raise SystemExit(0)
        if a == "--no-install":
            opts["install"] = False
            i += 1
            continue
        name, eq, value = a.partition("=")
        key = _VALUE_OPTIONS.get(name)
        if key is not None:
            if not eq:
                if i + 1 >= len(args):
                    raise _UsageError(f"{name} needs a value")
                value = args[i + 1]
                i += 1
            opts[key] = value
            i += 1
            continue
        break
    rest = args[i:]
    if not rest:
        raise _UsageError("no program given")
    first = rest[0]
    if first in ("-m", "-c"):
        if len(rest) < 2:
            raise _UsageError(f"{first} needs an argument")
        return opts, first, rest[1], rest[2:]
    if first.startswith("-m") or first.startswith("-c"):
        return opts, first[:2], first[2:], rest[1:]
    if first.startswith("-"):
        raise _UsageError(f"unknown option {first}")
    return opts, "script", first, rest[1:]


def _setup_logging(level: str) -> None:
    """Shows the ``morpheus`` logger's records on stderr if the program has
    not configured logging (yet)."""
    logger = logging.getLogger("morpheus")
    try:
        logger.setLevel(level.upper())
    except ValueError as e:
        raise _UsageError(f"--log-level: {e}") from None
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``python -m morpheus.run``."""
    try:
        opts, kind, target, args = _parse(sys.argv[1:] if argv is None else argv)
        _setup_logging(opts["log_level"])
    except _UsageError as e:
        print(f"morpheus.run: {e}\n{_USAGE}\n(python -m morpheus.run --help for more)", file=sys.stderr)
        raise SystemExit(2) from None

    import morpheus

    config = {k: opts[k] for k in ("budget_ms", "mode", "sources") if opts[k] is not None}
    if config:
        if "budget_ms" in config:
            try:
                config["budget_ms"] = float(config["budget_ms"])
            except ValueError:
                print(f"morpheus.run: --budget-ms wants milliseconds, not {config['budget_ms']!r}", file=sys.stderr)
                raise SystemExit(2) from None
        try:
            morpheus.configure(**config)
        except morpheus.MorpheusError as e:
            print(f"morpheus.run: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    if opts["install"]:
        morpheus.install()

    if kind == "-m":
        sys.argv = [target, *args]  # argv[0] becomes the module's path
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif kind == "-c":
        sys.argv = ["-c", *args]
        module = types.ModuleType("__main__")
        sys.modules["__main__"] = module
        exec(compile(target, "<string>", "exec"), module.__dict__)
    else:
        sys.argv = [target, *args]
        sys.path[0] = os.path.dirname(os.path.abspath(target))
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main()
