"""A TCP proxy a test controls, to cut a network for real.

``cut()`` aborts every proxied connection (RST, no WebSocket close frame) and
refuses new ones until ``restore()``; bytes forwarded are counted each way, so
a test can tell how much crossed the wire on a resync.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class NetProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.up = True
        self.to_server = 0
        self.to_client = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    def cut(self) -> None:
        """Drop every connection without a close frame and refuse new ones."""
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    def reset_counters(self) -> None:
        self.to_server = self.to_client = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst, field in ((reader, up_writer, "to_server"), (up_reader, writer, "to_client")):
            task = asyncio.create_task(self._pipe(src, dst, field))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, field: str
    ) -> None:
        try:
            while data := await src.read(65536):
                if not self.up:
                    break
                setattr(self, field, getattr(self, field) + len(data))
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.transport.abort()
            self._writers.discard(dst)


@contextlib.asynccontextmanager
async def net_proxy(target_port: int) -> AsyncIterator[NetProxy]:
    proxy = NetProxy(target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
