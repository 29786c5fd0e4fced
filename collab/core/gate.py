"""The gate every WebSocket upgrade passes, whichever server carries it.

Before a connection is upgraded, :meth:`Gate.admit` decides from the request
alone (path, query string, headers) what it may open: a document session, or
(later) something else at a reserved path. A refusal is a
:class:`~collab.errors.CollabError` raised *before* the upgrade, which the
transport answers as plain HTTP with the error's status and a JSON reason, so a
refused handshake writes nothing to the store and creates no document. An
admitted request becomes an :class:`Entry`, started once the transport has
completed the handshake.

Authentication and origin checks (the security policy) belong here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

from collab.config import Config
from collab.core.rooms import Rooms
from collab.core.session import Identity, Session, Transport
from collab.names import parse_path

__all__ = ["SAVED_PARAM", "DocumentEntry", "Entry", "Gate", "Receiver"]

#: Query parameter by which a client asks for durability acknowledgements.
SAVED_PARAM = "saved"


class Receiver(Protocol):
    """What a transport feeds once a connection is open (a :class:`Session`)."""

    def receive(self, data: bytes | str) -> None:
        """One whole message from the peer. Never raises."""

    def end(self, code: int | None = None, reason: str = "") -> None:
        """The connection is gone (``code``: how it closed, if known). Call once."""


class Entry(Protocol):
    """An admitted upgrade, waiting for its connection."""

    async def start(self, transport: Transport) -> Receiver | None:
        """Open on ``transport``; ``None`` when it could not (the transport is closed)."""


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    """An admitted editor of document ``name``."""

    name: str
    rooms: Rooms
    config: Config
    wants_acks: bool
    identity: Identity

    async def start(self, transport: Transport) -> Session | None:
        session = Session(
            transport,
            self.name,
            self.rooms,
            self.config,
            wants_acks=self.wants_acks,
            identity=self.identity,
        )
        return session if await session.start() else None


class Gate:
    """Admits WebSocket upgrades for one server (native or ASGI)."""

    def __init__(self, rooms: Rooms, config: Config) -> None:
        self.rooms = rooms
        self.config = config

    def admit(self, path: str, query_string: str, headers: Mapping[str, str]) -> Entry:
        """What the upgrade of raw ``path`` (below the mount point) opens.

        ``headers`` has lower-case names.

        Raises:
            CollabError: the request is refused (its ``http_status``, its reason).
        """
        name = parse_path(path, self.config)
        query = dict(parse_qsl(query_string))
        return DocumentEntry(
            name,
            self.rooms,
            self.config,
            wants_acks=query.get(SAVED_PARAM) in ("1", "true"),
            identity=Identity(),
        )
