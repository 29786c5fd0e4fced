"""Deleting a document while a server serves it, and noticing deletions made elsewhere.

:func:`delete_document` is the one way a server deletes: it holds the name
(nobody loads it meanwhile), closes every editor with 4404
(:class:`~collab.errors.DocumentDeleted`), unloads the room with its log flushed,
and deletes the document in one store transaction that also writes its tombstone:
the state vector of everything the deleted incarnation held (the store's content
merged with the live room's). Editors that come back later meet the guard
(:mod:`collab.core.guard`).

:class:`DeletionWatcher` is how a server learns of a deletion it did not make
(``collab delete`` on the same store, another server): every
``deletion_poll_interval`` seconds it asks the store for tombstones it has not
seen -- one indexed query, whatever the number of documents -- and evicts any
loaded document whose tombstone is newer than its load, closing its editors with
4404. It deletes nothing: the store already fences the room's writes (each
commit carries the incarnation it was loaded at, and the store writes nothing of
a document deleted since, :meth:`~collab.store.Store.append`), so what its
editors typed in between is never stored, the document is not brought back (not
even by the room's final snapshot, were it unloaded first), and a new document
of the same name, created meanwhile by another server, is left alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from collab.config import Config
from collab.core.rooms import Rooms
from collab.errors import CollabError, DocumentDeleted
from collab.store import Store
from collab.store.replay import replay
from collab.wire.vectors import decode_state_vector, encode_state_vector, merge

__all__ = ["DeletionWatcher", "delete_document"]

log = logging.getLogger("collab.deletion")


async def delete_document(rooms: Rooms, store: Store, doc: str) -> bool:
    """Delete ``doc`` durably, with its tombstone, closing its editors with 4404.

    Its updates still queued are committed first (an update committed after the
    deletion would bring the document back); no final snapshot is written.

    Returns ``False`` (and touches nothing) when neither the store nor a loaded room
    holds anything of ``doc``. Raises ``StoreError`` when the store fails; the
    editors are closed by then, and their updates are in the store (or still queued
    and retried), so a retry of the deletion finds them.
    """
    async with rooms.deleting(doc):
        room = rooms.get(doc)
        live = room is not None and room.doc.get_state() != _EMPTY_STATE_VECTOR
        if not live and await store.document(doc) is None:
            return False
        final = await rooms.evict(doc, DocumentDeleted(f"document {doc!r} was deleted"))
        loaded = await store.load(doc)
        stored = replay(loaded.snapshot, loaded.entries).get_state()
        vectors = [decode_state_vector(stored)]
        if final is not None:
            vectors.append(decode_state_vector(final))
        deleted = await store.delete(doc, encode_state_vector(merge(vectors)))
        if deleted:
            log.info("deleted %r", doc)
        return deleted


#: What ``Doc.get_state()`` gives for a document that holds nothing.
_EMPTY_STATE_VECTOR = b"\x00"


class DeletionWatcher:
    """Polls the store for deletions made elsewhere; see the module docstring."""

    def __init__(
        self,
        rooms: Rooms,
        store: Store,
        config: Config,
        on_deleted: Callable[[str], None] | None = None,
    ) -> None:
        self._rooms = rooms
        self._store = store
        self._interval = config.deletion_poll_interval
        self._on_deleted = on_deleted
        self._seen: int | None = None

    async def start(self) -> None:
        """Remember the newest tombstone now: older deletions ended before anything loaded."""
        found = await self._store.tombstones(0)
        self._seen = found[-1].id if found else 0

    async def poll(self) -> list[str]:
        """One look at the store; returns the loaded documents it found deleted (and
        evicted, their editors closed with 4404)."""
        if self._seen is None:
            await self.start()
            return []
        ended = []
        for tombstone in await self._store.tombstones(self._seen):
            self._seen = max(self._seen, tombstone.id)
            loaded_at = self._rooms.incarnation(tombstone.doc)
            if loaded_at is None or loaded_at >= tombstone.id:
                continue  # not loaded, or loaded after that deletion: the new incarnation
            log.warning("%r was deleted by another process: closing its editors", tombstone.doc)
            async with self._rooms.deleting(tombstone.doc):
                await self._rooms.evict(
                    tombstone.doc, DocumentDeleted(f"document {tombstone.doc!r} was deleted")
                )
            ended.append(tombstone.doc)
            if self._on_deleted is not None:
                self._on_deleted(tombstone.doc)
        return ended

    async def run(self) -> None:
        """Poll forever, every ``deletion_poll_interval`` seconds (0: never)."""
        if self._interval <= 0:
            return
        while True:
            try:
                await self.poll()
            except CollabError as exc:
                log.error("looking for deleted documents failed: %s", exc.reason)
            await asyncio.sleep(self._interval)
