"""collab as a real process, for crash and signal tests.

``native`` runs ``python -m collab serve``; ``asgi`` runs the ASGI app under
uvicorn (``uvicorn --factory collab.asgi:from_env``), configured by ``COLLAB_*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(
        self,
        db_url: str,
        port: int,
        log: Path,
        kind: str = "native",
        flags: Sequence[str] = (),
        env: Mapping[str, str] = {},
    ) -> None:
        self.kind = kind
        self.db_url = db_url
        self.port = port
        self.log = log
        self.flags = list(flags)
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait (up to ``timeout`` s) until its port accepts."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), "COLLAB_DB_URL": self.db_url, **self.env}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        async with asyncio.timeout(timeout):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log.read_text()}")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                return

    def command(self) -> list[str]:
        address = ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.kind == "native":
            return [
                *(sys.executable, "-m", "collab", "serve", *address, "--db", self.db_url),
                *self.flags,
            ]
        return [
            *(sys.executable, "-m", "uvicorn", "--factory", "collab.asgi:from_env", *address),
            *("--http", "httptools", "--ws", "websockets-sansio", "--log-level", "warning"),
        ]

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, 30)

    def url(self, doc: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{doc}"


@contextlib.asynccontextmanager
async def server_process(
    db_url: str, log: Path, kind: str = "native"
) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(db_url, free_port(), log, kind)
    await server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()
