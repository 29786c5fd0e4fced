"""WebRTC signaling: topics, the peers subscribed to them, and each peer's bounds.

y-webrtc peers (``WebrtcProvider``) meet through a signaling server: each
subscribes to its room's *topic* and publishes small JSON messages (announces,
SDP offers and answers, ICE candidates) that the server relays to every
subscriber of that topic, the sender included. Once two peers have exchanged
enough of them they talk directly over a WebRTC data channel and the server
sees nothing more. The messages are :mod:`collab.wire.signaling`'s.

A :class:`Hub` holds the topics of one server (topic -> subscribed peers); a
:class:`SignalingPeer` is one connection to ``/signal``, written against the
small :class:`TextTransport` interface, so the native server and the ASGI app
carry it the same way. Unlike y-webrtc's reference server (bin/server.js):

- a topic is a document name (:func:`collab.names.valid_name`), and a peer may
  subscribe only to the topics its entry allows (the authentication hook, see
  :mod:`collab.core.gate`);
- a publish to a topic the sender is not subscribed to is dropped;
- a frame that is not a signaling message closes that one connection (1007);
- each connection is bounded: ``signal_max_topics`` topics, frames of at most
  ``signal_max_message_size`` bytes (1009), ``signal_messages_per_second``
  with bursts of ``signal_burst`` (a token bucket on the clock the hub is given);
  past a bound it is closed (1008);
- a peer whose transport holds more than ``outbox_max_bytes`` unsent is closed
  with 1013, as an editor is; the sender is never slowed;
- a topic with no subscriber left is freed at once;
- ``{"type": "ping"}`` is answered with ``{"type": "pong"}`` (y-webrtc's client
  reconnects after 30 s without a message); dead peers are dropped by the
  transport's WebSocket keepalive, which ends them here.

Everything here is plain code: no ``await``, no socket.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from collab.config import Config
from collab.core.session import close_reason
from collab.errors import (
    CloseCode,
    CollabError,
    Forbidden,
    InvalidName,
    LimitExceeded,
    MessageTooBig,
    SlowConsumer,
)
from collab.names import valid_name
from collab.policy.limits import TokenBucket
from collab.wire import signaling
from collab.wire.signaling import (
    Message,
    Ping,
    Pong,
    Publish,
    Subscribe,
    Unknown,
    Unsubscribe,
)

__all__ = ["Hub", "SignalingPeer", "TextTransport", "TokenBucket", "TopicCheck", "every_topic"]

log = logging.getLogger("collab.signaling")

#: Whether a peer may subscribe to a topic (a document name); the gate decides.
TopicCheck = Callable[[str], bool]


def every_topic(topic: str) -> bool:
    """The topic check of a peer that may see every document (auth off, or a ``*`` token)."""
    return True


class TextTransport(Protocol):
    """What a signaling peer needs of the connection that carries it.

    The native ``collab.transports.websocket.WebSocket`` and the ASGI transport
    both offer it (beside the binary :class:`~collab.core.session.Transport`).
    """

    def write_text(self, message: str) -> None:
        """Send one text message, in order, without blocking or awaiting."""

    def close(self, code: int, reason: str) -> None:
        """Start closing with ``code``; later writes are dropped. Idempotent."""

    @property
    def buffered(self) -> int:
        """Bytes handed to :meth:`write_text` that the peer has not been sent yet."""


class SignalingPeer:
    """One connection to ``/signal``: a :class:`~collab.core.gate.Receiver`.

    Built by :meth:`Hub.join`. The transport calls :meth:`receive` for each
    message and :meth:`end` once when the connection is gone.
    """

    def __init__(self, hub: Hub, transport: TextTransport, may_subscribe: TopicCheck) -> None:
        self.id = secrets.token_hex(4)
        #: The topics this peer is subscribed to (insertion-ordered).
        self.topics: dict[str, None] = {}
        self.may_subscribe = may_subscribe
        self._hub = hub
        self._transport = transport
        config = hub.config
        self._max_frame = config.signal_max_message_size
        self._max_bytes = config.outbox_max_bytes
        self._bucket = TokenBucket(
            config.signal_messages_per_second, config.signal_burst, hub.clock()
        )
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once this peer closed its transport (or the transport ended)."""
        return self._closed

    def receive(self, data: bytes | str) -> None:
        """Handle one frame from the peer. Never raises.

        A frame that is too big, too soon, not a signaling message, or names a
        topic the peer may not have closes this connection with the error's
        code and a logged reason; every other peer carries on.
        """
        if self._closed:
            return
        try:
            if _too_big(data, self._max_frame):
                raise MessageTooBig(f"signaling frame over {self._max_frame} bytes")
            if not self._bucket.take(self._hub.clock()):
                raise LimitExceeded(
                    f"over {self._hub.config.signal_messages_per_second:g} messages per second"
                )
            self._hub.receive(self, signaling.decode(data))
        except CollabError as exc:
            self.fail(exc)
        except Exception:
            log.exception("closing signaling peer %s: internal error", self.id)
            self._close(CloseCode.INTERNAL_ERROR, "")

    def send(self, text: str) -> None:
        """Write one frame without waiting; close this peer if it cannot keep up."""
        if self._closed:
            return
        buffered = self._transport.buffered
        # len(text) is its size in bytes: signaling.encode escapes everything non-ASCII.
        if buffered and buffered + len(text) > self._max_bytes:
            # Never grow without bound and never slow the publisher: drop this peer.
            self.fail(SlowConsumer(f"outbox over {self._max_bytes} bytes"))
            return
        self._transport.write_text(text)

    def fail(self, exc: CollabError) -> None:
        """Close this peer because of ``exc`` (its close code, its reason), and log why."""
        if self._closed:
            return
        log.warning("closing signaling peer %s: %s (%d)", self.id, exc.reason, exc.close_code)
        self._close(exc.close_code, exc.reason)

    def end(self, code: int | None = None, reason: str = "") -> None:
        """The connection is gone: leave every topic. Idempotent.

        ``code`` and ``reason`` say how the transport saw it end; anything but a
        normal close that this peer did not initiate itself is logged.
        """
        if not self._closed:
            self._closed = True
            if code is not None and code not in (CloseCode.NORMAL, CloseCode.GOING_AWAY):
                log.warning("signaling peer %s closed: %s (%d)", self.id, reason, code)
        self._hub.leave(self)

    def _close(self, code: int, reason: str) -> None:
        self._closed = True
        # Out of every topic now, not when the transport reports the end: the
        # ``clients`` counts stay true and nothing more is relayed to it.
        self._hub.leave(self)
        self._transport.close(code, close_reason(reason))


