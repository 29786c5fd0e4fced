"""A real HTTP server on 127.0.0.1 that records webhook deliveries, for tests.

It answers each POST with the next status of ``statuses`` (then 200), or, with
``hang=True``, reads the request and never answers (a dead receiver that keeps the
connection open). Leaving the ``async with`` closes every connection it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Delivery:
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int  # what the receiver answered (0: nothing, it hung)

    @property
    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass(eq=False)
class Receiver:
    statuses: list[int] = field(default_factory=list)
    hang: bool = False
    deliveries: list[Delivery] = field(default_factory=list)
    port: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self, name: str) -> list[dict[str, Any]]:
        """Bodies of the deliveries of event ``name`` the receiver accepted (2xx)."""
        return [d.json for d in self.deliveries if d.json["event"] == name and d.status == 200]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._arrived.clear()
                await self._arrived.wait()

    async def recover(self) -> None:
        """Stop hanging: drop every connection held open, answer from now on."""
        self.hang = False
        for writer in list(self._writers):
            writer.close()
        await asyncio.sleep(0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if self.hang:
                self.deliveries.append(Delivery(headers, body, 0))
                self._arrived.set()
                await reader.read()  # until either side closes the connection
                return
            status = self.statuses.pop(0) if self.statuses else 200
            self.deliveries.append(Delivery(headers, body, status))
            self._arrived.set()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()


@contextlib.asynccontextmanager
async def receiver(
    statuses: list[int] | None = None, hang: bool = False
) -> AsyncIterator[Receiver]:
    state = Receiver(list(statuses or []), hang)
    server = await asyncio.start_server(state._serve, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for writer in list(state._writers):
            writer.close()
        if state._handlers:
            await asyncio.wait(state._handlers, timeout=5)
        with contextlib.suppress(Exception):
            await server.wait_closed()
