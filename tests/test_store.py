"""The Store contract, on MemoryStore, a SQLite file and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab.errors import StoreError
from collab.store import Loaded, LogEntry, NewEntry, Store, store_from_url
from collab.store.memory import MemoryStore
from collab.store.sql import SqlStore, engine_url
from collab.store.sqlite import WRITER_CACHE_KIB, SqliteStore
from tests.store_fixtures import (  # noqa: F401
    PG_URL,
    DurableStore,
    prefix_fixture,
    require_postgres,
    sql_store_fixture,
    store_fixture,
)


def entry(
    doc: str, data: bytes, at: float = 1.0, client: str = "c", user: str | None = None
) -> NewEntry:
    return NewEntry(doc=doc, update=data, at=at, client=client, user=user)


async def test_an_unknown_document_is_empty(store: Store, prefix: str) -> None:
    doc = f"{prefix}-none"
    assert await store.load(doc) == Loaded(snapshot=None, entries=[])
    assert await store.document(doc) is None
    assert await store.entries(doc) == []
    assert await store.snapshot_before(doc, 10) is None
    assert await store.delete(doc) is False
    assert await store.append([]) == []


async def test_seqs_are_per_document_and_in_order(store: Store, prefix: str) -> None:
    a, b = f"{prefix}-a", f"{prefix}-b"
    seqs = await store.append(
        [entry(a, b"1", 10.0), entry(b, b"x", 11.0, "c2", "bob"), entry(a, b"2", 12.0)]
    )
    assert seqs == [1, 1, 2]
    assert await store.append([entry(a, b"3", 13.0)]) == [3]
    assert [(e.seq, e.update) for e in await store.entries(a)] == [(1, b"1"), (2, b"2"), (3, b"3")]
    (only,) = await store.entries(b)
    assert only == LogEntry(seq=1, update=b"x", at=11.0, client="c2", user="bob")
    info = await store.document(a)
    assert info is not None
    assert (info.name, info.created_at, info.updated_at, info.last_seq) == (a, 10.0, 13.0, 3)
    mine = [d.name for d in await store.documents() if d.name.startswith(prefix)]
    assert mine == [a, b]


async def test_entries_reads_a_half_open_range(store: Store, prefix: str) -> None:
    doc = f"{prefix}-r"
    await store.append([entry(doc, bytes([i])) for i in range(1, 8)])
    assert [e.seq for e in await store.entries(doc, after=2, upto=5)] == [3, 4, 5]
    assert [e.seq for e in await store.entries(doc, after=5)] == [6, 7]
    assert [e.seq for e in await store.entries(doc, upto=2)] == [1, 2]
    assert await store.entries(doc, after=7) == []


async def test_a_snapshot_covers_its_documents_last_entry_in_the_batch(
    store: Store, prefix: str
) -> None:
    a, b = f"{prefix}-a", f"{prefix}-b"
    await store.append([entry(a, b"1"), entry(b, b"x")])
    await store.append(
        [entry(a, b"2"), entry(a, b"3"), entry(b, b"y")], snapshots={a: b"A3", b: b"B2"}
    )
    await store.append([entry(a, b"4")], snapshots={b: b"B2-again"})  # b has no entry here
    loaded = await store.load(a)
    assert loaded.snapshot is not None
    assert (loaded.snapshot.seq, loaded.snapshot.state) == (3, b"A3")
    assert [(e.seq, e.update) for e in loaded.entries] == [(4, b"4")]
    assert loaded.last_seq == 4
    loaded_b = await store.load(b)
    assert loaded_b.snapshot is not None
    assert (loaded_b.snapshot.seq, loaded_b.snapshot.state) == (2, b"B2-again")
    assert loaded_b.entries == []


async def test_snapshot_before_finds_the_nearest_older_snapshot(store: Store, prefix: str) -> None:
    doc = f"{prefix}-s"
    await store.append([entry(doc, b"1"), entry(doc, b"2")], snapshots={doc: b"S2"})
    await store.append([entry(doc, b"3"), entry(doc, b"4")], snapshots={doc: b"S4"})
    await store.append([entry(doc, b"5")])
    assert await store.snapshot_before(doc, 1) is None
    found = [await store.snapshot_before(doc, seq) for seq in (2, 3, 4, 5)]
    assert [(s.seq, s.state) if s else None for s in found] == [
        (2, b"S2"),
        (2, b"S2"),
        (4, b"S4"),
        (4, b"S4"),
    ]


async def test_replace_range_merges_entries(store: Store, prefix: str) -> None:
    doc = f"{prefix}-m"
    await store.append([entry(doc, bytes([i]), at=float(i)) for i in range(1, 6)])
    merged = LogEntry(seq=4, update=b"merged", at=4.0, client="c,d", user="ann,bob")
    await store.replace_range(doc, 2, 4, merged)
    assert [(e.seq, e.update) for e in await store.entries(doc)] == [
        (1, b"\x01"),
        (4, b"merged"),
        (5, b"\x05"),
    ]
    assert (await store.entries(doc, after=1, upto=4))[0] == merged
    with pytest.raises(StoreError):
        await store.replace_range(doc, 1, 3, merged)  # merged.seq != last
    with pytest.raises(StoreError):
        await store.replace_range(f"{prefix}-nope", 1, 4, merged)


async def test_delete_removes_log_snapshots_and_name(store: Store, prefix: str) -> None:
    doc = f"{prefix}-d"
    await store.append([entry(doc, b"1"), entry(doc, b"2")], snapshots={doc: b"S"})
    assert await store.delete(doc) is True
    assert await store.load(doc) == Loaded(snapshot=None, entries=[])
    assert await store.document(doc) is None
    assert await store.snapshot_before(doc, 2) is None
    assert await store.append([entry(doc, b"again")]) == [1]  # a new document starts over


async def test_a_deletion_with_a_state_vector_leaves_a_tombstone(store: Store, prefix: str) -> None:
    doc, other = f"{prefix}-t", f"{prefix}-u"
    start = max([t.id for t in await store.tombstones()], default=0)
    await store.append([entry(doc, b"1"), entry(other, b"2")])
    assert await store.delete(doc, state_vector=b"\x01\x07\x03") is True
    assert await store.delete(other) is True  # no state vector: forgotten entirely
    assert await store.delete(doc, state_vector=b"\x00") is False  # nothing to delete
    found = [t for t in await store.tombstones(start) if t.doc.startswith(prefix)]
    assert [(t.doc, t.state_vector) for t in found] == [(doc, b"\x01\x07\x03")]
    assert await store.tombstones(found[0].id) == [
        t for t in await store.tombstones(found[0].id) if t.id > found[0].id
    ]
    assert not [t for t in await store.tombstones(found[0].id) if t.doc.startswith(prefix)]
    # The name's next incarnation loads empty, knowing what the deleted one held.
    await store.append([entry(doc, b"new")])
    await store.delete(doc, state_vector=b"\x01\x09\x01")
    await store.append([entry(doc, b"newer")])
    loaded = await store.load(doc)
    assert [e.update for e in loaded.entries] == [b"newer"]
    assert [t.state_vector for t in loaded.tombstones] == [b"\x01\x07\x03", b"\x01\x09\x01"]
    assert loaded.incarnation == loaded.tombstones[-1].id > found[0].id
    assert (await store.load(other)).tombstones == ()


async def test_a_writer_that_loaded_a_deleted_document_writes_nothing_of_it(
    store: Store, prefix: str
) -> None:
    doc, live = f"{prefix}-gone", f"{prefix}-live"
    await store.append([entry(doc, b"1"), entry(live, b"x")])
    loaded = await store.load(doc)  # this writer's incarnation of doc
    seen = {doc: loaded.incarnation, live: (await store.load(live)).incarnation}
    assert await store.delete(doc, state_vector=b"\x01\x07\x01") is True  # by someone else
    seqs = await store.append(
        [entry(doc, b"2"), entry(live, b"y"), entry(doc, b"3")],
        snapshots={doc: b"S", live: b"L"},
        incarnations=seen,
    )
    assert seqs == [0, 2, 0]
    assert await store.document(doc) is None  # not created again, not even by the snapshot
    assert await store.entries(doc) == []
    assert [e.update for e in await store.entries(live)] == [b"x", b"y"]
    assert (await store.load(live)).snapshot is not None
    # Without the fence (a writer that knows no incarnation) it is a new document.
    assert await store.append([entry(doc, b"new")]) == [1]


async def test_a_writer_that_loaded_a_deleted_document_leaves_its_successor_alone(
    store: Store, prefix: str
) -> None:
    doc = f"{prefix}-again"
    await store.append([entry(doc, b"old")])
    stale = {doc: (await store.load(doc)).incarnation}
    assert await store.delete(doc, state_vector=b"\x01\x07\x01") is True
    fresh = {doc: (await store.load(doc)).incarnation}
    assert await store.append([entry(doc, b"new")], incarnations=fresh) == [1]
    assert await store.append([entry(doc, b"stale")], {doc: b"S"}, incarnations=stale) == [0]
    info = await store.document(doc)
    assert info is not None and info.last_seq == 1
    loaded = await store.load(doc)
    assert loaded.snapshot is None
    assert [e.update for e in loaded.entries] == [b"new"]
    assert await store.append([entry(doc, b"more")], incarnations=fresh) == [2]


async def test_unicode_names_and_binary_data_round_trip(store: Store, prefix: str) -> None:
    doc = f"{prefix}-é漢字🙂"
    data = bytes(range(256)) * 4
    await store.append([entry(doc, data, client="клиент 🚀", user="ユーザー e\u0301")])
    (got,) = await store.entries(doc)
    assert (got.update, got.client, got.user) == (data, "клиент 🚀", "ユーザー e\u0301")


async def test_a_closed_store_raises_store_error(tmp_path: Path) -> None:
    for store in (MemoryStore(), SqliteStore(f"sqlite:///{tmp_path / 'x.db'}")):
        with pytest.raises(StoreError):
            await store.load("x")
        await store.open()
        await store.close()
        with pytest.raises(StoreError):
            await store.append([entry("x", b"1")])


async def test_sql_data_survives_reopening(sql_store: DurableStore, prefix: str) -> None:
    doc = f"{prefix}-p"
    await sql_store.append([entry(doc, b"1"), entry(doc, b"2")], snapshots={doc: b"S"})
    again = store_from_url(sql_store.url)
    await again.open()
    try:
        loaded = await again.load(doc)
        assert loaded.snapshot is not None and loaded.snapshot.seq == 2
        assert await again.append([entry(doc, b"3")]) == [3]
    finally:
        await again.close()


async def test_two_stores_on_one_database_never_share_a_seq(
    sql_store: DurableStore, prefix: str
) -> None:
    """Two engines stand for two processes: the counter row serialises them."""
    doc = f"{prefix}-race"
    other = store_from_url(sql_store.url)
    await other.open()
    try:

        async def write(store: Store, tag: bytes) -> list[int]:
            seqs: list[int] = []
            for i in range(15):
                seqs += await store.append([entry(doc, tag + bytes([i]) * 2)] * 3)
            return seqs

        mine, theirs = await asyncio.gather(write(sql_store, b"a"), write(other, b"b"))
    finally:
        await other.close()
    assert sorted(mine + theirs) == list(range(1, 91))
    logged = await sql_store.entries(doc)
    assert [e.seq for e in logged] == list(range(1, 91))


async def test_sqlite_is_in_wal_mode(tmp_path: Path) -> None:
    """(Schema versions and migrations: tests/test_migrations.py.)"""
    path = tmp_path / "v.db"
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    await store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_the_sqlite_writer_keeps_a_small_page_cache_and_reads_the_default(
    tmp_path: Path,
) -> None:
    # The writer only appends: a 2 MiB cache would fill as the log grows, for nothing.
    store = SqliteStore(f"sqlite:///{tmp_path / 'cache.db'}")
    await store.open()
    try:
        await store.append([entry("d", b"\x00\x00")])
        assert await store.entries("d")
        assert store._write_conn is not None and store._read_conn is not None
        assert store._write_conn.execute("PRAGMA cache_size").fetchone() == (-WRITER_CACHE_KIB,)
        assert store._read_conn.execute("PRAGMA cache_size").fetchone() == (-2000,)
    finally:
        await store.close()


async def test_a_failed_sqlite_append_writes_nothing_and_the_next_one_works(
    tmp_path: Path,
) -> None:
    """The SQLite store's append (plain sqlite3, collab.store.sqlite_append) rolls back whole."""
    path = tmp_path / "f.db"
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    try:
        assert await store.append([entry("a", b"1"), entry("b", b"1")]) == [1, 1]
        # Another writer left a row where b's next entry goes: that insert must fail.
        with sqlite3.connect(path) as raw:
            raw.execute(
                "INSERT INTO updates (doc_id, seq, at, client, data) "
                "SELECT id, 2, 0, 'x', x'00' FROM documents WHERE name = 'b'"
            )
        with pytest.raises(StoreError):
            await store.append([entry("a", b"2"), entry("b", b"2")], snapshots={"a": b"S"})
        # Nothing of the failed batch stayed: not a's entry, its snapshot, nor the counters.
        assert [e.update for e in await store.entries("a")] == [b"1"]
        assert (await store.load("a")).snapshot is None
        with sqlite3.connect(path) as raw:
            raw.execute("DELETE FROM updates WHERE client = 'x'")
        assert await store.append([entry("b", b"2"), entry("a", b"2")]) == [2, 2]
        assert [e.update for e in await store.entries("b")] == [b"1", b"2"]
    finally:
        await store.close()


