"""The network server: the only module that imports ``websockets``.

One asyncio server on one port. WebSocket upgrades edit the document named by
the last segment of the URL path (``ws://host:8000/notes`` edits ``notes``, as
stock y-websocket providers build it); plain HTTP GETs on the same port go to
the pages and the history API. Each connection has one reader loop (this
module) and no writer task: frames are serialized once and written straight into
each connection's transport, and a transport whose buffer passes
``outbox_max_bytes`` closes that one connection with 1013.

Errors become close codes in exactly one place, :meth:`Server._session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from collab import history, http_api, pages, protocol
from collab.config import Config
from collab.errors import CloseCode, CollabError, ProtocolError, SlowConsumer, StoreError
from collab.http import HttpResponse, json_error
from collab.journal import Journal
from collab.names import valid_name
from collab.protocol import Saved, Update
from collab.rooms import Rooms
from collab.store import Store, store_from_url

log = logging.getLogger("collab.server")

#: Query parameter by which a client asks for durability acknowledgements.
SAVED_PARAM = "saved"
#: Seconds a slow consumer gets to read its close frame before the TCP connection is cut.
SLOW_CLOSE_GRACE = 1.0


@dataclass(eq=False, slots=True)
class Connection:
    """One editor's WebSocket, as the room sees it (a ``room.Peer``).

    Frames are written straight into the transport: no task, no queue, no await.
    This is sound because collab never fragments messages and negotiates no
    extension, so whole frames interleave safely with the pings and the close
    frame websockets itself writes.
    """

    ws: ServerConnection
    id: str
    max_bytes: int
    wants_acks: bool = False
    user: str | None = None
    read_only: bool = False
    closing: SlowConsumer | None = None
    _closer: asyncio.Task[None] | None = None
    _saved: int = 0
    _ack_scheduled: bool = field(default=False)

    def send(self, frame: bytes) -> None:
        """Write ``frame`` without waiting; close this editor if it cannot keep up."""
        if self.closing is not None:
            return
        ws = self.ws
        if ws.protocol.state is not State.OPEN:
            return  # closing: websockets owns the connection's last frames
        transport = ws.transport
        buffered = transport.get_write_buffer_size()
        if buffered and buffered + len(frame) > self.max_bytes:
            # Never grow without bound and never slow the sender: drop this editor.
            # It reconnects and resyncs from its state vector, losing nothing.
            self.closing = SlowConsumer(f"outbox over {self.max_bytes} bytes")
            # The close frame waits behind the backlog. A peer that reads again gets
            # it; one that never does is cut after a short grace, not close_timeout.
            self._closer = asyncio.create_task(
                self.ws.close(self.closing.close_code, _close_reason(self.closing.reason))
            )
            asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE, transport.abort)
            return
        transport.write(_wire_frame(frame))

    def saved(self) -> None:
        """Count one durable update; acks are coalesced into one frame per loop turn."""
        self._saved += 1
        if not self._ack_scheduled:
            self._ack_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_saved)

    def _send_saved(self) -> None:
        self._ack_scheduled = False
        self.send(protocol.encode(Saved(self._saved)))


class Server:
    """A running collab server. Build it with :func:`serve`."""

    def __init__(self, config: Config, store: Store, journal: Journal, rooms: Rooms) -> None:
        self.config = config
        self.store = store
        self.journal = journal
        self.rooms = rooms
        self._ws: WsServer | None = None
        self._connections: set[Connection] = set()

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with ``Config(port=0)``)."""
        assert self._ws is not None
        for sock in self._ws.sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("server is not listening")

    @property
    def connections(self) -> int:
        """How many editors are connected now."""
        return len(self._connections)

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        url = urlsplit(request.path)
        query = dict(parse_qsl(url.query))
        if "websocket" in request.headers.get("Upgrade", "").lower():
            name = _document_name(url.path)
            if not valid_name(name, self.config):
                return _response(
                    json_error(
                        400,
                        "invalid document name: use 1 to "
                        f"{self.config.max_name_length} characters from A-Z a-z 0-9 . _ -",
                    )
                )
            return None
        answer = pages.respond(url.path, query)
        if answer is None:
            answer = await http_api.respond(self.store, self.config, url.path, query)
        if answer is None:
            answer = json_error(404, "not found")
        return _response(answer)

    async def _session(self, ws: ServerConnection) -> None:
        """Serve one editor from handshake to close."""
        assert ws.request is not None
        url = urlsplit(ws.request.path)
        query = dict(parse_qsl(url.query))
        name = _document_name(url.path)
        peer = Connection(
            ws,
            id=secrets.token_hex(4),
            max_bytes=self.config.outbox_max_bytes,
            wants_acks=query.get(SAVED_PARAM) in ("1", "true"),
        )
        try:
            room = await self.rooms.acquire(name)
        except StoreError as exc:
            log.error("%s: cannot load %r: %s", peer.id, name, exc.reason)
            await ws.close(CloseCode.TRY_AGAIN_LATER, "document unavailable")
            return
        self._connections.add(peer)
        room.join(peer)
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    raise ProtocolError("text frames are not part of the protocol")
                message = protocol.decode(frame)
                room.receive(peer, message, frame if isinstance(message, Update) else None)
                if peer.closing is not None:
                    raise peer.closing
        except CollabError as exc:
            log.warning("closing %s on %r: %s (%d)", peer.id, name, exc.reason, exc.close_code)
            await ws.close(exc.close_code, _close_reason(exc.reason))
        except ConnectionClosed as exc:
            if peer.closing is not None:
                log.warning("closed %s on %r: %s", peer.id, name, peer.closing.reason)
            elif exc.rcvd is None and exc.sent is not None and exc.sent.code != 1000:
                log.warning(
                    "closed %s on %r: %s (%d)", peer.id, name, exc.sent.reason, exc.sent.code
                )
        except Exception:
            log.exception("closing %s on %r: internal error", peer.id, name)
            await ws.close(CloseCode.INTERNAL_ERROR)
        finally:
            self._connections.discard(peer)
            room.leave(peer)
            self.rooms.release(room)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.config.awareness_renewal_interval)
            self.rooms.tick()

    async def _thin_history(self) -> None:
        """Apply the retention policy to every document, once per ``retention_interval``."""
        while True:
            await asyncio.sleep(self.config.retention_interval)
            try:
                for info in await self.store.documents():
                    removed = await history.apply_retention(
                        self.store, self.config, info.name, time.time()
                    )
                    if removed:
                        log.info("retention merged %d entries of %r", removed, info.name)
            except CollabError as exc:
                log.error("retention failed: %s", exc.reason)


