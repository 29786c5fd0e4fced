"""collab as an ASGI 3 application: the same runtime behind uvicorn, hypercorn or a
FastAPI/Starlette mount.

Three scope types, each a thin adapter:

- ``lifespan``: startup opens the :class:`~collab.runtime.Runtime` (store, journal,
  rooms); shutdown closes every editor with 1001, commits and snapshots. A
  Starlette ``Mount`` does not forward lifespan events to the app it mounts, so
  the runtime also starts on the first request, and :meth:`CollabApp.lifespan`
  hands the host application a lifespan to run it in (docs/asgi.md).
- ``http``: the request (body bounded by ``max_message_size``) goes to the one
  :class:`~collab.http.router.Router`; streamed responses are sent chunk by
  chunk and stop when the client disconnects.
- ``websocket``: the :class:`~collab.core.gate.Gate` admits or refuses the
  upgrade (a refusal is an HTTP answer where the server supports the
  ``websocket.http.response`` extension, else a close before accepting); the
  session core does the rest through :class:`AsgiSocket`.

Documents are named by the path below the mount point (``root_path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from collab.config import Config
from collab.core import metrics
from collab.core.gate import Receiver
from collab.errors import CloseCode, CollabError, MessageTooBig
from collab.http.messages import HttpRequest, HttpResponse, json_error
from collab.runtime import Runtime, open_runtime
from collab.store import Store

__all__ = ["AsgiSocket", "CollabApp", "create_app", "from_env"]

log = logging.getLogger("collab.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def from_env() -> CollabApp:
    """An app configured from ``COLLAB_*`` variables: ``uvicorn --factory collab.asgi:from_env``."""
    return CollabApp(Config.from_env())


def create_app(config: Config | None = None, store: Store | None = None) -> CollabApp:
    """An ASGI app serving collab's WebSocket endpoint, HTTP API and pages.

    ``store`` defaults to the one ``config.db_url`` names (opened and closed by the app).
    """
    return CollabApp(config or Config.from_env(), store)


class CollabApp:
    """The ASGI application. Build it with :func:`create_app`."""

    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self._store = store
        self._runtime: Runtime | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._starting: asyncio.Lock | None = None
        self._sockets: set[AsgiSocket] = set()
        self._no_sockets = asyncio.Event()

    @property
    def runtime(self) -> Runtime:
        """The running runtime (after startup or the first request)."""
        assert self._runtime is not None, "collab's ASGI app has not started"
        return self._runtime

    @property
    def connections(self) -> int:
        """How many WebSocket sessions are open now."""
        return sum(1 for socket in self._sockets if socket.open)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        runtime = await self.start()
        if kind == "http":
            await self._http(runtime, scope, receive, send)
        elif kind == "websocket":
            await self._websocket(runtime, scope, receive, send)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> Runtime:
        """Open the runtime once (idempotent; concurrent callers share one start)."""
        if self._runtime is not None:
            return self._runtime
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._runtime is None:
                stack = contextlib.AsyncExitStack()
                self._runtime = await stack.enter_async_context(
                    open_runtime(self.config, self._store)
                )
                self._stack = stack
                log.info("collab started (store %s)", self.config.db_url.split("@")[-1])
        return self._runtime

    async def stop(self) -> None:
        """Close every editor with 1001, then commit and snapshot everything. Idempotent."""
        for socket in list(self._sockets):
            socket.close(CloseCode.GOING_AWAY, "server shutting down")
        if self._sockets:
            self._no_sockets.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.close_timeout):
                    await self._no_sockets.wait()
        stack, self._stack, self._runtime = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """A lifespan for the host app: ``FastAPI(lifespan=collab_app.lifespan)``."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.exception("collab failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP -----------------------------------------------------------------------------------

    async def _http(self, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._body(receive)
        except MessageTooBig as exc:
            await _send_response(send, json_error(exc.http_status, exc.reason))
            return
        except ConnectionError:
            return
        request = HttpRequest(
            method=scope["method"],
            path=_path_below_mount(scope),
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=_headers(scope),
            body=body,
            client=":".join(str(part) for part in scope.get("client") or ()),
            root_path=_mount(scope),
        )
        response = await runtime.router.handle(request)
        if response.stream is None:
            await _send_response(send, response, head=request.method == "HEAD")
        else:
            await _send_stream(send, receive, response)

    async def _body(self, receive: Receive) -> bytes:
        limit = self.config.max_message_size
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionError("client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise MessageTooBig(f"the request body is over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- WebSocket ------------------------------------------------------------------------------

    async def _websocket(
        self, runtime: Runtime, scope: Scope, receive: Receive, send: Send
    ) -> None:
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            client = ":".join(str(part) for part in scope.get("client") or ())
            entry = runtime.gate.admit(_path_below_mount(scope), query, _headers(scope), client)
        except CollabError as exc:
            metrics.HANDSHAKES_REFUSED.inc(str(exc.http_status))
            log.info("refused an upgrade of %s: %s", scope.get("path"), exc.reason)
            await _refuse(scope, send, json_error(exc.http_status, exc.reason))
            return
        try:
            await send({"type": "websocket.accept", "headers": [(b"server", b"collab")]})
        except BaseException:  # the client went before the accept: its slot goes back
            entry.abandon()
            raise
        socket = AsgiSocket(send, self.config)
        self._sockets.add(socket)
        try:
            receiver = await entry.start(socket)  # the entry's slot is the session's now
            if receiver is not None:
                await socket.serve(receive, receiver)
            else:
                await socket.drain(receive)
        finally:
            self._sockets.discard(socket)
            if not self._sockets:
                self._no_sockets.set()
            await socket.aclose()


class AsgiSocket:
    """An accepted ASGI WebSocket: a :class:`~collab.core.session.Transport`.

    ASGI's ``send`` awaits, so messages wait in a queue drained by one writer
    task; ``buffered`` counts the queued bytes, which is what the session's flow
    control bounds. A slow reader therefore costs only itself: its session is
    closed with 1013 at ``outbox_max_bytes`` and the queue is dropped.
    """

    def __init__(self, send: Send, config: Config) -> None:
        self._send = send
        self._config = config
        self._queue: deque[bytes | str] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._closed = asyncio.Event()
        self._writer = asyncio.create_task(self._write_all())
        self.open = True  # until the session ended

    # -- the session core's Transport -----------------------------------------------------------

    def write(self, message: bytes) -> None:
        if self._close is None:
            self._queue.append(message)
            self._queued += len(message)
            self._wakeup.set()

    def write_text(self, message: str) -> None:
        """Send one text message (signaling speaks JSON text frames)."""
        if self._close is None:
            self._queue.append(message)
            self._queued += len(message)
            self._wakeup.set()

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
            self._queue.clear()  # the client resyncs on reconnect; nothing is lost
            self._queued = 0
            self._wakeup.set()

    #: Always measure :attr:`buffered` (a queue's size: cheap, and never paused).
    congested = True

    @property
    def buffered(self) -> int:
        return self._queued

    # -- driven by the app ----------------------------------------------------------------------

    async def serve(self, receive: Receive, receiver: Receiver) -> None:
        """Feed ``receiver`` every message until the connection ends, then end it."""
        limit = self._config.max_message_size
        code: int | None = None
        reason = ""
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    data = message.get("bytes")
                    payload: bytes | str = data if data is not None else message.get("text", "")
                    if len(payload) > limit:
                        error = MessageTooBig(f"a message over {limit} bytes")
                        self.close(error.close_code, error.reason)
                        code, reason = error.close_code, error.reason
                        break
                    receiver.receive(payload)
                elif kind == "websocket.disconnect":
                    if self._close is None:
                        code = int(message.get("code", CloseCode.NORMAL))
                        reason = str(message.get("reason") or "")
                    break
        finally:
            self.open = False
            receiver.end(code, reason)
        await self.drain(receive)

    async def drain(self, receive: Receive) -> None:
        """After a close we started, wait (bounded) for the writer to send it."""
        if self._close is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.close_timeout):
                await self._closed.wait()

    async def aclose(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._writer

    async def _write_all(self) -> None:
        send = self._send
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue and self._close is None:
                    message = self._queue.popleft()
                    if isinstance(message, bytes):
                        await send({"type": "websocket.send", "bytes": message})
                    else:
                        await send({"type": "websocket.send", "text": message})
                    self._queued -= len(message)
                if self._close is not None:
                    code, reason = self._close
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                    self._closed.set()
                    return
        except Exception:  # the connection went: sends fail; the receive loop ends it
            self._closed.set()


def _path_below_mount(scope: Scope) -> str:
    """The raw path (still percent-encoded) below ``root_path``."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"])
    root = _mount(scope)
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :] or "/"
    return path.partition("?")[0]


def _mount(scope: Scope) -> str:
    """Where the app is mounted (``root_path``), percent-encoded, without a trailing ``/``."""
    return quote(scope.get("root_path", "").rstrip("/"))


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _response_headers(response: HttpResponse, length: int | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", response.content_type.encode()), (b"server", b"collab")]
    headers += [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
    if length is not None and b"content-length" not in (k for k, _ in headers):
        headers.append((b"content-length", str(length).encode()))
    return headers


async def _send_response(send: Send, response: HttpResponse, head: bool = False) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": _response_headers(response, len(response.body)),
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else response.body})


async def _send_stream(send: Send, receive: Receive, response: HttpResponse) -> None:
    stream = response.stream
    assert stream is not None
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": _response_headers(response, None),
        }
    )

    async def pump() -> None:
        async for chunk in stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping = asyncio.create_task(pump())
    watching = asyncio.create_task(disconnected())
    try:
        await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, watching):
            task.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)
        await stream.aclose()  # type: ignore[attr-defined]


async def _refuse(scope: Scope, send: Send, response: HttpResponse) -> None:
    """Refuse an upgrade: as HTTP where the server can, else close before accepting."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": response.status,
                "headers": _response_headers(response, len(response.body)),
            }
        )
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
