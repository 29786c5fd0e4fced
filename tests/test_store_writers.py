"""One store, several writers: two stores on one database append to the same documents.

Each stands for a collab process (they share nothing but the database). The log of
a document must stay gapless and ordered however their commits interleave, and a
snapshot written by one must never hide an entry the other committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text

from collab.store import NewEntry, Store, store_from_url
from collab.store.replay import replay
from tests.store_fixtures import prefix_fixture, store_url

__all__ = ["prefix_fixture"]

KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=KINDS)
async def writers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    url = store_url(request.param, tmp_path)
    one = store_from_url(url, several_writers=True)
    two = store_from_url(url, several_writers=True)
    await one.open()
    await two.open()
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


def entry(doc: str, update: bytes, client: str) -> NewEntry:
    return NewEntry(doc=doc, update=update, at=time.time(), client=client)


def typed(doc: Doc[Any], text: str) -> bytes:
    before = doc.get_state()
    doc.get("text", type=Text).insert(len(str(doc.get("text", type=Text))), text)
    return doc.get_update(before)


async def test_concurrent_writers_keep_one_gapless_log(
    writers: tuple[Store, Store], prefix: str
) -> None:
    one, two = writers
    doc = f"{prefix}-log"
    source: Doc[Any] = Doc()
    updates = [typed(source, f"{i} ") for i in range(120)]

    async def write(store: Store, mine: list[bytes], client: str) -> list[int]:
        seqs: list[int] = []
        for i in range(0, len(mine), 3):
            seqs += await store.append([entry(doc, u, client) for u in mine[i : i + 3]])
        return seqs

    seqs_one, seqs_two = await asyncio.gather(
        write(one, updates[0::2], "one"), write(two, updates[1::2], "two")
    )
    assert sorted(seqs_one + seqs_two) == list(range(1, 121))
    logged = await one.entries(doc)
    assert [e.seq for e in logged] == list(range(1, 121))
    assert sorted(e.update for e in logged) == sorted(updates)
    # Each writer's own entries stay in the order it appended them.
    assert [e.update for e in logged if e.client == "one"] == updates[0::2]


async def test_a_snapshot_never_hides_another_writers_entry(
    writers: tuple[Store, Store], prefix: str
) -> None:
    one, two = writers
    doc = f"{prefix}-snap"
    mine: Doc[Any] = Doc()
    theirs: Doc[Any] = Doc()
    await one.append([entry(doc, typed(mine, "mine "), "one")])
    # Process two's editor typed something process one has not received yet...
    await two.append([entry(doc, typed(theirs, "theirs "), "two")])
    # ...when process one snapshots its Doc, labelled with the document's last seq (3).
    await one.append([entry(doc, typed(mine, "again "), "one")], {doc: mine.get_update()})
    loaded = await two.load(doc)
    assert loaded.snapshot is not None and loaded.snapshot.seq == 3 and loaded.entries == []
    text = str(replay(loaded.snapshot, loaded.entries).get("text", type=Text))
    assert "theirs" in text and "mine again" in text
