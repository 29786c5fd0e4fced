"""The native listener: HTTP/1.1 (h11) and WebSocket upgrades on one port.

Each TCP connection starts as HTTP/1.1, parsed by h11: keep-alive, request
bodies (bounded by ``max_message_size``), ``Expect: 100-continue``, streamed
responses (chunked) and every method, each request answered by the one
:class:`~collab.http.router.Router`. A ``GET`` that asks to upgrade to WebSocket
goes to the :class:`~collab.core.gate.Gate` first: refused, it is answered as
plain HTTP with a JSON reason; admitted, websockets' sans-I/O protocol
completes the handshake and the connection becomes a
:class:`~collab.transports.websocket.WebSocket` for the rest of its life, with
no task of its own.

With ``certfile`` (and ``keyfile``) set, the listening socket speaks TLS only:
``https://`` and ``wss://`` on the same port, the same code above it (asyncio's
TLS transport sits between the socket and this protocol).

Why not uvicorn: the fan-out benchmark (docs/performance.md) measured what an
ASGI ``send`` per recipient costs against a frame written straight into the
transport; docs/architecture.md has the numbers and the choice.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
from email.utils import formatdate
from typing import Any

import h11
from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from collab.config import Config
from collab.core import metrics
from collab.core.gate import Entry, Gate
from collab.errors import CollabError, MessageTooBig
from collab.http.messages import HttpRequest, HttpResponse, json_error
from collab.http.router import Router
from collab.transports.websocket import WebSocket

__all__ = ["Listener"]

log = logging.getLogger("collab.listener")

#: Largest request head (request line and headers) accepted.
MAX_HEAD_BYTES = 64 * 1024
_SERVER = b"collab"
_REASONS = {status.value: status.phrase.encode() for status in http.HTTPStatus}


class Listener:
    """A listening socket serving ``router`` and ``gate``. Use :meth:`start`, :meth:`close`."""

    def __init__(self, config: Config, router: Router, gate: Gate) -> None:
        self.config = config
        self.router = router
        self.gate = gate
        #: The TLS context when ``config.certfile`` is set (then only TLS is spoken).
        self.tls = tls_context(config)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._drained = asyncio.Event()
        #: True once :meth:`close` began: a response finished now ends its connection.
        self.closing = False

    async def start(self, sock: Any = None) -> None:
        """Listen on ``config.host:config.port`` (or on the bound socket ``sock``)."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(self._connection, sock=sock, ssl=self.tls)
        else:
            # A worker of `collab serve --workers N` shares the port with its siblings;
            # the kernel spreads connections over them.
            self._server = await loop.create_server(
                self._connection,
                self.config.host,
                self.config.port,
                ssl=self.tls,
                reuse_port=self.config.worker_index is not None,
            )

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with ``Config(port=0)``)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def websockets(self) -> int:
        """How many WebSocket sessions are open now."""
        return sum(1 for c in self._connections if c.websocket is not None and c.websocket.open)

    async def close(self) -> None:
        """Stop accepting; close every WebSocket with 1001 and every idle HTTP connection."""
        if self._server is None:
            return
        self.closing = True
        self._server.close()
        for connection in list(self._connections):
            connection.shutdown()
        if self._connections:
            self._drained.clear()
            try:
                async with asyncio.timeout(self.config.close_timeout + 1):
                    await self._drained.wait()
            except TimeoutError:
                # Peers that never finished the closing handshake: cut them.
                for connection in list(self._connections):
                    connection.abort()
        await self._server.wait_closed()

    def _forget(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        if not self._connections:
            self._drained.set()

    def _connection(self) -> _Connection:
        return _Connection(self)


class _Connection(asyncio.Protocol):
    """One TCP connection: HTTP/1.1 until (and unless) it is upgraded."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.config = listener.config
        self.websocket: WebSocket | None = None
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._lost = False
        self._busy = False
        self._streaming = False

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.listener._connections.add(self)
        self._task = asyncio.create_task(self._serve_http())

    def data_received(self, data: bytes) -> None:
        if self.websocket is not None:
            self.websocket.data_received(data)
            return
        self._h11.receive_data(data)
        self._readable.set()
        if self._busy:  # don't buffer pipelined requests without bound
            assert self._transport is not None
            self._transport.pause_reading()

    def eof_received(self) -> bool | None:
        if self.websocket is not None:
            self.websocket.eof_received()
            return None
        self._h11.receive_data(b"")
        self._readable.set()
        # Keep the write side open to finish a response (TLS has no half-close: there
        # asyncio closes the connection after EOF whatever we say, and warns if we say it).
        return None if self.listener.tls is not None else True

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.listener._forget(self)
        self._readable.set()
        self._writable.set()
        if self.websocket is not None:
            self.websocket.connection_lost()
        elif self._task is not None and (self._streaming or not self._busy):
            # Idle, or sending an event stream nobody reads any more; a request
            # being answered (an edit, say) runs to its end.
            self._task.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()
        if self.websocket is not None:
            self.websocket.congested = True

    def resume_writing(self) -> None:
        self._writable.set()
        if self.websocket is not None:
            self.websocket.congested = False

    def shutdown(self) -> None:
        """Server shutdown: WebSockets get 1001; idle HTTP connections are closed."""
        if self.websocket is not None:
            self.websocket.close(1001, "server shutting down")
        elif self._streaming and self._task is not None:
            # An event stream ends when its source says so (the HTTP fallback closes its
            # sessions with 1001 before the listener); one that does not, or whose reader
            # is stuck, is cut after close_timeout.
            asyncio.get_running_loop().call_later(self.config.close_timeout, self._cut_stream)
        elif not self._busy:
            self._close()

    # -- HTTP -----------------------------------------------------------------------------------

    async def _serve_http(self) -> None:
        try:
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Request):
                    self._busy = True
                    if _wants_upgrade(event):
                        await self._upgrade(event)
                        return
                    if not await self._answer(event):
                        return
                    self._busy = False
                    if self._h11.our_state is h11.MUST_CLOSE or self._lost or self.listener.closing:
                        self._close()
                        return
                    self._h11.start_next_cycle()
                    assert self._transport is not None
                    self._transport.resume_reading()
                else:  # ConnectionClosed, or the client went quiet too long
                    self._close()
                    return
        except h11.RemoteProtocolError as exc:
            await self._refuse(exc.error_status_hint, str(exc))
        except TimeoutError:
            self._close()
        except Exception:
            log.exception("HTTP connection failed")
            self.abort()

    async def _next_event(self) -> Any:
        """The next h11 event, waiting for data as needed.

        A client that sends nothing for ``http_keepalive_timeout`` (between requests,
        ``idle``, or in the middle of one) is disconnected.
        """
        async with asyncio.timeout(self.config.http_keepalive_timeout):
            while True:
                event = self._h11.next_event()
                if event is not h11.NEED_DATA:
                    return event
                if self._lost:
                    return h11.ConnectionClosed()
                self._readable.clear()
                assert self._transport is not None
                self._transport.resume_reading()
                await self._readable.wait()

    async def _read_body(self, event: h11.Request) -> bytes:
        limit = self.config.max_message_size
        length = _header(event, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise MessageTooBig(f"the request body is over {limit} bytes")
        if self._h11.client_is_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[]))
        chunks: list[bytes] = []
        size = 0
        while True:
            part = await self._next_event()
            if isinstance(part, h11.Data):
                size += len(part.data)
                if size > limit:
                    raise MessageTooBig(f"the request body is over {limit} bytes")
                chunks.append(bytes(part.data))
            elif isinstance(part, h11.EndOfMessage):
                return b"".join(chunks)
            else:  # the connection went mid-body
                raise ConnectionError("request body cut off")

    async def _answer(self, event: h11.Request) -> bool:
        """Answer one request; False when the connection must end."""
        try:
            body = await self._read_body(event)
        except CollabError as exc:
            await self._write_response(json_error(exc.http_status, exc.reason), close=True)
            return False
        except ConnectionError:
            self._close()
            return False
        path, _, query = event.target.decode("latin-1").partition("?")
        request = HttpRequest(
            method=event.method.decode("ascii", errors="replace"),
            path=path,
            query_string=query,
            headers=_headers(event),
            body=body,
            client=self._peer(),
        )
        response = await self.listener.router.handle(request)
        await self._write_response(response, head=request.method == "HEAD")
        return not self._lost

    async def _write_response(
        self, response: HttpResponse, close: bool = False, head: bool = False
    ) -> None:
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"server", _SERVER),
            (b"date", formatdate(usegmt=True).encode()),
        ]
        headers += [(k.encode(), v.encode()) for k, v in response.headers.items()]
        if self.listener.config.worker_index is not None:
            headers.append((b"x-collab-worker", str(self.listener.config.worker_index).encode()))
        if response.stream is None and "content-length" not in (
            k.lower() for k in response.headers
        ):
            headers.append((b"content-length", str(len(response.body)).encode()))
        if close:
            headers.append((b"connection", b"close"))
        reason = _REASONS.get(response.status, b"")
        self._send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        if response.stream is None:
            if response.body and not head:
                self._send(h11.Data(data=response.body))
        else:
            await self._stream(response)
        if not self._lost:
            self._send(h11.EndOfMessage())
        if close:
            self._close()

    async def _stream(self, response: HttpResponse) -> None:
        stream = response.stream
        assert stream is not None
        self._streaming = True
        try:
            async for chunk in stream:
                if self._lost:
                    break
                self._send(h11.Data(data=chunk))
                await self._writable.wait()
        finally:
            self._streaming = False
            await stream.aclose()  # type: ignore[attr-defined]

    async def _refuse(self, status: int, reason: str) -> None:
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not self._lost:
            try:
                await self._write_response(json_error(status, reason), close=True)
                return
            except h11.LocalProtocolError:
                pass
        self._close()

    def _send(self, event: Any) -> None:
        data = self._h11.send(event)
        if data and self._transport is not None and not self._lost:
            self._transport.write(data)

    # -- WebSocket ------------------------------------------------------------------------------

    async def _upgrade(self, event: h11.Request) -> None:
        path, _, query = event.target.decode("latin-1").partition("?")
        try:
            entry = self.listener.gate.admit(path, query, _headers(event), self._peer())
        except CollabError as exc:
            metrics.HANDSHAKES_REFUSED.inc(str(exc.http_status))
            log.info("refused an upgrade of %s: %s", path, exc.reason)
            await self._write_response(json_error(exc.http_status, exc.reason), close=True)
            return
        try:
            opened = self._handshake(event, entry)
        except BaseException:
            entry.abandon()
            raise
        if opened is None:  # the handshake failed: the entry's slot goes back
            entry.abandon()
            return
        websocket, pending = opened
        # From here on the socket speaks WebSocket: data_received goes to it, even
        # while the document loads (the protocol buffers what arrives meanwhile).
        self.websocket = websocket
        assert self._transport is not None
        self._transport.pause_reading()
        receiver = await entry.start(websocket)  # the entry's slot is the session's now
        if self._lost:
            if receiver is not None:
                receiver.end()
            return
        self._transport.resume_reading()
        if receiver is not None:
            websocket.attach(receiver, pending)

    def _handshake(self, event: h11.Request, entry: Entry) -> tuple[WebSocket, bytes] | None:
        """Answer the upgrade of ``entry``: its WebSocket and the bytes that came after
        the request, or None (the connection closing) when websockets refused it."""
        # websockets checks the handshake (key, version, headers) and writes the 101;
        # a second protocol object, born OPEN, then parses frames from the first byte.
        handshake = ServerProtocol()
        request = WsRequest(
            event.target.decode("latin-1"),
            Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]),
        )
        response = handshake.accept(request)
        response.headers["Server"] = "collab"
        if self.listener.config.worker_index is not None:
            response.headers["X-Collab-Worker"] = str(self.listener.config.worker_index)
        handshake.send_response(response)
        assert self._transport is not None
        for data in handshake.data_to_send():
            if data:
                self._transport.write(data)
        if response.status_code != 101:
            self._close()
            return None
        pending, _ = self._h11.trailing_data
        protocol = ServerProtocol(state=State.OPEN, max_size=entry.max_message_size)
        return WebSocket(self._transport, protocol, self.config), bytes(pending)

    # -- helpers --------------------------------------------------------------------------------

    def _peer(self) -> str:
        assert self._transport is not None
        peer = self._transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _cut_stream(self) -> None:
        """Shutdown, close_timeout later: a stream still open is ended here."""
        if self._streaming and self._task is not None:
            self._task.cancel()  # closes the stream's iterator; the client reconnects elsewhere
            self._close()

    def abort(self) -> None:
        """Cut the TCP connection now."""
        if self._transport is not None:
            self._transport.abort()


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server-side TLS context ``config.certfile``/``keyfile`` name, or None (plain).

    Python's defaults for a server (TLS 1.2 or newer, its cipher list); clients are
    not asked for certificates. HTTP/1.1 is offered by ALPN, so a browser never tries
    HTTP/2 on this port.

    Raises:
        ValueError: a ``keyfile`` without a ``certfile``.
        OSError: a file cannot be read, or holds no usable certificate or key
            (``ssl.SSLError``); the message names the file.
    """
    if not config.certfile:
        if config.keyfile:
            raise ValueError("--keyfile needs --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(config.certfile, config.keyfile or None)
    except ssl.SSLError as exc:
        raise ssl.SSLError(
            f"cannot use {config.certfile!r}"
            + (f" with key {config.keyfile!r}" if config.keyfile else "")
            + f": {exc.reason or exc}"
        ) from None
    except OSError as exc:
        raise OSError(
            f"cannot read TLS file {exc.filename or config.certfile!r}: {exc.strerror}"
        ) from None
    return context


def _wants_upgrade(event: h11.Request) -> bool:
    upgrade = _header(event, b"upgrade")
    return upgrade is not None and "websocket" in upgrade.lower()


def _header(event: h11.Request, name: bytes) -> str | None:
    for key, value in event.headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _headers(event: h11.Request) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
