"""One editor on one document, from the handshake to the close, whatever carries it.

A :class:`Session` is written once against the small :class:`Transport`
interface; the native WebSocket server, the ASGI app and the HTTP fallback are
each a thin adapter that feeds it what arrives (:meth:`Session.receive`) and
tells it when the connection is gone (:meth:`Session.end`). Everything between
lives here, once:

- joining the room (one load per document, :class:`~collab.core.rooms.Rooms`);
- the message loop: decode, hand to the room, which applies and broadcasts;
- flow control: a transport whose waiting bytes would pass ``outbox_max_bytes``
  closes this one session with 1013, and the sender is never slowed;
- the message rate: a token bucket per session (``messages_per_second``, bursts
  of ``message_burst``); an editor sending faster is closed with 1008;
- its place in the connection limits (a :class:`~collab.policy.limits.Slot`),
  given back when the session ends or could not start;
- durability acknowledgements (``saved`` frames, coalesced per loop turn);
- typed room events between sessions that asked for them (:mod:`collab.core.events`);
- what the token allowed (:class:`Identity`): a read-only editor's changes are
  dropped (the first answered with the auth message, ``read-only``), and the
  session closes itself with 4401 when the token expires (one timer, no
  per-message check);
- the single mapping of errors to close codes, and the one log line that says
  why a session ended.

A session is a :class:`~collab.core.room.Peer` to its room. Nothing here awaits
the network: :meth:`Session.receive` is plain code, and :meth:`Session.start`
awaits only the store (the first load of a document).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from collab.config import Config
from collab.core import events, metrics
from collab.core.room import Room
from collab.core.rooms import Rooms
from collab.errors import (
    CloseCode,
    CollabError,
    LimitExceeded,
    ProtocolError,
    ReadOnly,
    SlowConsumer,
    StoreError,
    Unauthorized,
)
from collab.policy.limits import Slot, TokenBucket
from collab.wire import protocol
from collab.wire.protocol import Auth, Awareness, Event, Saved, Update

__all__ = ["CONGESTION_BYTES", "Identity", "Session", "Transport", "close_reason"]

log = logging.getLogger("collab.session")

_BYTES_OUT = metrics.BYTES_OUT  # bumped once per delivery: one lookup less


class Transport(Protocol):
    """What a session needs of the connection that carries it.

    Implementations: ``collab.transports.websocket`` (native server),
    ``collab.transports.asgi`` and ``collab.transports.fallback`` (HTTP).
    """

    def write(self, message: bytes) -> None:
        """Send one y-websocket message, in order, without blocking or awaiting."""

    def close(self, code: int, reason: str) -> None:
        """Start closing with ``code``; later writes are dropped. Idempotent."""

    @property
    def buffered(self) -> int:
        """Bytes handed to :meth:`write` that the peer has not been sent yet."""

    #: False only while at most :data:`CONGESTION_BYTES` handed to :meth:`write` wait
    #: unsent; then the session need not measure :attr:`buffered` before a frame that
    #: could not pass its limit anyway (one read less per delivery). A transport that
    #: cannot tell cheaply keeps it True.
    congested: bool


#: What a transport may hold unsent while it says it is not :attr:`Transport.congested`
#: (the native server sets its write buffer's high-water mark to it).
CONGESTION_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a session speaks for: what the handshake established (the token's grant).

    ``user`` is recorded as the author of the session's edits; ``expires_at``
    (seconds since the epoch, ``None``: never) is when the session is closed with 4401.
    """

    user: str | None = None
    read_only: bool = False
    expires_at: float | None = None


