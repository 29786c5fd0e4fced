"""Instructions per edit of ``collab serve``, counted by valgrind's callgrind.

CPU seconds on this shared 2-core machine move by 10 % from one run to the next,
so a change worth 5-10 % cannot be seen in them without many runs. callgrind
counts the instructions the server executes in user space instead: the same
count for the same code and load whatever else the machine does (seen here:
177,885 and 177,811 for two runs of main). It does not count the kernel's work
(the socket writes) nor cache misses, so it complements scripts/bench/fanout.py,
it does not replace it.

The server runs under callgrind (about 50x slower) with ``--db memory://`` unless
told otherwise; one editor sends ``--warmup`` edits (imports, first document
load), the counters are zeroed, it sends ``--edits`` more, one every 20 ms, while
``--watchers`` other editors receive them; the counters are dumped and divided.

    .venv/bin/python scripts/bench/instructions.py                  # this checkout
    .venv/bin/python scripts/bench/instructions.py --repo ../other  # another one
    .venv/bin/python scripts/bench/instructions.py --watchers 9
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets
from pycrdt import Doc, Text, TransactionEvent

sys.path.insert(0, str(Path(__file__).resolve().parent))

from launch import REPO, free_port
from load import var_uint


def updates(count: int) -> list[bytes]:
    """``count`` update frames typed by one editor (at its cursor, a jump every 20)."""
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    out: list[bytes] = []

    def keep(event: TransactionEvent) -> None:
        out.append(event.update)

    doc.observe(keep)
    for i in range(count):
        text.insert(len(text) if i % 20 else 0, f"abc{i:06d} ")
    return [b"\x00\x02" + var_uint(len(u)) + u for u in out]


async def _type(port: int, frames: list[bytes], warmup: int, watchers: int, pid: int) -> None:
    url = f"ws://127.0.0.1:{port}/instructions"
    editor = await websockets.connect(url, compression=None, open_timeout=120)
    others = [
        await websockets.connect(url, compression=None, open_timeout=120) for _ in range(watchers)
    ]

    async def drain(ws: websockets.ClientConnection) -> None:
        async for _ in ws:
            pass

    readers = [asyncio.create_task(drain(ws)) for ws in [editor, *others]]
    for frame in frames[:warmup]:
        await editor.send(frame)
        await asyncio.sleep(0.02)
    await asyncio.sleep(3)
    await _control("-z", pid)
    for frame in frames[warmup:]:
        await editor.send(frame)
        await asyncio.sleep(0.02)
    await asyncio.sleep(3)
    await _control("-d", pid)
    for ws in [editor, *others]:
        await ws.close()
    for reader in readers:
        reader.cancel()


async def _control(flag: str, pid: int) -> None:
    process = await asyncio.create_subprocess_exec(
        "callgrind_control", flag, str(pid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    await process.wait()


def _wait_listening(port: int, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the server did not listen on {port} within {limit:g} s")


def count(repo: Path, edits: int, warmup: int, watchers: int, db: str) -> int:
    """Instructions the server at ``repo`` executed for ``edits`` edits (see the module)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (callgrind) is not installed")
    port = free_port()
    out = Path(tempfile.mkdtemp(prefix="collab-callgrind-"))
    env = dict(os.environ, COLLAB_MESSAGES_PER_SECOND="100000")
    server = subprocess.Popen(
        [
            *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p"),
            str(repo / ".venv" / "bin" / "python"),
            *("-m", "collab", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", db),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port)
        asyncio.run(_type(port, updates(warmup + edits), warmup, watchers, server.pid))
    finally:
        server.terminate()
        server.wait(60)
    dumps = sorted(out.glob("cg.*.1"))
    if not dumps:
        raise SystemExit(f"callgrind wrote no dump in {out}")
    summary = dumps[0].read_text(errors="replace")
    match = re.search(r"^summary:\s+(\d+)", summary, re.MULTILINE) or re.search(
        r"^totals:\s+(\d+)", summary, re.MULTILINE
    )
    if match is None:
        raise SystemExit(f"no instruction total in {dumps[0]}")
    shutil.rmtree(out, ignore_errors=True)
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout to measure")
    parser.add_argument("--edits", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--watchers", type=int, default=0)
    parser.add_argument("--db", default="memory://", help="the store (default memory://)")
    args = parser.parse_args()
    total = count(args.repo.resolve(), args.edits, args.warmup, args.watchers, args.db)
    print(
        f"{args.repo}: {total / args.edits:,.0f} instructions per edit "
        f"({args.edits} edits, {args.watchers} watchers, {args.db})"
    )


if __name__ == "__main__":
    main()