async def test_database_failures_become_store_errors(tmp_path: Path) -> None:
    unreachable = SqlStore("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(StoreError) as caught:
        await unreachable.open()
    assert caught.value.__cause__ is not None
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as caught:
        await SqliteStore(f"sqlite:///{garbage}").open()
    assert isinstance(caught.value.__cause__, Exception)


def test_urls_pick_asyncio_drivers() -> None:
    assert str(engine_url("sqlite:///a.db")) == "sqlite+aiosqlite:///a.db"
    assert engine_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert engine_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert engine_url("postgresql+asyncpg://u@h/db").drivername == "postgresql+asyncpg"
    for bad in ("mysql://u@h/db", "postgresql+psycopg2://u@h/db", "nonsense"):
        with pytest.raises(StoreError):
            engine_url(bad)
    assert isinstance(store_from_url("memory://"), MemoryStore)
    assert isinstance(store_from_url("sqlite:///x.db"), SqliteStore)
    for bad in ("sqlite://", "sqlite:///:memory:", "sqlite:///x.db?mode=ro"):
        with pytest.raises(StoreError):
            store_from_url(bad)
    with pytest.raises(StoreError):
        SqlStore("sqlite:///x.db")  # SQLite is SqliteStore's
    require_postgres()
    assert isinstance(store_from_url(PG_URL), SqlStore)


_example = itertools.count()

_operation = st.one_of(
    st.tuples(
        st.just("append"),
        st.lists(st.tuples(st.integers(0, 2), st.binary(min_size=1, max_size=8)), max_size=6),
        st.sets(st.integers(0, 2), max_size=2),
    ),
    st.tuples(
        st.just("replace"), st.integers(0, 2), st.tuples(st.integers(1, 9), st.integers(0, 3))
    ),
    st.tuples(st.just("delete"), st.integers(0, 2), st.just(None)),
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=st.lists(_operation, min_size=1, max_size=12))
async def test_sql_store_behaves_like_the_memory_store(
    sql_store: DurableStore, prefix: str, operations: list[tuple[str, Any, Any]]
) -> None:
    """Random batches, snapshots, merges and deletes: every read agrees with the reference."""
    model = MemoryStore()
    await model.open()
    names = [f"{prefix}-{next(_example)}-{i}" for i in range(3)]
    for kind, first, second in operations:
        if kind == "append":
            entries = [entry(names[d], data, at=float(i)) for i, (d, data) in enumerate(first)]
            snapshots = {names[d]: b"state of " + names[d].encode() for d in second}
            assert await sql_store.append(entries, snapshots) == await model.append(
                entries, snapshots
            )
        elif kind == "replace":
            start, length = second
            merged = LogEntry(seq=start + length, update=b"merged", at=0.0, client="a,b")
            outcomes = []
            for store in (sql_store, model):
                try:
                    await store.replace_range(names[first], start, start + length, merged)
                    outcomes.append("ok")
                except StoreError:
                    outcomes.append("refused")
            assert outcomes[0] == outcomes[1]
        else:
            assert await sql_store.delete(names[first]) == await model.delete(names[first])
        for name in names:
            got, want = await sql_store.load(name), await model.load(name)
            assert got.entries == want.entries
            assert (got.snapshot and (got.snapshot.seq, got.snapshot.state)) == (
                want.snapshot and (want.snapshot.seq, want.snapshot.state)
            )
            assert await sql_store.entries(name, 1, 4) == await model.entries(name, 1, 4)
            info, reference = await sql_store.document(name), await model.document(name)
            assert (info and info.last_seq) == (reference and reference.last_seq)
    for name in names:
        await sql_store.delete(name)
