"""An async Python client for scripts, bots and tests.

It keeps a local ``pycrdt.Doc`` in sync with one document on a collab (or any
y-websocket) server. Edit ``client.doc`` as usual: every local transaction is
sent as an update while connected. When the connection drops, edits go on in
the local Doc; on reconnect (exponential backoff with jitter) both sides
exchange state vectors and send only what the other lacks, exactly as
y-websocket's provider does.

    async with connect("ws://127.0.0.1:8000/notes") as client:
        await client.wait_synced()
        text = client.doc.get("text", type=Text)
        text += "hello"
        await client.wait_saved()   # with saved_acks=True: it is in the database

With ``token=`` (from ``collab token``) the client authenticates: the token goes as
``?token=`` and as ``Authorization: Bearer``. A read-only token still syncs and
reads; the client's own edits stay local (``client.read_only`` turns True when the
server says so). A permanent refusal, a close code 4400-4499 (4401 expired or bad
token, 4403 forbidden, 4404 deleted, 4413 too large) or a handshake answered 400,
401, 403 or 404, stops the reconnecting: waits raise :class:`PermanentlyClosed`
naming the code and the reason, and :attr:`Client.error` holds it.

With ``events=True`` the client also sends and receives typed room events
(docs/protocol.md, "Room events"): ``await client.send_event({"typing": True})``
and ``async for event in client.events(): ...`` (``event.sender``, ``event.data``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any

from pycrdt import Doc, TransactionEvent
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.connection import broadcast
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import Close

from collab.core.awareness import AwarenessTable
from collab.errors import CollabError, InvalidPayload, ProtocolError
from collab.wire import protocol
from collab.wire.protocol import (
    Auth,
    Awareness,
    AwarenessEntry,
    Event,
    QueryAwareness,
    Saved,
    SyncStep1,
    SyncStep2,
    Update,
)

log = logging.getLogger("collab.client")

#: Transaction origin of updates that came from the server (never sent back).
REMOTE = "collab.client.remote"
#: y-protocols renews a local awareness state every 15 s and drops others' after 30 s.
AWARENESS_RENEWAL = 15.0
AWARENESS_TIMEOUT = 30.0
#: Room events received but not yet read from :meth:`Client.events`; older ones are dropped.
EVENT_BACKLOG = 1000


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """A room event from another connection, as the server stamped it.

    ``sender`` is that connection's id (give it as ``to`` to answer it alone),
    ``user`` its user when the server knows one, ``to`` our id when it was sent
    to us alone.
    """

    sender: str
    data: Any
    user: str | None = None
    to: str | None = None


class PermissionDenied(CollabError):
    """The server refused this client (an auth message); it does not reconnect."""


#: Close codes after which retrying with the same credentials cannot help.
PERMANENT_CODES = range(4400, 4500)
#: Handshake answers that are as final (their close-code twins are 4000 + status).
PERMANENT_STATUSES = frozenset({400, 401, 403, 404})


class PermanentlyClosed(CollabError):
    """The server closed this client for good: a close code 4400-4499, or a handshake
    refused with 400/401/403/404 (``code`` is then 4000 + the status). It does not
    reconnect; a new token (or document) is needed."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed by the server with {code}: {reason or 'no reason given'}")
        self.code = code
        self.close_reason = reason


