"""One way to start "a collab server" of either kind, for tests that must pass on both.

- ``native``: ``collab.server.serve`` (what ``collab serve`` runs);
- ``asgi``: ``collab.asgi.create_app`` under a real uvicorn (httptools HTTP, the
  websockets sans-I/O WebSocket implementation), in this process, on a free port.

Both yield an object with the same attributes (``port``, ``config``, ``store``,
``journal``, ``rooms``, ``connections``), so a test reads the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

import uvicorn

from collab.asgi import create_app
from collab.config import Config
from collab.core.journal import Journal
from collab.core.rooms import Rooms
from collab.runtime import Runtime
from collab.server import serve as serve_native
from collab.store import Store
from collab.transports.asgi import CollabApp

KINDS = ("native", "asgi")


class RunningServer(Protocol):
    @property
    def port(self) -> int: ...
    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> Store: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def rooms(self) -> Rooms: ...
    @property
    def connections(self) -> int: ...
    @property
    def runtime(self) -> Runtime: ...


class AsgiServer:
    """collab's ASGI app served by uvicorn."""

    def __init__(self, app: CollabApp, server: uvicorn.Server) -> None:
        self.app = app
        self.server = server

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def config(self) -> Config:
        return self.app.config

    @property
    def store(self) -> Store:
        return self.app.runtime.store

    @property
    def journal(self) -> Journal:
        return self.app.runtime.journal

    @property
    def rooms(self) -> Rooms:
        return self.app.runtime.rooms

    @property
    def connections(self) -> int:
        return self.app.connections

    @property
    def runtime(self) -> Runtime:
        return self.app.runtime


def uvicorn_config(app: CollabApp, port: int = 0) -> uvicorn.Config:
    """uvicorn settings that match ``app.config`` (docs/asgi.md gives the same)."""
    config = app.config
    return uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        ws="websockets-sansio",
        lifespan="on",
        log_level="warning",
        ws_max_size=config.max_message_size,
        ws_per_message_deflate=False,  # as collab serve: Yjs updates are small binary deltas
        ws_ping_interval=config.ping_interval,
        ws_ping_timeout=config.ping_timeout,
        # collab reads X-Forwarded-For itself, from config.forwarded_allow_ips only
        # (uvicorn's own reading trusts 127.0.0.1 by default; docs/asgi.md).
        proxy_headers=False,
        # Open responses (HTTP fallback event streams) hold uvicorn's shutdown until they
        # end; they are cut after this, then the lifespan shutdown closes their sessions.
        timeout_graceful_shutdown=max(1, round(config.close_timeout)),
    )


@contextlib.asynccontextmanager
async def running(config: uvicorn.Config) -> AsyncIterator[uvicorn.Server]:
    """uvicorn serving ``config`` in this event loop, started, for the ``async with`` block."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def serve_asgi(config: Config, store: Store | None = None) -> AsyncIterator[AsgiServer]:
    app = create_app(config, store)
    async with running(uvicorn_config(app)) as server:
        yield AsgiServer(app, server)


@contextlib.asynccontextmanager
async def serve(
    kind: str, config: Config, store: Store | None = None
) -> AsyncIterator[RunningServer]:
    """A server of ``kind`` (``native`` or ``asgi``) for the ``async with`` block."""
    if kind == "native":
        async with serve_native(config, store) as native:
            yield native
    elif kind == "asgi":
        async with serve_asgi(config, store) as asgi:
            yield asgi
    else:
        raise ValueError(kind)
