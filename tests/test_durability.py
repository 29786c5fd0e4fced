"""Durability end to end (design.md §3): saved acks, kill -9, SIGTERM, eviction."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from collab.client import connect
from collab.config import Config
from collab.server import serve
from collab.store import Store, store_from_url
from tests.conftest import eventually
from tests.serverproc import server_process
from tests.store_fixtures import DurableStore, refuse_inserts, store_url


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get("text", type=Text))


async def stored_text(store: Store, name: str) -> str:
    loaded = await store.load(name)
    doc: Doc[Any] = Doc()
    if loaded.snapshot is not None:
        doc.apply_update(loaded.snapshot.state)
    for entry in loaded.entries:
        doc.apply_update(entry.update)
    return text_of(doc)


async def test_saved_means_in_the_database_and_never_when_it_refused(
    sql_store: DurableStore, prefix: str, tmp_path: Path
) -> None:
    name = f"{prefix}-acks"
    config = Config(port=0, db_url="unused://", ping_interval=None, commit_retry_max_delay=0.1)
    async with serve(config, store=sql_store) as server:
        url = f"ws://127.0.0.1:{server.port}/{name}"
        async with connect(url, saved_acks=True) as client:
            await client.wait_synced()
            text = client.doc.get("text", type=Text)
            text.insert(0, "first")
            await client.wait_saved()
            assert await stored_text(sql_store, name) == "first"

            undo = await refuse_inserts(sql_store, name)
            try:
                text.insert(5, " second")
                await eventually(lambda: server.journal.failing)
                assert not client.saved
                assert await stored_text(sql_store, name) == "first"
            finally:
                await undo()
            await client.wait_saved()
            assert await stored_text(sql_store, name) == "first second"


@pytest.mark.parametrize("server", ["native", "asgi"])
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_kill_9_loses_nothing_committed_and_editors_restore_the_rest(
    kind: str, server: str, prefix: str, tmp_path: Path
) -> None:
    db = store_url(kind, tmp_path)
    name = f"{prefix}-crash"
    async with server_process(db, tmp_path / "server.log", server) as proc:
        url = proc.url(name)
        async with (
            connect(url, saved_acks=True, backoff_max=0.3) as a,
            connect(url, saved_acks=True, backoff_max=0.3) as b,
        ):
            await a.wait_synced()
            await b.wait_synced()
            ta, tb = a.doc.get("text", type=Text), b.doc.get("text", type=Text)
            for i in range(10):
                ta.insert(len(ta), f"<a{i}>")
                tb.insert(0, f"<b{i}>")
            await a.wait_saved()
            await b.wait_saved()
            committed = text_of(a.doc)
            await b.wait_for(lambda: text_of(b.doc) == committed)

            # Edits the server may have accepted but not committed, then kill -9.
            for i in range(10, 20):
                ta.insert(len(ta), f"<a{i}>")
                tb.insert(0, f"<b{i}>")
            proc.kill()
            await a.wait_for(lambda: not a.connected)
            for i in range(20, 23):  # and some made while the server is down
                ta.insert(len(ta), f"<a{i}>")

            await proc.start()  # same database, same port
            async with connect(url) as fresh:
                await fresh.wait_synced()
                for i in range(10):
                    assert text_of(fresh.doc).count(f"<a{i}>") == 1
                    assert text_of(fresh.doc).count(f"<b{i}>") == 1
                # The old editors reconnect and resync what the crash took.
                await fresh.wait_for(
                    lambda: (
                        all(text_of(fresh.doc).count(f"<a{i}>") == 1 for i in range(23))
                        and all(text_of(fresh.doc).count(f"<b{i}>") == 1 for i in range(20))
                    ),
                    timeout=20,
                )
            await a.wait_saved(timeout=20)
            await b.wait_saved(timeout=20)
            await b.wait_for(lambda: text_of(b.doc) == text_of(a.doc))
            final = text_of(a.doc)
    store = store_from_url(db)
    await store.open()
    try:
        assert await stored_text(store, name) == final
    finally:
        await store.delete(name)
        await store.close()


async def test_sigterm_closes_editors_with_1001_and_flushes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'term.db'}"
    async with server_process(db, tmp_path / "server.log") as proc:
        async with connect(proc.url("bye"), saved_acks=True) as client:
            await client.wait_synced()
            client.doc.get("text", type=Text).insert(0, "keep me")
            await client.wait_saved()
            ws = await ws_connect(proc.url("bye"))
            code = await proc.terminate()
            assert code == 0
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    store = store_from_url(db)
    await store.open()
    try:
        loaded = await store.load("bye")
        # Shutdown snapshotted the document: loading needs no log replay.
        assert loaded.snapshot is not None and loaded.entries == []
        assert await stored_text(store, "bye") == "keep me"
    finally:
        await store.close()


async def test_idle_documents_leave_memory_and_come_back_identical(tmp_path: Path) -> None:
    config = Config(
        port=0,
        db_url=f"sqlite:///{tmp_path / 'evict.db'}",
        ping_interval=None,
        unload_grace_seconds=0.05,
    )
    count = 1000
    async with serve(config) as server:
        semaphore = asyncio.Semaphore(25)

        async def touch(i: int) -> None:
            async with (
                semaphore,
                connect(f"ws://127.0.0.1:{server.port}/doc-{i}", saved_acks=True) as client,
            ):
                await client.wait_synced()
                client.doc.get("text", type=Text).insert(0, f"document {i} ✓")
                await client.wait_saved()

        await asyncio.gather(*(touch(i) for i in range(count)))
        # All 1,000 were served once; only recently used ones may still be loaded.
        await eventually(lambda: len(server.rooms.loaded()) == 0, timeout=30)
        assert len(await server.store.documents()) == count
        for i in random.sample(range(count), 5):
            async with connect(f"ws://127.0.0.1:{server.port}/doc-{i}") as again:
                await again.wait_synced()
                assert text_of(again.doc) == f"document {i} ✓"
