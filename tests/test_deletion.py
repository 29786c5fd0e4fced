"""collab.core.deletion: deleting a loaded document, and deletions made elsewhere.

A real MemoryStore and Journal under real Rooms; "elsewhere" is a second hand on
the same store deleting the way ``collab delete`` does (``Store.delete`` with a
tombstone), with no server of its own.
"""

from __future__ import annotations

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
from collab.store.memory import MemoryStore
from collab.store.replay import replay

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


async def loaded_with(rooms: Rooms, name: str, text: str) -> None:
    """Append ``text`` to ``name`` as a server-side edit (loading it), once durable."""

    def append(live: Doc[Any]) -> bytes:
        copy: Doc[Any] = Doc()
        copy.apply_update(live.get_update())
        before = copy.get_state()
        content = copy.get("text", type=Text)
        content.insert(len(content), text)
        return copy.get_update(before)

    await edits.apply(rooms, name, append, client="test", user=None, timeout=5)


async def test_evicting_a_document_deleted_elsewhere_does_not_write_it_back(
    rooms: Rooms, store: MemoryStore
) -> None:
    await loaded_with(rooms, "notes", "typed")
    loaded = await store.load("notes")
    assert await store.delete("notes", replay(loaded.snapshot, loaded.entries).get_state())
    async with rooms.deleting("notes"):
        final = await rooms.evict("notes", DocumentDeleted("gone"))
        assert final is not None
        # A final snapshot here would put the document back until the second deletion.
        assert await store.document("notes") is None
        assert await store.entries("notes") == []


async def test_the_watcher_deletes_again_what_editors_wrote_after_the_deletion(
    rooms: Rooms, store: MemoryStore
) -> None:
    watcher = DeletionWatcher(rooms, store, CONFIG)
    await watcher.start()
    await loaded_with(rooms, "notes", "before")
    await store.delete("notes", b"\x00")
    await loaded_with(rooms, "notes", " after")  # typed before the deletion is noticed
    assert (await store.document("notes")) is not None
    assert await watcher.poll() == ["notes"]
    assert "notes" not in rooms
    assert await store.document("notes") is None
    tombstones = [t.doc for t in await store.tombstones(0)]
    assert tombstones == ["notes", "notes"]
    assert await watcher.poll() == []  # its own tombstone ends nothing loaded


async def test_a_local_deletion_commits_what_was_queued_then_removes_it(
    rooms: Rooms, store: MemoryStore
) -> None:
    await loaded_with(rooms, "notes", "typed")
    assert await delete_document(rooms, store, "notes")
    assert await store.document("notes") is None
    assert not await delete_document(rooms, store, "notes")  # nothing left to delete