def _wire_frame(message: bytes) -> bytes:
    """``message`` as a WebSocket binary frame, serialized once for every recipient.

    A room hands the same bytes object to each of its editors; server frames are
    unmasked and we negotiate no extension, so the frame is identical for all of
    them: it is serialized once, not once per connection as ``websockets.broadcast``
    does.
    """
    global _last_message, _last_frame
    if message is _last_message:
        return _last_frame
    frame = Frame(Opcode.BINARY, message).serialize(mask=False)
    if len(message) <= _CACHED_FRAME_MAX:  # never pin a big first sync in memory
        _last_message, _last_frame = message, frame
    return frame


_CACHED_FRAME_MAX = 64 * 1024
_last_message: bytes = b""
_last_frame: bytes = Frame(Opcode.BINARY, b"").serialize(mask=False)


def _close_reason(reason: str) -> str:
    """A close frame's reason may hold at most 123 bytes of UTF-8."""
    return reason.encode()[:123].decode(errors="ignore")


def _document_name(path: str) -> str:
    return unquote(path.rstrip("/").rsplit("/", 1)[-1])


def _response(answer: HttpResponse) -> Response:
    headers = Headers()
    headers["Content-Type"] = answer.content_type
    headers["Content-Length"] = str(len(answer.body))
    for key, value in answer.headers.items():
        headers[key] = value
    reason = http.HTTPStatus(answer.status).phrase
    return Response(answer.status, reason, headers, answer.body)


@contextlib.asynccontextmanager
async def serve(config: Config, store: Store | None = None) -> AsyncIterator[Server]:
    """Run a collab server for the duration of the ``async with`` block.

    ``store`` defaults to the one ``config.db_url`` names; a store passed in is
    opened and closed by the caller. On exit, editors are closed with 1001, every
    accepted update is committed and every loaded document snapshotted.
    """
    own_store = store is None
    the_store = store_from_url(config.db_url) if store is None else store
    if own_store:
        await the_store.open()
    try:
        async with Journal(the_store, config) as journal:
            rooms = Rooms(config, the_store, journal)
            server = Server(config, the_store, journal, rooms)
            ws_server = await ws_serve(
                server._session,
                config.host,
                config.port,
                process_request=server._process_request,
                # Yjs updates are small and binary: per-message deflate would cost CPU
                # and ~100 KiB of zlib state per connection for little gain.
                compression=None,
                max_size=config.max_message_size,
                max_queue=64,
                ping_interval=config.ping_interval,
                ping_timeout=config.ping_timeout,
                close_timeout=config.close_timeout,
                server_header="collab",
            )
            server._ws = ws_server
            background = [
                asyncio.create_task(server._tick(), name="collab tick"),
                asyncio.create_task(server._thin_history(), name="collab retention"),
            ]
            try:
                yield server
            finally:
                for task in background:
                    task.cancel()
                ws_server.close()  # closes every connection with 1001 (going away)
                await ws_server.wait_closed()
                await rooms.close()
    finally:
        if own_store:
            await the_store.close()


def run(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly (the CLI's ``serve``)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with serve(config) as server:
            log.info(
                "collab serving on ws://%s:%d (store %s)",
                config.host,
                server.port,
                _redact(config.db_url),
            )
            await stop.wait()
            log.info("stopping: closing %d connections", server.connections)
        log.info("stopped")

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed: the same asyncio API, less CPU per frame written."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


__all__ = ["Connection", "Server", "run", "serve"]
