# SPDX-License-Identifier: GPL-2.0-only
"""An asyncio service for the catch-up VM test: a Morpheus event loop on one
CPU with an echo server, and a long coroutine that computes, passing
``await morpheus.async_checkpoint()`` every K iterations.

    python vm_echo_server.py --cpu N [--seconds S] [--every K] [--pings P]

It registers, prints the server's port and waits for ``go`` on stdin (the
test pings it meanwhile, while it idles); then it prints ``busy`` and
computes for up to S seconds, or until P pings were answered during the
computation, prints ``done`` and its report as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import morpheus


async def serve(a: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    state = {"busy": False, "answered_busy": 0}

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1):
            if state["busy"]:
                state["answered_busy"] += 1
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    deadline = time.monotonic() + 30
    while morpheus.current_worker().slot is None:
        assert time.monotonic() < deadline, "never registered"
        await asyncio.sleep(0.01)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)

    before = morpheus.ledger().yields
    state["busy"] = True
    print("busy", flush=True)
    acc = i = 0
    end = time.monotonic() + a.seconds
    while time.monotonic() < end and state["answered_busy"] < a.pings:
        for _ in range(a.every):
            acc = (acc + i * i) % 1_000_003
            i += 1
        await morpheus.async_checkpoint()
    state["busy"] = False
    after = morpheus.ledger().yields
    server.close()
    return {
        "answered_busy": state["answered_busy"],
        "yields": {c: after[c] - before.get(c, 0) for c in after},
        "slot": morpheus.current_worker().slot,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cpu", type=int, required=True)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--pings", type=int, default=40)
    a = p.parse_args()
    os.sched_setaffinity(0, {a.cpu})
    loop = morpheus.new_event_loop()
    try:
        report = loop.run_until_complete(serve(a))
    finally:
        loop.close()
    print("done", flush=True)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
