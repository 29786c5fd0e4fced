"""Server-side edits: a change made by a bot or a backend, applied to the live room.

An edit is not a connection, but the room treats it as one: it is applied through
:meth:`Room.receive` by a small :class:`Origin` peer, so it is integrated exactly
once, broadcast to every editor of the document, and logged with the caller as
author, like any editor's update. The document is acquired for the edit (loaded
from the store when nobody has it open, then unloaded after the grace period) and
:func:`apply` returns once the update is durable, with its log seq.

The change is computed from the live Doc at the instant it is applied (a function
of the Doc, called synchronously right before the room applies its result), so
nothing another editor sends can slip in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pycrdt import Doc

from collab.core.rooms import Rooms
from collab.errors import CollabError, DocumentDeleted
from collab.wire.protocol import Update

__all__ = ["NotDurable", "Origin", "apply"]


class NotDurable(CollabError):
    """An edit was applied (editors have it) but the store did not commit it in time.

    The journal keeps it and commits it when the store recovers; the caller may
    not assume it survives a crash until then.
    """

    http_status = 503


class Origin:
    """A server-side edit as a :class:`~collab.core.room.Peer` of its room.

    It receives nothing (it never joins), asks for a durability acknowledgement and
    records the seq its update was given.
    """

    read_only = False

    def __init__(self, client: str, user: str | None, rooms: Rooms, name: str) -> None:
        self.id = client
        self.user = user
        self._rooms = rooms
        self._name = name
        self.durable: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def wants_acks(self) -> bool:
        return True

    def send(self, frame: bytes) -> None:
        """Nothing is sent to a server-side edit."""

    def saved(self) -> None:
        if not self.durable.done():
            self.durable.set_result(self._rooms.last_seq(self._name))


async def apply(
    rooms: Rooms,
    name: str,
    change: Callable[[Doc[Any]], bytes],
    *,
    client: str,
    user: str | None,
    timeout: float,
) -> int:
    """Apply ``change(live_doc)`` (an update) to document ``name``; return its seq once durable.

    ``client`` and ``user`` are what the log records as its author. An update that
    changes nothing returns the seq the document is durable at.

    Raises:
        InvalidPayload: the update is not a valid Yjs update (nothing changed).
        CollabError: whatever ``change`` raises (e.g. InvalidRequest), before anything changed.
        NotDurable: the store did not commit it within ``timeout`` seconds.
        DocumentDeleted: the store refused it: the document was deleted (by another
            process or ``collab delete``) since this process loaded it.
        StoreError: the document could not be loaded.
    """
    room = await rooms.acquire(name)
    try:
        origin = Origin(client, user, rooms, name)
        room.receive(origin, Update(change(room.doc)))
        ending = room.ending
        waits: set[asyncio.Future[Any]] = {origin.durable}
        if ending is not None:
            waits.add(ending)
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if origin.durable in done:
            return origin.durable.result()
        if ending is not None and ending in done:
            # The store refused it: the document was deleted since this process loaded it.
            raise DocumentDeleted(f"document {name!r} was deleted; the edit was not stored")
        raise NotDurable("the edit is applied but not yet durable: the store is not committing")
    finally:
        rooms.release(room)
