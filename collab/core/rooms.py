"""Rooms by name: load each document once, unload it when nobody needs it.

Loading is asynchronous (the store), so two editors opening a new document at
the same instant must not get two rooms: the first :meth:`Rooms.acquire`
starts one load task and every caller awaits that same task. A room is held
while anyone has acquired it; when the last holder releases it, it stays loaded
for ``unload_grace_seconds`` and is then flushed (every update durable, a final
snapshot) and dropped. A caller arriving during an unload waits for it and then
loads the document afresh, so nobody is ever served a half-unloaded room.

Deleting a document (:func:`collab.core.deletion.delete_document`) holds the
name (:meth:`Rooms.deleting`): arrivals wait until the deletion is durable, then
load the new, empty incarnation with the deleted one's tombstone as its guard
(:mod:`collab.core.guard`).

With a relay (several processes, collab.core.relay), a loaded room joins it
before its first editor is served: it catches up with what the processes that
hold the document have and the store does not yet, and it leaves the relay when
it is unloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from collab.config import Config
from collab.core import metrics
from collab.core.guard import Guard
from collab.core.relay import RoomRelay
from collab.core.room import Log, Room
from collab.errors import CollabError, DocumentDeleted
from collab.store import Store
from collab.store.replay import replay

log = logging.getLogger("collab.rooms")


class ClosableLog(Log, Protocol):
    async def close(self, snapshot: bool = True) -> None: ...

    @property
    def last_seq(self) -> int: ...


class LogFactory(Protocol):
    """What rooms need of the journal: a log per loaded document."""

    def open(
        self,
        doc: str,
        state: Callable[[], bytes],
        last_seq: int,
        entries_since_snapshot: int = 0,
        incarnation: int = 0,
    ) -> ClosableLog: ...


class Rooms:
    """Every loaded room of this process."""

    def __init__(
        self,
        config: Config,
        store: Store,
        journal: LogFactory,
        clock: Callable[[], float] = time.monotonic,
        relay: RoomRelay | None = None,
    ) -> None:
        self._config = config
        self._relay = relay
        self._store = store
        self._journal = journal
        self._clock = clock
        self._loading: dict[str, asyncio.Task[Room]] = {}
        self._rooms: dict[str, Room] = {}
        self._logs: dict[str, ClosableLog] = {}
        self._holders: dict[str, int] = {}
        self._unload_timers: dict[str, asyncio.TimerHandle] = {}
        self._unloading: dict[str, asyncio.Task[None]] = {}
        self._deleting: dict[str, asyncio.Event] = {}
        #: name -> the newest tombstone id when it was loaded (Loaded.incarnation).
        self._incarnations: dict[str, int] = {}
        self._evictions: set[asyncio.Task[None]] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._rooms

    def loaded(self) -> list[str]:
        """Names of the documents in memory now."""
        return list(self._rooms)

    def get(self, name: str) -> Room | None:
        """The loaded room of ``name``, if any (does not load it)."""
        return self._rooms.get(name)

    def last_seq(self, name: str) -> int:
        """The seq of loaded ``name``'s latest durable log entry (in an ``on_durable``
        callback: the seq of that callback's update). Raises ``KeyError`` if not loaded."""
        return self._logs[name].last_seq

    async def acquire(self, name: str) -> Room:
        """The room of ``name``, loaded from the store if needed. Pair with :meth:`release`.

        Raises:
            StoreError: the document could not be loaded.
        """
        while True:
            deleting = self._deleting.get(name)
            if deleting is not None:
                await deleting.wait()
                continue
            unloading = self._unloading.get(name)
            if unloading is not None:
                await asyncio.shield(unloading)
                continue
            room = self._rooms.get(name)
            if room is None:
                task = self._loading.get(name)
                if task is None:
                    task = asyncio.create_task(self._load(name), name=f"load {name}")
                    self._loading[name] = task
                try:
                    await asyncio.shield(task)
                finally:
                    if task.done() and self._loading.get(name) is task:
                        del self._loading[name]
                continue  # re-check: an unload may have started meanwhile
            self._holders[name] = self._holders.get(name, 0) + 1
            timer = self._unload_timers.pop(name, None)
            if timer is not None:
                timer.cancel()
            return room

    def release(self, room: Room) -> None:
        """Stop holding ``room``; unload it after the grace period if nobody else holds it."""
        name = room.name
        if self._rooms.get(name) is not room:
            return  # evicted (its document deleted) while held: nothing left to release
        count = self._holders.get(name, 0) - 1
        if count > 0:
            self._holders[name] = count
            return
        self._holders.pop(name, None)
        loop = asyncio.get_running_loop()
        self._unload_timers[name] = loop.call_later(
            self._config.unload_grace_seconds, self._start_unload, name
        )

    def tick(self) -> None:
        """Let every room expire silent presence and forward batched renewals."""
        for room in list(self._rooms.values()):
            room.tick()

    async def close(self) -> None:
        """Unload every room now (flush and snapshot). Call after all editors left."""
        for timer in self._unload_timers.values():
            timer.cancel()
        self._unload_timers.clear()
        for name in list(self._rooms):
            self._start_unload(name, force=True)
        if self._unloading:
            await asyncio.gather(*self._unloading.values(), return_exceptions=True)

    def incarnation(self, name: str) -> int | None:
        """The newest tombstone id of ``name`` when its loaded room was loaded (0: none);
        ``None`` if it is not loaded. A tombstone with a larger id ended that room's document."""
        return self._incarnations.get(name) if name in self._rooms else None

    @contextlib.asynccontextmanager
    async def deleting(self, name: str) -> AsyncIterator[None]:
        """Hold ``name`` while its document is deleted: :meth:`acquire` waits until the
        block ends. Deletions of one name take turns."""
        while (busy := self._deleting.get(name)) is not None:
            await busy.wait()
        done = self._deleting[name] = asyncio.Event()
        try:
            yield
        finally:
            del self._deleting[name]
            done.set()

    async def evict(self, name: str, exc: CollabError) -> bytes | None:
        """Close every editor of ``name`` with ``exc`` and unload its room now: its log
        flushed, and no final snapshot (the document is being deleted; a snapshot would
        write it back to the store until the deletion ends). Returns the room's final
        state vector, or ``None`` if it was not loaded. Use inside :meth:`deleting`, so
        nobody loads it again meanwhile."""
        room = self._rooms.get(name)
        if room is None:
            unloading = self._unloading.get(name)
            if unloading is not None:
                await asyncio.shield(unloading)
            return None
        for peer in list(room.peers):
            fail = getattr(peer, "fail", None)  # sessions; an HTTP edit has no connection
            if fail is not None:
                fail(exc)
        state = room.doc.get_state()
        self._holders.pop(name, None)
        timer = self._unload_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        self._start_unload(name, force=True, snapshot=False)
        unloading = self._unloading.get(name)
        if unloading is not None:
            await asyncio.shield(unloading)
        return state

    async def _load(self, name: str) -> Room:
        loaded = await self._store.load(name)
        doc = replay(loaded.snapshot, loaded.entries)
        stored = sum(len(entry.update) for entry in loaded.entries)
        if loaded.snapshot is not None:
            stored += len(loaded.snapshot.state)
        room = Room(
            name,
            doc,
            awareness_timeout=self._config.awareness_timeout,
            clock=self._clock,
            max_bytes=self._config.max_doc_bytes,
            size=stored,  # what it was rebuilt from: at least its state's length
        )
        room.guard = Guard.from_tombstones(t.state_vector for t in loaded.tombstones)
        self._incarnations[name] = loaded.incarnation
        # A long log since the last snapshot counts toward the next one, so the next
        # load of this document is fast.
        document_log = self._journal.open(
            name,
            doc.get_update,
            loaded.last_seq,
            entries_since_snapshot=len(loaded.entries),
            incarnation=loaded.incarnation,
        )
        room.attach_log(document_log)
        document_log.ending.add_done_callback(lambda _: self._ended(name, document_log))
        if self._relay is not None:
            room.relay = self._relay
            await self._relay.join(room)  # never raises; bounded by redis_sync_timeout
        self._rooms[name] = room
        self._logs[name] = document_log
        metrics.DOCUMENTS_LOADED.value += 1
        log.debug("loaded %s (seq %d)", name, loaded.last_seq)
        return room

    def _ended(self, name: str, document_log: ClosableLog) -> None:
        """The store refused ``document_log``'s appends: the document was deleted since
        it was loaded (by another process, or ``collab delete``). Evict its room now,
        closing its editors with 4404, rather than at the deletion watcher's next poll:
        what they type meanwhile would not be stored."""
        if self._logs.get(name) is not document_log:
            return  # unloading already
        task = asyncio.create_task(self._evict_ended(name, document_log), name=f"evict {name}")
        self._evictions.add(task)
        task.add_done_callback(self._evictions.discard)

    async def _evict_ended(self, name: str, document_log: ClosableLog) -> None:
        async with self.deleting(name):
            if self._logs.get(name) is document_log:
                log.warning("%r was deleted elsewhere: closing its editors", name)
                await self.evict(name, DocumentDeleted(f"document {name!r} was deleted"))

    def _start_unload(self, name: str, force: bool = False, snapshot: bool = True) -> None:
        self._unload_timers.pop(name, None)
        if self._holders.get(name) and not force:
            return
        room = self._rooms.pop(name, None)
        if room is None:
            return
        self._incarnations.pop(name, None)
        metrics.DOCUMENTS_LOADED.value -= 1
        document_log = self._logs.pop(name)
        if self._relay is not None:
            self._relay.leave(room)
        task = asyncio.create_task(
            self._unload(room, document_log, snapshot), name=f"unload {name}"
        )
        self._unloading[name] = task
        task.add_done_callback(lambda _: self._unloading.pop(name, None))

    async def _unload(self, room: Room, document_log: ClosableLog, snapshot: bool) -> None:
        try:
            await document_log.close(snapshot)
        except Exception:
            # The journal already logged the failure and keeps retrying the entries;
            # nothing more to do here than to say the room went anyway.
            log.exception("unloading %s: flush failed", room.name)
        finally:
            room.close()
            log.debug("unloaded %s", room.name)
