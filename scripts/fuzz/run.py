"""The long fuzz run: hostile frames against a real ``collab serve`` process.

    .venv/bin/python scripts/fuzz/run.py --frames 1000000 [--connections 4] [--seed 1]
        [--seconds S] [--by-kind]

Starts ``python -m collab serve`` on a free port with a fresh SQLite file, lets
a normal editor (the Python client) type throughout, and sends ``--frames``
frames from scripts/fuzz/frames.py over ``--connections`` concurrent attackers
(each frame followed by two pings, see attack.py), or as many as fit in
``--seconds``. At the end it prints the frames
sent, the connections closed by close code (and by frame kind with --by-kind),
the crashes (must be 0: the process exited, a frame was answered with 1011 or
never answered, or the server logged a traceback), the server's maximum RSS, and
whether the document equals the normal editor's text. Exit status 1 when
anything of that went wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from attack import Outcome, attack
from pycrdt import Text

from collab.client import connect

ROOT = Path(__file__).resolve().parents[2]
MAX_SIZE = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _max_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(30):
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"collab serve exited with {proc.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)


async def _editor(url: str, stop: asyncio.Event) -> tuple[str, int]:
    """Type until ``stop``; return (the editor's text, characters typed)."""
    typed = 0
    async with connect(url, saved_acks=True) as client:
        await client.wait_synced()
        text = client.doc.get("text", type=Text)
        while not stop.is_set():
            text.insert(len(text), "abcdefghij"[typed % 10])
            typed += 1
            await asyncio.sleep(0.05)
        await client.wait_saved()
        await asyncio.sleep(0.5)  # anything the server still sends arrives
        return str(text), typed


async def run(args: argparse.Namespace) -> int:
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="collab-fuzz-"))
    log_path = folder / "server.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "collab", "serve", "--port", str(port),
        "--db", f"sqlite:///{folder / 'fuzz.db'}", "--max-message-size", str(MAX_SIZE),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        # Started once, before any await matters: blocking here is harmless.
        proc = subprocess.Popen(  # noqa: ASYNC220
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    try:
        await _wait_listening(port, proc)
        url = f"ws://127.0.0.1:{port}/fuzzed"
        stop = asyncio.Event()
        editor = asyncio.create_task(_editor(url, stop))
        started = time.monotonic()
        per = [args.frames // args.connections] * args.connections
        per[0] += args.frames - sum(per)
        results = await asyncio.gather(
            *(
                attack(
                    url,
                    random.Random(f"{args.seed}-{i}"),
                    n,
                    max_size=MAX_SIZE,
                    deadline=started + args.seconds if args.seconds else None,
                )
                for i, n in enumerate(per)
            )
        )
        elapsed = time.monotonic() - started
        stop.set()
        editor_text, typed = await editor
        total = Outcome()
        for result in results:
            total.merge(result)
        alive = proc.poll() is None
        rss = _max_rss_kib(proc.pid) if alive else 0
        server_text = await _server_text(url) if alive else None
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    logged = log_path.read_text(errors="replace")
    tracebacks = logged.count("Traceback")
    crashes = (0 if alive else 1) + total.closes.get(1011, 0) + total.hangs + tracebacks
    same = server_text == editor_text
    rate = total.sent / elapsed if elapsed else 0.0
    still_open = sum(count for (_, code), count in total.by_kind.items() if not code)
    closes = ", ".join(f"{code}: {count}" for code, count in sorted(total.closes.items()))
    ones = total.closes.get(1011, 0)
    lines = [
        f"frames sent: {total.sent} in {elapsed:.0f} s ({rate:.0f}/s), "
        f"{args.connections} attackers, seed {args.seed}",
        f"connections closed by code: {closes}",
        f"frames that left the connection open: {still_open}",
        *(
            f"  {kind:18} {code:5} {count}"
            for (kind, code), count in sorted(total.by_kind.items())
            if args.by_kind
        ),
        f"crashes: {crashes} (process {'up' if alive else 'DOWN'}, 1011: {ones}, "
        f"unanswered: {total.hangs}, tracebacks: {tracebacks})",
        f"handshakes refused: {total.refused}",
        f"server max RSS: {rss / 1024:.1f} MiB",
        f"normal editor typed {typed} characters; document equals its text: {same}",
    ]
    print("\n".join(lines))
    return 0 if crashes == 0 and same else 1


async def _server_text(url: str) -> str:
    async with connect(url) as reader:
        await reader.wait_synced()
        return str(reader.doc.get("text", type=Text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=10000, help="frames to send in all")
    parser.add_argument("--connections", type=int, default=4, help="concurrent attackers")
    parser.add_argument(
        "--seconds", type=float, default=0, help="stop sending after this long (0: never)"
    )
    parser.add_argument("--seed", default="1", help="seed of the attackers' generators")
    parser.add_argument("--by-kind", action="store_true", help="print closes per frame kind")
    args: Any = parser.parse_args(argv)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
