"""What joins the rooms of several processes that hold the same document.

The core knows a relay only through these two small interfaces; the Redis one is
:class:`collab.fanout.redis.RedisRelay`. Without a relay (one process) the room
calls nothing and pays nothing.

A room tells its relay of every change that came from one of *its own* editors
(:class:`Relay`); what the relay brings from other processes goes into the room
through :meth:`collab.core.room.Room.receive_remote` and
:meth:`~collab.core.room.Room.receive_remote_awareness`, which apply and forward
it to the local editors but never log it nor hand it back to the relay. So each
update is logged once, by the process its editor is connected to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collab.core.room import Room


class Relay(Protocol):
    """Where a room sends what its own editors changed. Both methods return at once."""

    def update(self, doc: str, update: bytes) -> None:
        """``update`` was integrated into ``doc`` from a local editor (exactly what the Doc
        integrated, the bytes the journal logs)."""

    def awareness(self, doc: str, payload: bytes) -> None:
        """Local editors' presence changed, was renewed or went: an awareness update."""


class RoomRelay(Relay, Protocol):
    """What :class:`collab.core.rooms.Rooms` needs: rooms join when loaded, leave when not."""

    async def join(self, room: Room) -> None:
        """Follow ``room``'s document and catch up with the processes that hold it: when
        this returns, the room holds what they held (or the wait timed out, or the relay
        is down and will resync when it is back). Never raises."""

    def leave(self, room: Room) -> None:
        """Stop following ``room``'s document (it is being unloaded)."""