class Client:
    """One document, kept in sync with a server. Use :func:`connect` to make one."""

    def __init__(
        self,
        url: str,
        *,
        doc: Doc[Any] | None = None,
        saved_acks: bool = False,
        events: bool = False,
        reconnect: bool = True,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        max_message_size: int = 128 * 1024 * 1024,
        token: str | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        if token:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"token": token})
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        #: True once the server said this connection is read-only (edits stay local).
        self.read_only = False
        self._closed_by: Close | None = None
        if saved_acks:
            url += ("&" if "?" in url else "?") + "saved=1"
        if events:
            url += ("&" if "?" in url else "?") + "events=1"
        self.url = url
        self.wants_events = events
        #: This connection's id, as the server told it (events only; None until then).
        self.connection_id: str | None = None
        self._events: deque[RoomEvent] = deque(maxlen=EVENT_BACKLOG)
        self._event_arrived = asyncio.Event()
        self.doc: Doc[Any] = Doc() if doc is None else doc
        self.saved_acks = saved_acks
        self._reconnect = reconnect
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_size = max_message_size
        if ssl is not None and not url.startswith("wss://"):
            raise ValueError("ssl= is for a wss:// URL")
        #: For ``wss://``: the TLS context (none given: the system's trusted certificates).
        self._tls: dict[str, Any] = {} if ssl is None else {"ssl": ssl}
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._synced = False
        self._error: BaseException | None = None
        #: Update-bearing messages sent on this connection, and how many the server saved.
        self._sent = 0
        self._acked = 0
        self._dirty = False  # local edits not yet sent on any connection
        self._applying = False
        self._local_clock = 0
        self._local_state: dict[str, Any] | None = None
        self._awareness = AwarenessTable(AWARENESS_TIMEOUT)
        self._subscription = self.doc.observe(self._on_transaction)
        #: Times this client has (re)connected; useful for scripts and tests.
        self.connections = 0

    # -- state --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def synced(self) -> bool:
        """True once the server's step 2 arrived on the current connection."""
        return self._synced

    @property
    def saved(self) -> bool:
        """True when every local edit is known durable on the server (needs ``saved_acks``)."""
        return self.connected and not self._dirty and self._acked >= self._sent

    @property
    def peers(self) -> dict[int, dict[str, Any]]:
        """Other clients' awareness states, by Yjs client id."""
        own = self.doc.client_id
        return {
            e.client_id: json.loads(e.state)
            for e in self._awareness.entries()
            if e.client_id != own
        }

    # -- waiting ------------------------------------------------------------------------------

    @property
    def error(self) -> BaseException | None:
        """Why the client stopped for good (:class:`PermanentlyClosed`, ...), else None."""
        return self._error

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; it is re-checked after every change.

        Raises:
            TimeoutError: it did not hold within ``timeout`` seconds.
            PermissionDenied: the server refused this client.
            PermanentlyClosed: the server closed it with a permanent code.
        """
        async with asyncio.timeout(timeout):
            while True:
                if self._error is not None:
                    raise self._error
                if predicate():
                    return
                self._changed.clear()
                await self._changed.wait()

    async def wait_synced(self, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: self.synced, timeout)

    async def wait_saved(self, timeout: float = 10.0) -> None:
        """Wait until every local edit so far is durable on the server."""
        if not self.saved_acks:
            raise ValueError("connect with saved_acks=True to be told when edits are saved")
        await self.wait_for(lambda: self.saved, timeout)

    # -- awareness ----------------------------------------------------------------------------

    def set_awareness(self, state: dict[str, Any] | None) -> None:
        """Set (or clear, with ``None``) this client's presence and announce it."""
        self._local_state = state
        self._local_clock += 1
        self._send_local_awareness()

    # -- room events -------------------------------------------------------------------------

    async def send_event(self, data: Any, to: str | None = None) -> None:
        """Send ``data`` (any JSON value) to everyone else on the document, or only to
        the connection ``to``. Events are not stored: one sent while disconnected
        is lost, so this raises ``ConnectionError`` then.
        """
        if not self.wants_events:
            raise ValueError("connect with events=True to send room events")
        ws = self._ws
        if ws is None:
            raise ConnectionError("not connected: room events are not kept for later")
        body: dict[str, Any] = {"data": data}
        if to is not None:
            body["to"] = to
        try:
            await ws.send(protocol.encode(Event(json.dumps(body))))
        except ConnectionClosed as exc:
            raise ConnectionError("the connection closed") from exc

    async def events(self) -> AsyncIterator[RoomEvent]:
        """Room events from other connections, in arrival order, for as long as you read.

        The last :data:`EVENT_BACKLOG` unread events are kept; older ones are dropped.
        """
        if not self.wants_events:
            raise ValueError("connect with events=True to receive room events")
        while True:
            while self._events:
                yield self._events.popleft()
            self._event_arrived.clear()
            await self._event_arrived.wait()

    def _receive_event(self, payload: str) -> None:
        try:
            value = json.loads(payload)
            if "self" in value:
                self.connection_id = str(value["self"]["id"])
                return
            sender = value["sender"]
            event = RoomEvent(str(sender["id"]), value["data"], sender.get("user"), value.get("to"))
        except (ValueError, TypeError, KeyError):
            raise InvalidPayload("the server sent an invalid room event") from None
        self._events.append(event)
        self._event_arrived.set()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background (``async with`` does this)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"collab client {self.url}")

    async def close(self) -> None:
        """Say goodbye (presence removed) and stop; the local Doc stays usable."""
        ws = self._ws
        if ws is not None and self._local_state is not None:
            self._local_state = None
            self._local_clock += 1
            with contextlib.suppress(ConnectionClosed):
                await ws.send(self._awareness_frame())
        self._reconnect = False
        if ws is not None:
            await ws.close()  # a normal close (1000), before the task is cancelled (1011)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals ----------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self._backoff_initial
        while True:
            try:
                async with ws_connect(
                    self.url,
                    compression=None,
                    max_size=self._max_size,
                    open_timeout=10,
                    additional_headers=self._headers,
                    **self._tls,
                ) as ws:
                    backoff = self._backoff_initial
                    await self._session(ws)
            except PermissionDenied as exc:
                self._error = exc
                self._changed.set()
                return
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in PERMANENT_STATUSES:
                    self._stop(PermanentlyClosed(4000 + status, _reason(bytes(exc.response.body))))
                    return
                log.info("connection to %s refused: %s", self.url, exc)
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                log.info("connection to %s lost: %s", self.url, exc)
            except InvalidURI as exc:
                self._error = exc
                self._changed.set()
                return
            finally:
                if self._acked < self._sent:
                    self._dirty = True  # unacknowledged edits ride in the next step 2
                self._ws = None
                self._synced = False
                self._awareness = AwarenessTable(AWARENESS_TIMEOUT)
                self._changed.set()
            closed_by, self._closed_by = self._closed_by, None
            if closed_by is not None and closed_by.code in PERMANENT_CODES:
                self._stop(PermanentlyClosed(closed_by.code, closed_by.reason))
                return
            if not self._reconnect:
                return
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, self._backoff_max)

    async def _session(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._sent = self._acked = 0
        self.connection_id = None  # a new connection, a new id (told in its welcome)
        self.connections += 1
        await ws.send(protocol.encode(SyncStep1(self.doc.get_state())))
        if self._local_state is not None:
            await ws.send(self._awareness_frame())
        renewer = asyncio.create_task(self._renew_awareness(ws))
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    raise ProtocolError("text frames are not part of the protocol")
                await self._receive(ws, frame)
        except CollabError as exc:
            # A server that sends garbage gets the same treatment ours gives clients:
            # close with the error's code, then reconnect and resync as after any drop.
            log.warning("closing connection to %s: %s", self.url, exc.reason)
            await ws.close(exc.close_code, exc.reason[:120])
        finally:
            renewer.cancel()
            self._closed_by = ws.protocol.close_rcvd

    def _stop(self, error: PermanentlyClosed) -> None:
        log.warning("%s: %s; not reconnecting", self.url, error.reason)
        self._error = error
        self._changed.set()

    async def _receive(self, ws: ClientConnection, frame: bytes) -> None:
        message = protocol.decode(frame)
        match message:
            case SyncStep1(state_vector):
                self._dirty = False
                self._sent += 1
                await ws.send(protocol.encode(SyncStep2(self.doc.get_update(state_vector))))
            case SyncStep2(update):
                self._apply(update)
                self._synced = True
            case Update(update):
                self._apply(update)
            case Awareness(payload):
                now = time.monotonic()
                self._awareness.apply(protocol.decode_awareness(payload), owner=None, now=now)
                self._awareness.expire(now)
            case QueryAwareness():
                await ws.send(self._awareness_frame())
            case Saved(count):
                self._acked = count
            case Event(payload):
                self._receive_event(payload)
            case Auth("read-only"):
                # A read-only token: reading goes on, our edits were dropped by the server.
                log.warning("%s is read-only: local edits are not saved", self.url)
                self.read_only = True
            case Auth(reason):
                raise PermissionDenied(f"permission denied: {reason}")
        self._changed.set()

    def _apply(self, update: bytes) -> None:
        self._applying = True
        try:
            with self.doc.transaction(origin=REMOTE):
                self.doc.apply_update(update)
        except ValueError as exc:
            raise InvalidPayload("the server sent an invalid update") from exc
        finally:
            self._applying = False

    def _on_transaction(self, event: TransactionEvent) -> None:
        # Called inside every commit of the local Doc, remote ones included.
        if self._applying:
            return
        ws = self._ws
        if ws is None:
            self._dirty = True  # goes out in our step 2 on the next connection
        else:
            self._sent += 1
            # Written straight into the transport, in commit order; no task, no await.
            broadcast((ws,), protocol.encode(Update(event.update)))
        self._changed.set()

    def _awareness_frame(self) -> bytes:
        state = "null" if self._local_state is None else json.dumps(self._local_state)
        entry = AwarenessEntry(self.doc.client_id, self._local_clock, state)
        return protocol.encode(Awareness(protocol.encode_awareness([entry])))

    def _send_local_awareness(self) -> None:
        ws = self._ws
        if ws is not None:
            broadcast((ws,), self._awareness_frame())

    async def _renew_awareness(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(AWARENESS_RENEWAL)
            if self._local_state is not None:
                self._local_clock += 1
                await _send_quietly(ws, self._awareness_frame())


async def _send_quietly(ws: ClientConnection, frame: bytes) -> None:
    # A send on a connection that just dropped is not an error: the Doc keeps the
    # edit and the next connection's step 2 delivers it.
    with contextlib.suppress(ConnectionClosed):
        await ws.send(frame)


@contextlib.asynccontextmanager
async def connect(url: str, **options: Any) -> AsyncIterator[Client]:
    """Connect to ``url`` (``ws://host:port/<document>``) for the ``async with`` block.

    Options are :class:`Client`'s keyword arguments (``token``, ``saved_acks``, ``events``,
    ``reconnect``, ``doc``, backoff bounds, ``ssl``: an ``ssl.SSLContext`` for a
    ``wss://`` server whose certificate the system does not trust).
    """
    client = Client(url, **options)
    async with client:
        yield client


# -- one-shot edits over HTTP -----------------------------------------------------------------


class EditFailed(CollabError):
    """The server refused a one-shot edit; ``status`` is its HTTP status (0: unreachable)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.http_status = status


def _endpoint(url: str, doc: str, action: str) -> str:
    """``http(s)://host:port[/prefix]/api/docs/<doc>/<action>`` from a server URL."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) or ws(s) server URL: {url!r}")
    path = "/".join(urllib.parse.quote(segment, safe="") for segment in doc.split("/"))
    base = parts.path.rstrip("/")
    return f"{scheme}://{parts.netloc}{base}/api/docs/{path}/{action}"


def _reason(body: bytes | None) -> str:
    """The ``error`` of a JSON error body, or the body as text."""
    text = (body or b"").decode("utf-8", "replace")
    try:
        return str(json.loads(text).get("error", text))
    except (ValueError, AttributeError):
        return text.strip()


def _post(
    endpoint: str, body: bytes, content_type: str, timeout: float, token: str | None = None
) -> dict[str, Any]:
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(endpoint, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            value: dict[str, Any] = json.loads(response.read())
            return value
    except urllib.error.HTTPError as exc:
        try:
            reason = str(json.loads(exc.read()).get("error", exc.reason))
        except (ValueError, AttributeError):
            reason = str(exc.reason)
        raise EditFailed(exc.code, reason) from None
    except (urllib.error.URLError, OSError) as exc:
        raise EditFailed(0, f"cannot reach {endpoint}: {exc}") from None


async def edit(
    url: str,
    doc: str,
    *,
    insert: tuple[int, str] | None = None,
    delete: tuple[int, int] | None = None,
    replace: str | None = None,
    base: int | None = None,
    update: bytes | None = None,
    author: str | None = None,
    timeout: float = 60.0,
    token: str | None = None,
) -> int:
    """Make one edit to ``doc`` on the server at ``url`` without connecting as an editor.

    Give exactly one of ``insert=(index, text)``, ``delete=(index, length)``,
    ``replace=text`` (with ``base``: the seq of the text it was derived from) or
    ``update=bytes`` (a Yjs update); ``token`` (``write``) is sent as a Bearer header.
    ``url`` is the server (``http://host:8000`` or
    its ``ws://`` address). Returns the edit's log seq, once it is durable.
    Raises :class:`EditFailed` with the server's status and reason.

    Uses the standard library (urllib, in a worker thread): a one-shot request
    needs no connection pool, and the client then needs no HTTP dependency.
    """
    given = [value for value in (insert, delete, replace, update) if value is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of insert, delete, replace or update")
    query = f"?{urllib.parse.urlencode({'author': author})}" if author else ""
    if update is not None:
        endpoint = _endpoint(url, doc, "update") + query
        body, content_type = update, "application/octet-stream"
    else:
        spec: dict[str, Any]
        if insert is not None:
            spec = {"insert": {"index": insert[0], "text": insert[1]}}
        elif delete is not None:
            spec = {"delete": {"index": delete[0], "length": delete[1]}}
        else:
            spec = {"replace": replace}
            if base is not None:
                spec["base"] = base
        endpoint = _endpoint(url, doc, "text") + query
        body, content_type = json.dumps(spec).encode("utf-8"), "application/json"
    reply = await asyncio.to_thread(_post, endpoint, body, content_type, timeout, token)
    return int(reply["seq"])


async def restore(
    url: str,
    doc: str,
    version: int | str,
    *,
    author: str | None = None,
    timeout: float = 60.0,
    token: str | None = None,
) -> tuple[int, int]:
    """Restore ``doc`` to ``version`` (an id, or an ISO-8601 time) on the server at ``url``.

    Returns ``(seq, restored_from)``: the restore's log seq (durable) and the id of
    the version it brought back. Raises :class:`EditFailed`.
    """
    spec: dict[str, Any] = {"version": version} if isinstance(version, int) else {"at": version}
    if author:
        spec["author"] = author
    reply = await asyncio.to_thread(
        _post,
        _endpoint(url, doc, "restore"),
        json.dumps(spec).encode(),
        "application/json",
        timeout,
        token,
    )
    return int(reply["seq"]), int(reply["restored_from"])
