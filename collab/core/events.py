"""Typed room events: JSON messages between the editors of one document, never stored.

A client that connects with ``?events=1`` may send an event frame (type 101,
:class:`~collab.wire.protocol.Event`) whose JSON text is an object::

    {"data": <any JSON>}                     to everyone else on the document
    {"data": <any JSON>, "to": "<id>"}       to the one connection with that id

and nothing else: a ``sender`` (or any other key) is refused, because the sender
is what the server says it is. Every other session on the document that asked
for events receives::

    {"sender": {"id": "<connection id>", "user": <user or null>}, "data": ...}

(with ``"to"`` as well when it was addressed to it), and each such session is
told its own connection id once, right after it joins::

    {"self": {"id": "<connection id>", "user": <user or null>}}

so a frame with ``sender`` always comes from another connection, stamped here.
Sessions that did not ask receive nothing (stock y-websocket clients log an
error for a message type they do not know). Events are relayed, not stored:
they are not in the log, in history, or in a later join. Limits per connection:
``event_max_bytes`` per event (bigger: 1009) and ``event_messages_per_second``
with bursts of ``event_burst`` (faster: 1008). Read-only editors may send events:
they change no document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from collab.config import Config
from collab.errors import InvalidPayload, LimitExceeded, MessageTooBig, ProtocolError
from collab.policy.limits import TokenBucket
from collab.wire import protocol
from collab.wire.protocol import Event
from collab.wire.signaling import MAX_DEPTH, strict_json

__all__ = ["EVENTS_PARAM", "EventLimits", "EventPeer", "Outgoing", "parse", "relay", "welcome"]

#: Query parameter by which a client asks for room events.
EVENTS_PARAM = "events"

_CLIENT_KEYS = frozenset({"data", "to"})


class EventPeer(Protocol):
    """A connection events can reach: its id, its user, whether it asked, a send."""

    id: str
    user: str | None

    @property
    def wants_events(self) -> bool: ...

    def send(self, frame: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What a client asked to send: ``data`` for everyone else, or only for ``to``."""

    data: Any
    to: str | None = None


def parse(payload: str) -> Outgoing:
    """The event a client sent, checked.

    Raises:
        InvalidPayload: not a JSON object (strict: no ``NaN``, at most
            :data:`~collab.wire.signaling.MAX_DEPTH` levels deep), no ``data``, a
            ``to`` that is not a string, or any other key (``sender`` included: the
            server sets it).
    """
    try:
        value = strict_json(payload)
    except ValueError:
        raise InvalidPayload(
            f"an event is not JSON (or holds NaN, or nests over {MAX_DEPTH} levels)"
        ) from None
    if not isinstance(value, dict):
        raise InvalidPayload("an event is not a JSON object")
    extra = sorted(set(value) - _CLIENT_KEYS)
    if extra:
        raise InvalidPayload(
            f"an event may hold only data and to, not {', '.join(extra)} "
            "(the server stamps the sender)"
        )
    if "data" not in value:
        raise InvalidPayload("an event has no data")
    to = value.get("to")
    if to is not None and not isinstance(to, str):
        raise InvalidPayload("an event's to is not a connection id")
    return Outgoing(value["data"], to)


def relay(sender: EventPeer, peers: Iterable[EventPeer], event: Outgoing) -> int:
    """Send ``event`` from ``sender`` to the peers it is for; return how many it reached.

    Only peers that asked for events are reached, never the sender itself. A
    ``to`` naming no such peer (it left, or never asked) reaches nobody.
    """
    stamped: dict[str, Any] = {"sender": {"id": sender.id, "user": sender.user}}
    stamped["data"] = event.data
    if event.to is not None:
        stamped["to"] = event.to
    frame = protocol.encode(Event(json.dumps(stamped, separators=(",", ":"))))
    reached = 0
    for peer in peers:
        if peer is sender or not peer.wants_events:
            continue
        if event.to is not None and peer.id != event.to:
            continue
        peer.send(frame)
        reached += 1
    return reached


def welcome(peer: EventPeer) -> bytes:
    """The frame that tells a session asking for events its own connection id."""
    return protocol.encode(
        Event(json.dumps({"self": {"id": peer.id, "user": peer.user}}, separators=(",", ":")))
    )


class EventLimits:
    """One connection's event budget: a size cap and a token bucket on ``clock`` readings."""

    def __init__(self, config: Config, now: float) -> None:
        self.max_bytes = config.event_max_bytes
        self._bucket = TokenBucket(config.event_messages_per_second, config.event_burst, now)

    def check(self, payload: str, now: float, wanted: bool) -> Outgoing:
        """The event in ``payload``, if this connection may send it now.

        Raises:
            ProtocolError: the connection did not ask for events (``wanted`` false).
            MessageTooBig: the event is over ``event_max_bytes``.
            LimitExceeded: the connection sends events faster than its rate.
            InvalidPayload: see :func:`parse`.
        """
        if not wanted:
            raise ProtocolError(f"events need ?{EVENTS_PARAM}=1 on the connection")
        if len(payload.encode("utf-8")) > self.max_bytes:
            raise MessageTooBig(f"event over {self.max_bytes} bytes")
        if not self._bucket.take(now):
            raise LimitExceeded("too many events")
        return parse(payload)
