"""The HTTP fallback transport: y-websocket sessions over server-sent events and POSTs.

For networks that refuse WebSocket upgrades. Each fallback session is one
:class:`~collab.core.session.Session` (admitted by the same
:class:`~collab.core.gate.Gate` as an upgrade, so names and limits are checked
once), carried by plain HTTP requests that any server in front of the
:class:`~collab.http.router.Router` can answer (the native listener, an ASGI
server). docs/protocol.md ("HTTP fallback") has the wire; in short, for the
document at ``<doc>`` (the path a WebSocket would use)::

    POST   /_http/<doc>[?saved=1]           open a session: 201 {"session": ID, ...}
    GET    /_http/<doc>?session=ID          its event stream (Last-Event-ID: N resumes)
    POST   /_http/<doc>?session=ID&seq=N    a batch of messages, applied once per seq
    DELETE /_http/<doc>?session=ID          close it (1000)

Guarantees, and where they live:

- *Nothing lost or repeated across a dropped stream*: every message the session
  core writes is numbered and kept in a replay buffer (:class:`EventStream`) until
  a later stream's ``Last-Event-ID`` confirms it or newer messages push it out.
- *Flow control as for WebSockets*: what no stream has taken yet is what
  ``buffered`` reports, so a client that stops reading, or stays away, is closed
  with 1013 by the session core once it passes ``outbox_max_bytes``.
- *A retried POST is applied once*: messages carry the session's next sequence
  number; a number already applied is acknowledged again, and not re-applied.
- *Bounded lifetime*: a session with no event stream and no request for
  ``fallback_session_idle_seconds`` ends, as a dropped connection does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import Any

from collab.config import Config
from collab.core import metrics
from collab.core.gate import DocumentEntry, Gate, Receiver
from collab.errors import CloseCode, CollabError, InvalidRequest, NotFound, SessionExpired
from collab.http.messages import HttpRequest, HttpResponse, json_response
from collab.http.router import Route
from collab.wire.fallback import KEEPALIVE, close_event, decode_batch, message_event

__all__ = ["PREFIX", "EventStream", "Fallback"]

log = logging.getLogger("collab.fallback")

#: Where the fallback's endpoints live; below it, the document's own path.
PREFIX = "/_http"
#: Query parameters of the fallback's requests.
SESSION_PARAM = "session"
SEQ_PARAM = "seq"
#: Raw message bytes coalesced into one chunk of an event stream (one message may be more).
CHUNK_BYTES = 64 * 1024

_NO_STORE = {"Cache-Control": "no-store"}
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStream:
    """The server-to-client half of one fallback session: its session core's Transport.

    Every message written gets the next event id (from 1) and waits in a replay
    buffer. One event stream at a time takes them (:meth:`attach`); a newer
    stream replaces an older one. Messages stay in the buffer after a stream has
    taken them, until a later stream confirms them with ``Last-Event-ID`` or until
    the buffer holds more than ``outbox_max_bytes`` and the oldest taken ones are
    dropped. :attr:`buffered` counts what no stream has taken yet; the session core
    closes the session (1013) before that passes ``outbox_max_bytes``.

    A close discards whatever is undelivered (the client resyncs by state vectors
    in a new session anyway) and ends the stream with a ``close`` event.
    """

    def __init__(self, config: Config, on_close: Callable[[int, str], None]) -> None:
        self._max_bytes = config.outbox_max_bytes
        self._keepalive = config.fallback_keepalive_seconds
        self._on_close = on_close
        # Ids run contiguously through _sent (taken by a stream, kept for a resume) and
        # then _unsent (waiting for a stream).
        self._sent: deque[tuple[int, bytes]] = deque()
        self._unsent: deque[tuple[int, bytes]] = deque()
        self._held = 0  # bytes of every message in both
        self._pending = 0  # bytes of the messages in _unsent
        self._next_id = 1
        self._stream = 0  # generation of the current stream; 0: none ever
        self._wake: asyncio.Event | None = None
        self.streaming = False
        #: ``(code, reason)`` once closed.
        self.closed: tuple[int, str] | None = None
        #: Called when the current stream ends (the session starts counting idle time).
        self.on_detach: Callable[[], None] = lambda: None

    # -- the session core's Transport -----------------------------------------------------------

    def write(self, message: bytes) -> None:
        if self.closed is not None:
            return
        self._unsent.append((self._next_id, message))
        self._next_id += 1
        self._held += len(message)
        self._pending += len(message)
        # Keep the replay buffer bounded: drop the oldest messages a stream has taken.
        while self._held > self._max_bytes and self._sent:
            self._held -= len(self._sent.popleft()[1])
        if self._wake is not None:
            self._wake.set()

    def close(self, code: int, reason: str) -> None:
        """The session core closes the session (a bad message, a slow reader)."""
        if self.end(code, reason):
            self._on_close(code, reason)

    #: Always measure :attr:`buffered` (a queue's size: cheap, and never paused).
    congested = True

    @property
    def buffered(self) -> int:
        return self._pending

    # -- driven by the fallback -----------------------------------------------------------------

    def end(self, code: int, reason: str) -> bool:
        """Close without telling the session (the fallback ends it). False if already closed."""
        if self.closed is not None:
            return False
        self.closed = (code, reason)
        self._sent.clear()
        self._unsent.clear()
        self._held = self._pending = 0
        if self._wake is not None:
            self._wake.set()
        return True

    def attach(self, last_event_id: int) -> AsyncGenerator[bytes, None]:
        """A new event stream that starts after event ``last_event_id`` (0: from the start).

        The previous stream, if any, ends. What the client confirms by
        ``last_event_id`` leaves the buffer.

        Raises:
            InvalidRequest: ``last_event_id`` names an event never sent.
            SessionExpired: events after ``last_event_id`` have already left the
                buffer: this session cannot resume (the caller closes it).
        """
        if last_event_id >= self._next_id:
            raise InvalidRequest(f"Last-Event-ID {last_event_id}: no such event was sent")
        first = self._sent[0][0] if self._sent else self._next_id - len(self._unsent)
        if first > last_event_id + 1:
            raise SessionExpired(
                f"cannot resume after event {last_event_id}: the replay buffer no longer holds "
                f"events {last_event_id + 1} to {first - 1}"
            )
        # What the client confirms leaves; what it missed is sent again, first.
        while self._sent and self._sent[0][0] <= last_event_id:
            self._held -= len(self._sent.popleft()[1])
        # (A stream took everything a client can have seen; one that claims more gets less.)
        while self._unsent and self._unsent[0][0] <= last_event_id:
            self._held -= len(self._unsent.popleft()[1])
        self._unsent.extendleft(reversed(self._sent))
        self._sent.clear()
        self._pending = self._held
        if self._wake is not None:
            self._wake.set()  # the old stream sees it was replaced, and ends
        self._stream += 1
        self._wake = asyncio.Event()
        self.streaming = True
        return self._run(self._stream, self._wake)

    async def _run(self, generation: int, wake: asyncio.Event) -> AsyncGenerator[bytes, None]:
        try:
            while generation == self._stream:
                if self.closed is not None:
                    code, reason = self.closed
                    yield close_event(self._next_id, code, reason)
                    return
                chunk = self._take()
                if chunk:
                    yield chunk
                    continue
                wake.clear()
                try:
                    async with asyncio.timeout(self._keepalive):
                        await wake.wait()
                except TimeoutError:
                    yield KEEPALIVE
        finally:
            if generation == self._stream:
                self.streaming = False
                self._wake = None
                self.on_detach()

    def _take(self) -> bytes:
        """The next messages no stream has taken, as events (about CHUNK_BYTES of them)."""
        parts: list[bytes] = []
        size = 0
        while self._unsent and (not parts or size + len(self._unsent[0][1]) <= CHUNK_BYTES):
            event_id, message = self._unsent.popleft()
            self._sent.append((event_id, message))
            parts.append(message_event(event_id, message))
            size += len(message)
        self._pending -= size
        return b"".join(parts)


class _HttpSession:
    """One fallback session: its receiver, its event stream, its POST sequence, its idle timer."""

    def __init__(
        self, key: str, path: str, stream: EventStream, idle: float, expire: Callable[[], None]
    ) -> None:
        self.key = key
        self.path = path
        self.stream = stream
        self.receiver: Receiver | None = None
        self.next_seq = 0
        self._idle = idle
        self._expire = expire
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        stream.on_detach = self.touch

    def touch(self) -> None:
        """A sign of life: count idle time afresh (while no stream is open)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.stream.streaming:
            self._timer = self._loop.call_later(self._idle, self._expire)

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Fallback:
    """Every HTTP fallback session of one server, and the route that serves them."""

    def __init__(self, gate: Gate, config: Config) -> None:
        self.gate = gate
        self.config = config
        self._sessions: dict[str, _HttpSession] = {}

    @property
    def sessions(self) -> int:
        """How many sessions are open (closed ones waiting to expire do not count)."""
        return sum(1 for s in self._sessions.values() if s.stream.closed is None)

    def route(self) -> Route:
        """The route of ``/_http/...``, for the router."""

        def matches(path: str) -> bool:
            return path.startswith(PREFIX + "/")

        return Route(matches, frozenset({"GET", "POST", "DELETE"}), self.handle)

    def close(self) -> None:
        """Server shutdown: every session ends with 1001, its event stream with a close event."""
        for record in list(self._sessions.values()):
            self._finish(record, CloseCode.GOING_AWAY, "server shutting down")

    # -- requests -------------------------------------------------------------------------------

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one fallback request (CollabErrors become JSON errors in the router)."""
        query = request.query
        key = query.get(SESSION_PARAM)
        if key is None:
            if request.method != "POST":
                raise InvalidRequest(f"{request.method} needs ?{SESSION_PARAM}= (POST opens one)")
            return await self._open(request)
        record = self._sessions.get(key)
        if record is None or record.path != request.path:
            raise SessionExpired("no such session: it expired or never existed; open a new one")
        record.touch()
        if request.method == "DELETE":
            self._finish(record, CloseCode.NORMAL, "closed by the client")
            return HttpResponse(204, headers=dict(_NO_STORE))
        if record.stream.closed is not None:
            return _gone(*record.stream.closed)
        if request.method == "GET":
            return self._events(record, request)
        return self._post(record, request, query.get(SEQ_PARAM))

    async def _open(self, request: HttpRequest) -> HttpResponse:
        if request.body:
            raise InvalidRequest("opening a session takes no body; POST messages with ?session=")
        try:
            entry = self.gate.admit(
                request.path[len(PREFIX) :], request.query_string, request.headers, request.client
            )
        except CollabError as exc:
            metrics.HANDSHAKES_REFUSED.inc(str(exc.http_status))
            raise
        if not isinstance(entry, DocumentEntry):  # /signal: y-webrtc speaks WebSocket only
            entry.abandon()
            raise NotFound("only documents have an HTTP fallback")
        key = secrets.token_urlsafe(18)
        record: _HttpSession | None = None

        def closed_by_core(code: int, reason: str) -> None:
            # Called from inside the session core (maybe in a broadcast): end it next turn.
            # (During start, the core is still in charge: start() returns None.)
            if record is not None and record.receiver is not None:
                asyncio.get_running_loop().call_soon(self._ended, record, code, reason)

        stream = EventStream(self.config, closed_by_core)
        record = _HttpSession(
            key,
            request.path,
            stream,
            self.config.fallback_session_idle_seconds,
            lambda: self._expired(key),
        )
        receiver = await entry.start(stream)
        if receiver is None:
            code, reason = stream.closed or (CloseCode.TRY_AGAIN_LATER, "could not open")
            response = json_response({"error": reason, "code": code}, 503)
            response.headers.update(_NO_STORE)
            return response
        record.receiver = receiver
        self._sessions[key] = record
        record.touch()
        log.debug("opened fallback session %s on %s", key[:6], request.path)
        body = {
            "session": key,
            "keepalive": self.config.fallback_keepalive_seconds,
            "idle_timeout": self.config.fallback_session_idle_seconds,
        }
        response = json_response(body, 201)
        response.headers.update(_NO_STORE)
        return response

    def _events(self, record: _HttpSession, request: HttpRequest) -> HttpResponse:
        if request.method == "HEAD":  # never let a HEAD replace the real stream
            return HttpResponse(
                200, content_type="text/event-stream", headers=dict(_STREAM_HEADERS)
            )
        raw = request.headers.get("last-event-id", "0").strip() or "0"
        if not raw.isdigit():
            raise InvalidRequest(f"Last-Event-ID {raw!r} is not an event id")
        try:
            stream = record.stream.attach(int(raw))
        except SessionExpired as exc:
            log.info("fallback session %s on %s: %s", key_of(record), record.path, exc.reason)
            self._finish(record, CloseCode.TRY_AGAIN_LATER, "too far behind to resume")
            raise
        record.cancel_timer()
        return HttpResponse(
            200, content_type="text/event-stream", headers=dict(_STREAM_HEADERS), stream=stream
        )

    def _post(
        self, record: _HttpSession, request: HttpRequest, raw_seq: str | None
    ) -> HttpResponse:
        if raw_seq is None or not raw_seq.isdigit():
            raise InvalidRequest(f"POST needs ?{SEQ_PARAM}=<n>, the next sequence number")
        seq = int(raw_seq)
        if seq < record.next_seq:
            # A retry of a POST already applied (its answer was lost): acknowledge, don't apply.
            return _ok({"seq": seq, "duplicate": True})
        if seq > record.next_seq:
            response = json_response(
                {
                    "error": f"expected seq {record.next_seq}, got {seq}",
                    "expected": record.next_seq,
                },
                409,
            )
            response.headers.update(_NO_STORE)
            return response
        receiver = record.receiver
        assert receiver is not None
        record.next_seq += 1
        try:
            messages = decode_batch(request.body)
        except CollabError as exc:
            # As a WebSocket that breaks framing: closed with the error's code, and the
            # session core logs why when it ends.
            record.stream.close(exc.close_code, exc.reason)
            messages = []
        for message in messages:
            receiver.receive(message)
            if record.stream.closed is not None:
                break
        if record.stream.closed is not None:
            return _gone(*record.stream.closed)
        return _ok({"seq": seq})

    # -- endings --------------------------------------------------------------------------------

    def _ended(self, record: _HttpSession, code: int, reason: str) -> None:
        """The session core closed the session: leave the room; keep the record a while, so
        late requests learn the close code (410) instead of 'no such session'."""
        if record.receiver is not None:
            record.receiver.end(code, reason)
            record.receiver = None
        record.touch()

    def _finish(self, record: _HttpSession, code: int, reason: str) -> None:
        """The fallback ends the session (client DELETE, shutdown, cannot resume)."""
        record.cancel_timer()
        self._sessions.pop(record.key, None)
        record.stream.end(code, reason)
        if record.receiver is not None:
            record.receiver.end(code, reason)
            record.receiver = None

    def _expired(self, key: str) -> None:
        record = self._sessions.pop(key, None)
        if record is None:
            return
        if record.receiver is not None:
            log.info("fallback session %s on %s expired", key_of(record), record.path)
        record.stream.end(CloseCode.TIMEOUT, "session expired")
        if record.receiver is not None:
            # Like a dropped connection: nothing to log as an error.
            record.receiver.end()
            record.receiver = None


def key_of(record: _HttpSession) -> str:
    """A short, log-safe handle of a session (never the whole key: it is a credential)."""
    return record.key[:6]


def _ok(body: dict[str, Any]) -> HttpResponse:
    response = json_response(body)
    response.headers.update(_NO_STORE)
    return response


def _gone(code: int, reason: str) -> HttpResponse:
    """A request on a session that closed: the close code, so the client knows why."""
    response = json_response(
        {"error": f"session closed: {reason}", "code": code, "reason": reason}, 410
    )
    response.headers.update(_NO_STORE)
    return response
