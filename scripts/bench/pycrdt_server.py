"""Run pycrdt-websocket, the Python peer collab is compared with, as its own process.

This is the integration pycrdt-websocket documents for the ``websockets`` library
(``serve(websocket_server.serve, host, port)`` inside ``async with WebsocketServer()``).
Since websockets 14 a connection no longer has a ``path`` attribute, which
pycrdt-websocket's ``Channel`` needs to pick the room, so ``_Channel`` adds it
and turns a closed connection into the end of iteration; nothing else is changed.

``--store none`` (the default) runs rooms without a store, which is how
``WebsocketServer`` builds them. ``--store sqlite`` gives every room a
pycrdt-store ``SQLiteYStore`` in one database file, the closest thing
pycrdt-websocket has to collab's durable log.

Usage: ``python scripts/bench/pycrdt_server.py --port 8123 [--store sqlite --db x.db]``.
Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import websockets
from pycrdt.store import SQLiteYStore
from pycrdt.websocket import WebsocketServer, YRoom
from websockets.asyncio.server import ServerConnection, serve


class _Channel:
    """pycrdt's ``Channel`` (path, send, recv, async iteration) over a websockets connection."""

    def __init__(self, connection: ServerConnection) -> None:
        self._connection = connection
        self.path = connection.request.path if connection.request else "/"

    def __aiter__(self) -> _Channel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except websockets.ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        try:
            await self._connection.send(message)
        except websockets.ConnectionClosed:
            pass  # the reader side ends the room's serve loop

    async def recv(self) -> bytes:
        message = await self._connection.recv()
        return message if isinstance(message, bytes) else message.encode()


class _StoredServer(WebsocketServer):
    """A WebsocketServer whose rooms persist to one SQLite file (pycrdt-store)."""

    def __init__(self, db_path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._db_path = db_path

    async def get_room(self, name: str) -> YRoom:
        if name not in self.rooms:
            store_class = type("BenchStore", (SQLiteYStore,), {"db_path": self._db_path})
            self.rooms[name] = YRoom(
                ready=self.rooms_ready,
                ystore=store_class(path=name),
                exception_handler=self.exception_handler,
                log=self.log,
            )
        room = self.rooms[name]
        await self.start_room(room)
        return room


async def _main(host: str, port: int, store: str, db: str) -> None:
    from pycrdt.websocket import exception_logger

    ws_server: WebsocketServer
    if store == "sqlite":
        ws_server = _StoredServer(db, exception_handler=exception_logger)
    else:
        ws_server = WebsocketServer(exception_handler=exception_logger)

    async def handler(connection: ServerConnection) -> None:
        await ws_server.serve(_Channel(connection))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with ws_server, serve(handler, host, port):
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", choices=("none", "sqlite"), default="none")
    parser.add_argument("--db", default="pycrdt-bench.db", help="SQLite file for --store sqlite")
    args = parser.parse_args()
    asyncio.run(_main(args.host, args.port, args.store, args.db))


if __name__ == "__main__":
    main()
