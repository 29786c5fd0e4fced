"""collab.core.deletion: deleting a loaded document, and deletions made elsewhere.

A real MemoryStore and Journal under real Rooms; "elsewhere" is a second hand on
the same store deleting the way ``collab delete`` does (``Store.delete`` with a
tombstone), with no server of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pycrdt import Doc, Text

from collab.config import Config
from collab.core import edits
from collab.core.deletion import DeletionWatcher, delete_document
from collab.core.journal import Journal
from collab.core.rooms import Rooms
from collab.errors import DocumentDeleted
from collab.store import NewEntry
from collab.store.memory import MemoryStore
from collab.store.replay import replay
from collab.wire.protocol import Update

CONFIG = Config(db_url="memory://", unload_grace_seconds=0.01, commit_interval=0.001)


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore()
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def rooms(store: MemoryStore) -> AsyncIterator[Rooms]:
    async with Journal(store, CONFIG) as journal:
        rooms = Rooms(CONFIG, store, journal)
        yield rooms
        await rooms.close()


async def loaded_with(rooms: Rooms, name: str, text: str, timeout: float = 5) -> None:
    """Append ``text`` to ``name`` as a server-side edit (loading it), once durable."""

    def append(live: Doc[Any]) -> bytes:
        copy: Doc[Any] = Doc()
        copy.apply_update(live.get_update())
        before = copy.get_state()
        content = copy.get("text", type=Text)
        content.insert(len(content), text)
        return copy.get_update(before)

    await edits.apply(rooms, name, append, client="test", user=None, timeout=timeout)


async def test_evicting_a_document_deleted_elsewhere_does_not_write_it_back(
    rooms: Rooms, store: MemoryStore
) -> None:
    await loaded_with(rooms, "notes", "typed")
    await deleted_elsewhere(store, "notes")
    async with rooms.deleting("notes"):
        final = await rooms.evict("notes", DocumentDeleted("gone"))
        assert final is not None
        # A final snapshot here would put the document back until the second deletion.
        assert await store.document("notes") is None
        assert await store.entries("notes") == []


async def deleted_elsewhere(store: MemoryStore, name: str) -> None:
    """Delete ``name`` as ``collab delete`` does: its content gone, its tombstone written."""
    loaded = await store.load(name)
    assert await store.delete(name, replay(loaded.snapshot, loaded.entries).get_state())


async def test_what_editors_type_after_a_deletion_elsewhere_is_never_stored(
    rooms: Rooms, store: MemoryStore
) -> None:
    watcher = DeletionWatcher(rooms, store, CONFIG)
    await watcher.start()
    await loaded_with(rooms, "notes", "before")
    await deleted_elsewhere(store, "notes")
    # Typed before the watcher looked: the store refuses it, and the edit is told so
    # at once (not a NotDurable once its timeout ran out).
    with pytest.raises(DocumentDeleted):
        await loaded_with(rooms, "notes", " after", timeout=30)
    assert await store.document("notes") is None
    await until_unloaded(rooms, "notes")  # evicted on the refusal, before any poll
    assert await watcher.poll() == []  # nothing left for the watcher to evict
    assert await store.document("notes") is None
    assert [t.doc for t in await store.tombstones(0)] == ["notes"]  # only the deletion's


async def until_unloaded(rooms: Rooms, name: str) -> None:
    async with asyncio.timeout(5):
        while name in rooms:
            await asyncio.sleep(0.01)


class Editor:
    """A room's peer that records how its connection was ended (a session's ``fail``)."""

    def __init__(self) -> None:
        self.id = "editor"
        self.user: str | None = None
        self.read_only = False
        self.wants_acks = False
        self.failed: list[Exception] = []

    def send(self, frame: bytes) -> None:
        pass

    def saved(self) -> None:
        pass

    def fail(self, exc: Exception) -> None:
        self.failed.append(exc)


async def test_editors_of_a_document_deleted_elsewhere_are_closed_on_the_first_refusal(
    rooms: Rooms, store: MemoryStore
) -> None:
    # No watcher runs: the store's refusal of a write is what ends the room.
    await loaded_with(rooms, "notes", "before")
    room = await rooms.acquire("notes")
    editor = Editor()
    room.join(editor)
    await deleted_elsewhere(store, "notes")
    other: Doc[Any] = Doc()
    other.get("text", type=Text).insert(0, "typed after")
    room.receive(editor, Update(other.get_update()))
    async with asyncio.timeout(5):
        while not editor.failed:
            await asyncio.sleep(0.01)
    assert [type(e) for e in editor.failed] == [DocumentDeleted]
    room.leave(editor)
    rooms.release(room)
    await until_unloaded(rooms, "notes")
    assert await store.document("notes") is None


async def test_a_room_unloaded_before_the_deletion_is_noticed_does_not_bring_it_back(
    rooms: Rooms, store: MemoryStore
) -> None:
    await loaded_with(rooms, "notes", "typed")  # released: it unloads after the grace
    await deleted_elsewhere(store, "notes")
    async with asyncio.timeout(10):
        while "notes" in rooms:  # the grace ends and the unload starts
            await asyncio.sleep(0.01)
    room = await rooms.acquire("notes")  # returns once that unload (its final flush) ended
    rooms.release(room)
    assert await store.document("notes") is None  # its final snapshot was refused
    loaded = await store.load("notes")
    assert loaded.snapshot is None and loaded.entries == []


async def test_a_new_document_made_elsewhere_survives_the_old_ones_eviction(
    rooms: Rooms, store: MemoryStore
) -> None:
    watcher = DeletionWatcher(rooms, store, CONFIG)
    await watcher.start()
    await loaded_with(rooms, "notes", "old")
    await deleted_elsewhere(store, "notes")
    other: Doc[Any] = Doc()
    other.get("text", type=Text).insert(0, "new")
    fresh = {"notes": (await store.load("notes")).incarnation}
    await store.append([NewEntry("notes", other.get_update(), 1.0, "elsewhere")], None, fresh)
    with pytest.raises(DocumentDeleted):
        await loaded_with(rooms, "notes", " stale", timeout=30)
    await until_unloaded(rooms, "notes")
    assert await watcher.poll() == []
    loaded = await store.load("notes")
    assert str(replay(loaded.snapshot, loaded.entries).get("text", type=Text)) == "new"


async def test_a_local_deletion_commits_what_was_queued_then_removes_it(
    rooms: Rooms, store: MemoryStore
) -> None:
    await loaded_with(rooms, "notes", "typed")
    assert await delete_document(rooms, store, "notes")
    assert await store.document("notes") is None
    assert not await delete_document(rooms, store, "notes")  # nothing left to delete
