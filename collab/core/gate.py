"""The gate every WebSocket upgrade passes, whichever server carries it.

Before a connection is upgraded, :meth:`Gate.admit` decides from the request
alone (path, query string, headers) what it may open: a document session, or,
at the one reserved path ``/signal``, a WebRTC signaling peer
(:mod:`collab.core.signaling`). ``signal`` is therefore never a document name
over WebSocket (``/signal/x`` still names the document ``signal/x``). A refusal is a
:class:`~collab.errors.CollabError` raised *before* the upgrade, which the
transport answers as plain HTTP with the error's status and a JSON reason, so a
refused handshake writes nothing to the store and creates no document. An
admitted request becomes an :class:`Entry`, started once the transport has
completed the handshake.

The security policy is checked here, once, for every transport (the native
listener, the ASGI app, the HTTP fallback): the ``Origin`` (403), the token from
``?token=`` or ``Authorization: Bearer`` (401 when missing, badly signed or
expired), and that it covers the document (403). The token's grant becomes the
session's :class:`~collab.core.session.Identity`: its user, whether it is
read-only, and when it expires (the session closes itself with 4401 then). At
``/signal`` the token comes as ``?token=`` (y-webrtc can pass nothing else) and
limits the topics the peer may subscribe to to the documents it covers.

Admission also takes the connection's place in the connection limits
(:class:`~collab.policy.limits.ConnectionCounts`: in all, per document, per client
IP, the IP read from ``X-Forwarded-For`` only behind a trusted proxy). The place
is held until the session ends; a transport that admitted an upgrade and then
does not start it (the handshake failed, the client went) must call
:meth:`Entry.abandon`, or the place would be lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

from collab.config import Config
from collab.core.events import EVENTS_PARAM
from collab.core.rooms import Rooms
from collab.core.session import Identity, Session, Transport
from collab.core.signaling import Hub, SignalingPeer, TextTransport, TopicCheck, every_topic
from collab.errors import CollabError
from collab.names import parse_path
from collab.policy.access import Access
from collab.policy.limits import ConnectionCounts, Slot, TrustedProxies

__all__ = [
    "SAVED_PARAM",
    "SIGNAL_NAME",
    "Connection",
    "DocumentEntry",
    "Entry",
    "Gate",
    "Receiver",
    "SignalingEntry",
]

#: Query parameter by which a client asks for durability acknowledgements.
SAVED_PARAM = "saved"

#: The reserved name of the WebRTC signaling endpoint: ``ws://host:port/signal``.
SIGNAL_NAME = "signal"

log = logging.getLogger("collab.gate")


class Receiver(Protocol):
    """What a transport feeds once a connection is open (a :class:`Session`)."""

    def receive(self, data: bytes | str) -> None:
        """One whole message from the peer. Never raises."""

    def end(self, code: int | None = None, reason: str = "") -> None:
        """The connection is gone (``code``: how it closed, if known). Call once."""


class Connection(Transport, TextTransport, Protocol):
    """What a WebSocket transport offers an entry: binary writes (editors) and text
    writes (signaling), one close, one count of waiting bytes."""


class Entry(Protocol):
    """An admitted upgrade, waiting for its connection."""

    @property
    def max_message_size(self) -> int:
        """The largest message this entry accepts (the transport may enforce it early)."""

    async def start(self, transport: Connection) -> Receiver | None:
        """Open on ``transport``; ``None`` when it could not (the transport is closed).

        From this call on the entry's connection slot is the session's: it is
        released when the receiver ends, or here when it could not open.
        """

    def abandon(self) -> None:
        """The transport will not :meth:`start` this entry: release its connection slot.

        Call it on every path where an admitted upgrade is not started; harmless
        if called twice, wrong after :meth:`start`.
        """


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    """An admitted editor of document ``name``."""

    name: str
    rooms: Rooms
    config: Config
    wants_acks: bool
    identity: Identity
    wants_events: bool = False
    #: Its place in the connection limits, released when the session ends.
    slot: Slot | None = None

    @property
    def max_message_size(self) -> int:
        return self.config.max_message_size

    async def start(self, transport: Transport) -> Session | None:
        session = Session(
            transport,
            self.name,
            self.rooms,
            self.config,
            wants_acks=self.wants_acks,
            wants_events=self.wants_events,
            identity=self.identity,
            slot=self.slot,
        )
        try:
            started = await session.start()
        except BaseException:  # cancelled while the document loaded: the slot goes too
            session.end()
            raise
        return session if started else None

    def abandon(self) -> None:
        if self.slot is not None:
            self.slot.release()


@dataclass(frozen=True, slots=True)
class SignalingEntry:
    """An admitted signaling peer, allowed the topics ``may_subscribe`` admits."""

    hub: Hub
    may_subscribe: TopicCheck
    #: Its place in the connection limits, released when the peer ends.
    slot: Slot | None = None

    @property
    def max_message_size(self) -> int:
        return self.hub.config.signal_max_message_size

    async def start(self, transport: TextTransport) -> Receiver:
        peer = self.hub.join(transport, self.may_subscribe)
        return peer if self.slot is None else _Releasing(peer, self.slot)

    def abandon(self) -> None:
        if self.slot is not None:
            self.slot.release()


class _Releasing:
    """A signaling peer that gives its connection slot back when it ends."""

    __slots__ = ("_peer", "_slot")

    def __init__(self, peer: SignalingPeer, slot: Slot) -> None:
        self._peer = peer
        self._slot = slot

    def receive(self, data: bytes | str) -> None:
        self._peer.receive(data)

    def end(self, code: int | None = None, reason: str = "") -> None:
        try:
            self._peer.end(code, reason)
        finally:
            self._slot.release()


class Gate:
    """Admits WebSocket upgrades for one server (native or ASGI).

    ``signaling`` is the server's topic hub (one is made when none is given);
    ``access`` the security policy (made from ``config`` when none is given).

    Raises:
        ValueError: ``config.forwarded_allow_ips`` holds something that is not an
            address, a network or ``*``.
    """

    def __init__(
        self,
        rooms: Rooms,
        config: Config,
        signaling: Hub | None = None,
        access: Access | None = None,
    ) -> None:
        self.rooms = rooms
        self.config = config
        self.signaling = signaling if signaling is not None else Hub(config)
        self.access = access if access is not None else Access.from_config(config)
        #: Open connections against their limits (this process's; docs/security.md).
        self.connections = ConnectionCounts(
            config.max_connections, config.max_connections_per_doc, config.max_connections_per_ip
        )
        self.proxies = TrustedProxies(config.forwarded_allow_ips)

    def admit(
        self, path: str, query_string: str, headers: Mapping[str, str], client: str = ""
    ) -> Entry:
        """What the upgrade of raw ``path`` (below the mount point) opens.

        ``headers`` has lower-case names; ``client`` is the peer's address as the
        transport saw it (``"host:port"``, or ``""`` when unknown).

        The admitted entry holds a connection slot: the transport starts it, or
        abandons it (:meth:`Entry.abandon`).

        Raises:
            CollabError: the request is refused (its ``http_status``, its reason);
                over a connection limit: ``ServerBusy`` (503) or
                ``TooManyConnections`` (429), each logged as one WARNING.
                before any slot: Forbidden (bad Origin, another document), Unauthorized.
        """
        query = dict(parse_qsl(query_string))
        grant = self.access.admit(query, headers, time.time())
        name = parse_path(path, self.config)
        if name == SIGNAL_NAME:
            # Topics are document names: a peer may meet others only on documents
            # its token covers (y-webrtc passes the token as ?token=).
            check = every_topic if grant.doc == "*" else grant.covers
            return SignalingEntry(
                self.signaling, may_subscribe=check, slot=self._slot(None, client, headers)
            )
        self.access.require(grant, name, "read")
        # The slot is taken last: nothing may refuse the request after it.
        return DocumentEntry(
            name,
            self.rooms,
            self.config,
            wants_acks=query.get(SAVED_PARAM) in ("1", "true"),
            identity=Identity(grant.user, grant.read_only, grant.expires_at),
            wants_events=query.get(EVENTS_PARAM) in ("1", "true"),
            slot=self._slot(name, client, headers),
        )

    def _slot(self, doc: str | None, client: str, headers: Mapping[str, str]) -> Slot:
        ip = self.proxies.client_ip(client, headers.get("x-forwarded-for"))
        try:
            return self.connections.open(doc, ip)
        except CollabError as exc:
            log.warning(
                "refused a connection from %s (client IP %s) to %s: %s",
                client or "an unknown peer",
                ip or "unknown",
                repr(doc) if doc is not None else "/signal",
                exc.reason,
            )
            raise