class Hub:
    """The topics of one server and the peers subscribed to each.

    ``clock`` is a monotonic clock in seconds (``time.monotonic`` by default);
    tests pass their own to drive the rate limit.
    """

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._topics: dict[str, dict[SignalingPeer, None]] = {}
        self._peers: dict[SignalingPeer, None] = {}

    # -- what the server (and tests) can see ----------------------------------------------------

    @property
    def topics(self) -> int:
        """How many topics have at least one subscriber (empty ones are freed)."""
        return len(self._topics)

    @property
    def peers(self) -> int:
        """How many signaling connections are open."""
        return len(self._peers)

    def subscribers(self, topic: str) -> int:
        """How many peers are subscribed to ``topic`` now."""
        return len(self._topics.get(topic, ()))

    # -- driven by SignalingPeer ----------------------------------------------------------------

    def join(
        self, transport: TextTransport, may_subscribe: TopicCheck = every_topic
    ) -> SignalingPeer:
        """A new peer on ``transport``, subscribed to nothing yet."""
        peer = SignalingPeer(self, transport, may_subscribe)
        self._peers[peer] = None
        return peer

    def receive(self, peer: SignalingPeer, message: Message) -> None:
        """Act on one decoded message from ``peer``.

        Raises:
            InvalidName: a topic is not a document name.
            Forbidden: the peer may not subscribe to a topic.
            LimitExceeded: the subscription would pass ``signal_max_topics``.
        """
        match message:
            case Subscribe(topics):
                self._subscribe(peer, topics)
            case Unsubscribe(topics):
                for topic in topics:
                    self._unsubscribe(peer, topic)
            case Publish(topic, data):
                self._publish(peer, topic, data)
            case Ping():
                peer.send(signaling.encode(Pong()))
            case Pong() | Unknown():
                pass  # nothing to do, as in y-webrtc's server

    def leave(self, peer: SignalingPeer) -> None:
        """``peer`` is gone: out of every topic. Idempotent."""
        for topic in list(peer.topics):
            self._unsubscribe(peer, topic)
        self._peers.pop(peer, None)

    # -- internals ------------------------------------------------------------------------------

    def _subscribe(self, peer: SignalingPeer, topics: tuple[str, ...]) -> None:
        new = [t for t in dict.fromkeys(topics) if t not in peer.topics]
        for topic in new:  # all checked before any is taken: a refusal changes nothing
            if not valid_name(topic, self.config):
                raise InvalidName(f"topic {topic[:40]!r} is not a document name")
            if not peer.may_subscribe(topic):
                raise Forbidden(f"topic {topic!r} is not open to this connection")
        limit = self.config.signal_max_topics
        if len(peer.topics) + len(new) > limit:
            raise LimitExceeded(f"over {limit} topics on one connection")
        for topic in new:
            peer.topics[topic] = None
            self._topics.setdefault(topic, {})[peer] = None

    def _unsubscribe(self, peer: SignalingPeer, topic: str) -> None:
        if topic not in peer.topics:
            return
        del peer.topics[topic]
        subscribers = self._topics.get(topic)
        if subscribers is not None:
            subscribers.pop(peer, None)
            if not subscribers:
                del self._topics[topic]

    def _publish(self, peer: SignalingPeer, topic: str, data: signaling.JSONValue) -> None:
        if topic not in peer.topics:
            # y-webrtc publishes only to rooms it subscribed to: anything else is
            # someone writing into a room they did not join. Dropped, not relayed.
            log.debug("signaling peer %s: dropped a publish to %r", peer.id, topic[:40])
            return
        subscribers = self._topics[topic]
        # Serialized once for every recipient; ``clients`` as y-webrtc's server adds it.
        frame = signaling.encode(Publish(topic, data, clients=len(subscribers)))
        for subscriber in list(subscribers):  # a slow one leaves the topic as we go
            subscriber.send(frame)


def _too_big(data: bytes | str, limit: int) -> bool:
    """Whether ``data`` is over ``limit`` bytes (as UTF-8, for text)."""
    if isinstance(data, bytes) or len(data) > limit or 4 * len(data) <= limit:
        return len(data) > limit  # a character is 1 to 4 bytes of UTF-8
    return len(data.encode("utf-8", "surrogatepass")) > limit