class Session:
    """One editor on one document. Build, ``await start()``, ``receive()``..., ``end()``."""

    def __init__(
        self,
        transport: Transport,
        name: str,
        rooms: Rooms,
        config: Config,
        *,
        wants_acks: bool = False,
        wants_events: bool = False,
        identity: Identity | None = None,
        slot: Slot | None = None,
    ) -> None:
        self.id = secrets.token_hex(4)
        self.name = name
        self.wants_acks = wants_acks
        self.wants_events = wants_events
        who = identity or Identity()
        self.user = who.user
        self.read_only = who.read_only
        self.expires_at = who.expires_at
        self._expiry: asyncio.TimerHandle | None = None
        self._told_read_only = False
        self._transport = transport
        self._rooms = rooms
        self._max_bytes = config.outbox_max_bytes
        # A frame up to this long cannot pass the limit on an uncongested transport.
        self._unchecked_max = config.outbox_max_bytes - CONGESTION_BYTES
        self._room: Room | None = None
        self._closed: CloseCode | int | None = None
        self._ended = False
        self._saved = 0
        self._ack_scheduled = False
        self._events = events.EventLimits(config, time.monotonic())
        self._bucket = TokenBucket(
            config.messages_per_second, config.message_burst, time.monotonic()
        )
        self._slot = slot

    @property
    def _log_extra(self) -> dict[str, str]:
        # Fields of the log record: JSON logs (--log-format json) show them as keys.
        return {"doc": self.name, "connection": self.id}

    @property
    def closed(self) -> bool:
        """True once the session closed its transport (or the transport ended)."""
        return self._closed is not None

    # -- lifecycle, called by the transport ---------------------------------------------------

    async def start(self) -> bool:
        """Join the document's room (loading it if needed) and greet the editor.

        Returns False, with the transport closed (1013), when the store cannot load
        the document; the transport must then not call :meth:`receive` (nor
        :meth:`end`: the connection slot is released here).
        """
        try:
            room = await self._rooms.acquire(self.name)
        except StoreError as exc:
            log.error(
                "%s: cannot load %r: %s", self.id, self.name, exc.reason, extra=self._log_extra
            )
            self._close(CloseCode.TRY_AGAIN_LATER, "document unavailable")
            self.end()  # counted here: the transport does not end a session that never started
            return False
        if self._closed is not None:  # the connection went while the document loaded
            self._rooms.release(room)
            self._release_slot()
            return False
        self._room = room
        if self.expires_at is not None:
            delay = max(0.0, self.expires_at - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)
        metrics.CONNECTIONS_OPEN.value += 1
        metrics.CONNECTIONS_OPENED.value += 1
        room.join(self)
        if self.wants_events:
            self.send(events.welcome(self))
        return True

    def receive(self, data: bytes | str) -> None:
        """Handle one message from the editor. Never raises.

        A message that breaks the protocol, a payload that cannot be applied, a
        write from a read-only editor, a message over the session's rate: each
        closes this session with its close code and a logged reason; the document
        and the other editors carry on.
        """
        room = self._room
        if room is None or self._closed is not None:
            return
        metrics.BYTES_IN.value += len(data)
        try:
            if not self._bucket.take(time.monotonic()):
                raise LimitExceeded(
                    f"over {self._bucket.rate:g} messages per second "
                    f"(messages_per_second, message_burst={self._bucket.burst:g})"
                )
            if isinstance(data, str):
                raise ProtocolError("text frames are not part of the protocol")
            message = protocol.decode(data)
            if isinstance(message, Event):
                # Events are between sessions, never the document's: the room never sees them.
                event = self._events.check(message.payload, time.monotonic(), self.wants_events)
                events.relay(self, _sessions(room), event)
                return
            forwardable = isinstance(message, (Update, Awareness))
            room.receive(self, message, data if forwardable else None)
        except ReadOnly:
            self._refuse_write()
        except CollabError as exc:
            self.fail(exc)
        except Exception:
            log.exception(
                "closing %s on %r: internal error", self.id, self.name, extra=self._log_extra
            )
            self._close(CloseCode.INTERNAL_ERROR, "")

    def fail(self, exc: CollabError) -> None:
        """Close this session because of ``exc`` (its close code, its reason), and log why."""
        if self._closed is not None:
            return
        log.warning(
            "closing %s on %r: %s (%d)",
            self.id,
            self.name,
            exc.reason,
            exc.close_code,
            extra=self._log_extra,
        )
        self._close(exc.close_code, exc.reason)

    def end(self, code: int | None = None, reason: str = "") -> None:
        """The connection is gone: leave the room. Idempotent; call exactly once at the end.

        ``code`` and ``reason`` say how the transport saw it end (a close the peer
        sent, a frame the transport refused); anything but a normal close that the
        session did not initiate itself is logged here.
        """
        if self._ended:
            return
        self._ended = True
        if self._closed is None:
            self._closed = code if code is not None else CloseCode.NORMAL
            if code is not None and code not in _UNREMARKABLE:
                log.warning(
                    "closed %s on %r: %s (%d)",
                    self.id,
                    self.name,
                    reason,
                    code,
                    extra=self._log_extra,
                )
            # A connection that went without a close frame is 1006, as the peer sees it.
            metrics.CONNECTIONS_CLOSED.inc(str(code if code is not None else 1006))
        else:
            metrics.CONNECTIONS_CLOSED.inc(str(int(self._closed)))
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        room, self._room = self._room, None
        if room is not None:
            metrics.CONNECTIONS_OPEN.value -= 1
            room.leave(self)
            self._rooms.release(room)
        self._release_slot()

    # -- the room's Peer interface ------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Write ``frame`` without waiting; close this editor if it cannot keep up."""
        if self._closed is not None:
            return
        transport = self._transport
        size = len(frame)
        if transport.congested or size > self._unchecked_max:
            buffered = transport.buffered
            if buffered and buffered + size > self._max_bytes:
                # Never grow without bound and never slow the sender: drop this editor.
                # It reconnects and resyncs from its state vector, losing nothing.
                self.fail(SlowConsumer(f"outbox over {self._max_bytes} bytes"))
                return
        _BYTES_OUT.value += size
        transport.write(frame)

    def saved(self) -> None:
        """Count one durable update; acks are coalesced into one frame per loop turn."""
        self._saved += 1
        if not self._ack_scheduled:
            self._ack_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_saved)

    def _send_saved(self) -> None:
        self._ack_scheduled = False
        self.send(protocol.encode(Saved(self._saved)))

    def _refuse_write(self) -> None:
        """A read-only editor tried to change the document: nothing was applied. The
        first attempt is answered with y-websocket's auth message; the session stays."""
        if self._told_read_only:
            return
        self._told_read_only = True
        log.info("%s on %r is read-only: its changes are dropped", self.id, self.name)
        self.send(protocol.encode(Auth("read-only")))

    def _expire(self) -> None:
        self._expiry = None
        self.fail(Unauthorized("token expired"))

    def _release_slot(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.release()

    def _close(self, code: int, reason: str) -> None:
        self._closed = code
        self._transport.close(code, close_reason(reason))


def _sessions(room: Room) -> list[Session]:
    # Other kinds of peer (an HTTP edit) have no connection an event could reach.
    return [peer for peer in room.peers if isinstance(peer, Session)]


#: Ends not worth a warning: a normal close, a departure, a connection that just went.
_UNREMARKABLE = frozenset({1000, 1001, 1005, 1006})


def close_reason(reason: str) -> str:
    """``reason`` cut to the 123 bytes of UTF-8 a close frame may hold."""
    return reason.encode()[:123].decode(errors="ignore")
