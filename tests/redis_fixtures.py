"""A Redis server of the test's own: started on a free port, stopped and restarted by pid.

The machine's Redis on 6379 is shared by everyone on it and is never touched: each
test that needs Redis runs ``redis-server --port P --save ""`` (no persistence,
so a restart starts empty, as a crashed Redis would) and stops it by its pid.
Without ``redis-server`` the test is skipped, or fails under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.serverproc import free_port


class RedisServer:
    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server")
            return
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--save", "", "--appendonly", "no"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        async with asyncio.timeout(10):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self.log.read_text()}")
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.02)
                    continue
                writer.write(b"PING\r\n")
                answer = await reader.readline()
                writer.close()
                if answer.startswith(b"+PONG"):
                    return
                await asyncio.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM to this server's pid, and wait: every connection to it drops."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path / "redis.log")
    await server.start()
    try:
        yield server
    finally:
        server.stop()
