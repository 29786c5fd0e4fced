"""The journal: group commit, durability callbacks, failures, and snapshots that match the log."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab.config import Config
from collab.core.journal import Journal, JournalClosed
from collab.errors import StoreError
from collab.store import NewEntry, Store, store_from_url
from collab.store.memory import MemoryStore
from collab.store.sql import SqlStore
from collab.store.sqlite import SqliteStore
from tests.store_fixtures import (  # noqa: F401
    PG_DATABASE,
    PG_HOST,
    PG_PORT,
    PG_URL,
    DurableStore,
    prefix_fixture,
    refuse_inserts,
    require_postgres,
    sql_store_fixture,
    store_fixture,
)

ROOT = Path(__file__).resolve().parents[1]
WAIT = 10.0  # seconds: generous bound for anything we wait on; never a sleep


class CountingStore:
    """A real store, wrapped to count transactions and, optionally, hold each one at a gate."""

    def __init__(self, inner: Store, gated: bool = False) -> None:
        self.inner = inner
        self.batches: list[int] = []  # entries per successful append
        self.gated = gated
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def append(
        self,
        entries: Sequence[NewEntry],
        snapshots: Mapping[str, bytes] | None = None,
        incarnations: Mapping[str, int] | None = None,
    ) -> list[int]:
        if self.gated:
            self.waiting.set()
            await self.gate.wait()
            self.gate.clear()  # one transaction per opening
            self.waiting.clear()
        seqs = await self.inner.append(entries, snapshots, incarnations)
        self.batches.append(len(entries))
        return seqs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Editor:
    """A pycrdt Doc with a Text; each edit returns the Yjs update it produced."""

    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.text = self.doc.get("text", type=Text)
        self._updates: list[bytes] = []
        self.doc.observe(lambda event: self._updates.append(event.update))

    def __len__(self) -> int:
        return len(str(self.text))

    def _offset(self, index: int) -> int:
        # pycrdt indexes Text by UTF-8 bytes; cutting inside a character panics in Yrs.
        return len(str(self.text)[:index].encode())

    def insert(self, index: int, chars: str) -> bytes:
        """Insert at character ``index``."""
        self.text.insert(self._offset(index), chars)
        return self._updates[-1]

    def delete(self, start: int, end: int) -> bytes:
        """Delete characters ``start:end``."""
        del self.text[self._offset(start) : self._offset(end)]
        return self._updates[-1]


def rebuild(state: bytes | None, updates: Sequence[bytes]) -> str:
    doc: Doc[Any] = Doc()
    text = doc.get("text", type=Text)
    if state is not None:
        doc.apply_update(state)
    for update in updates:
        doc.apply_update(update)
    return str(text)


async def loaded_text(store: Store, doc: str) -> str:
    loaded = await store.load(doc)
    state = loaded.snapshot.state if loaded.snapshot else None
    return rebuild(state, [e.update for e in loaded.entries])


async def within(awaitable: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(awaitable, WAIT)


async def test_many_appends_become_one_transaction(store: Store, prefix: str) -> None:
    counting = CountingStore(store)
    editor, name = Editor(), f"{prefix}-g"
    async with Journal(counting, Config()) as journal:
        log = journal.open(name, editor.doc.get_update, 0)
        updates = [editor.insert(i, "x") for i in range(500)]
        for update in updates:
            log.append(update, "c1")
        assert log.pending == 500
        await within(log.flush())
        assert log.pending == 0
        assert counting.batches == [500]
    assert counting.batches == [500, 0]  # leaving adds the final snapshot, alone
    logged = await store.entries(name)
    assert [e.seq for e in logged] == list(range(1, 501))
    assert [e.update for e in logged] == updates


async def test_concurrent_editors_share_transactions(store: Store, prefix: str) -> None:
    counting = CountingStore(store)
    name = f"{prefix}-c"
    editor = Editor()
    # A long window: only reaching commit_max_updates (or a flush) starts a commit.
    config = Config(commit_interval=60.0, commit_max_updates=50)
    async with Journal(counting, config) as journal:
        log = journal.open(name, editor.doc.get_update, 0)

        async def type_(client: str) -> None:
            for _ in range(50):
                log.append(editor.insert(0, client[-1]), client)
                await asyncio.sleep(0)  # let the other editors type

        await within(asyncio.gather(*(type_(f"client{i}") for i in range(10))))
        await within(log.flush())
    batches = [size for size in counting.batches if size]  # without the final snapshot's
    assert sum(batches) == 500
    assert len(batches) <= 10
    assert all(size >= 50 for size in batches[:-1]), counting.batches  # the last: the flush
    assert await loaded_text(store, name) == str(editor.text)


async def test_on_durable_fires_only_once_the_rows_are_in_the_database(
    sql_store: DurableStore, prefix: str
) -> None:
    gated = CountingStore(sql_store, gated=True)
    reader = store_from_url(sql_store.url)  # another connection
    await reader.open()
    editor, name = Editor(), f"{prefix}-d"
    seen_in_callback: list[int] = []
    fired: list[int] = []
    all_fired = asyncio.Event()

    def durable(i: int) -> None:
        fired.append(i)
        if isinstance(sql_store, SqliteStore):  # look at the file itself, right now
            with sqlite3.connect(sql_store.path) as raw:
                (count,) = raw.execute("SELECT count(*) FROM updates").fetchone()
            seen_in_callback.append(count)
        if len(fired) == 3:
            all_fired.set()

    try:
        async with Journal(gated, Config()) as journal:
            log = journal.open(name, editor.doc.get_update, 0)
            for i in range(3):
                log.append(
                    editor.insert(i, "abc"[i]), "c1", on_durable=functools.partial(durable, i)
                )
            await within(gated.waiting.wait())  # the commit is about to start, and held
            assert fired == []
            assert await reader.entries(name) == []
            gated.gate.set()
            await within(all_fired.wait())
            assert fired == [0, 1, 2]
            # The next commit is held at the gate: what we read now is what the callbacks saw.
            assert [e.seq for e in await reader.entries(name)] == [1, 2, 3]
            if sql_store.dialect == "sqlite":
                assert seen_in_callback == [3, 3, 3]
            gated.gated = False
            gated.gate.set()
    finally:
        await reader.close()


async def test_a_failing_database_fires_nothing_and_commits_each_entry_once_it_recovers(
    sql_store: DurableStore, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    editor, name = Editor(), f"{prefix}-f"
    sent: list[bytes] = []
    fired: list[int] = []
    all_fired = asyncio.Event()

    def durable(i: int) -> None:
        fired.append(i)
        if len(fired) == 8:
            all_fired.set()

    def append(log: Any, i: int) -> None:
        sent.append(editor.insert(i, chr(ord("a") + i)))
        log.append(sent[-1], "c1", on_durable=lambda: durable(i))

    config = Config(commit_retry_max_delay=0.1, snapshot_every_updates=3)
    async with Journal(sql_store, config) as journal:
        log = journal.open(name, editor.doc.get_update, 0)
        append(log, 0)
        await within(log.flush())
        undo = await refuse_inserts(sql_store, name)
        try:
            with caplog.at_level(logging.ERROR, logger="collab.journal"):
                for i in range(1, 6):
                    append(log, i)
                with pytest.raises(StoreError):
                    await within(log.flush())
                assert journal.failing
                for i in range(6, 8):  # editors keep typing while the database is down
                    append(log, i)
                with pytest.raises(StoreError):
                    await within(log.flush())
            assert fired == [0]
            assert log.pending == 7
            errors = [r for r in caplog.records if r.name == "collab.journal"]
            assert errors and all(r.levelno == logging.ERROR for r in errors)
            assert [e.seq for e in await sql_store.entries(name)] == [1]
        finally:
            await undo()
        await within(all_fired.wait())
        assert fired == list(range(8))
        assert not journal.failing
        await within(log.close())
    logged = await sql_store.entries(name)
    assert [e.seq for e in logged] == list(range(1, 9))
    assert [e.update for e in logged] == sent  # each exactly once, in order
    assert await loaded_text(sql_store, name) == str(editor.text) == "abcdefgh"


async def test_a_store_that_went_away_gets_everything_when_it_returns(prefix: str) -> None:
    store = MemoryStore()
    await store.open()
    editor, name = Editor(), f"{prefix}-m"
    durable = asyncio.Event()
    async with Journal(store, Config(commit_retry_max_delay=0.05)) as journal:
        log = journal.open(name, editor.doc.get_update, 0)
        await store.close()
        log.append(editor.insert(0, "hi"), "c1", on_durable=durable.set)
        with pytest.raises(StoreError):
            await within(log.flush())
        assert not durable.is_set()
        await store.open()
        await within(durable.wait())
        await within(log.flush())
    assert await loaded_text(store, name) == "hi"


async def test_leaving_the_journal_commits_and_snapshots_every_changed_document(
    store: Store, prefix: str
) -> None:
    a, b, idle = Editor(), Editor(), Editor()
    async with Journal(store, Config(commit_interval=60.0)) as journal:
        log_a = journal.open(f"{prefix}-a", a.doc.get_update, 0)
        log_b = journal.open(f"{prefix}-b", b.doc.get_update, 0)
        journal.open(f"{prefix}-idle", idle.doc.get_update, 0)
        for i in range(5):
            log_a.append(a.insert(i, "a"), "c1")
            log_b.append(b.insert(0, "b"), "c2")
    for name, editor in ((f"{prefix}-a", a), (f"{prefix}-b", b)):
        loaded = await store.load(name)
        assert loaded.snapshot is not None and loaded.snapshot.seq == 5
        assert loaded.entries == []
        assert rebuild(loaded.snapshot.state, []) == str(editor.text)
    assert await store.document(f"{prefix}-idle") is None


async def test_close_snapshots_only_when_something_changed(store: Store, prefix: str) -> None:
    counting = CountingStore(store)
    editor, name = Editor(), f"{prefix}-x"
    async with Journal(counting, Config()) as journal:
        log = journal.open(name, editor.doc.get_update, 0)
        log.append(editor.insert(0, "hello"), "c1")
        await within(log.close())
        with pytest.raises(JournalClosed):
            log.append(editor.insert(0, "late"), "c1")
        snapshot = (await store.load(name)).snapshot
        assert snapshot is not None and snapshot.seq == 1
        again = journal.open(name, editor.doc.get_update, 1)  # reopen: nothing changed
        await within(again.close())
        assert len(counting.batches) <= 2
        assert again.last_seq == 1


async def test_time_based_snapshots_ride_along_with_each_commit(store: Store, prefix: str) -> None:
    editor, name = Editor(), f"{prefix}-t"
    async with Journal(store, Config(snapshot_every_seconds=0.0)) as journal:
        log = journal.open(name, editor.doc.get_update, 0)
        for i in range(3):
            log.append(editor.insert(i, "z"), "c1")
            await within(log.flush())
            snapshot = await store.snapshot_before(name, i + 1)
            assert snapshot is not None and snapshot.seq == i + 1
            assert rebuild(snapshot.state, []) == "z" * (i + 1)


async def test_a_failing_callback_does_not_stop_the_journal(
    store: Store, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    editor, name = Editor(), f"{prefix}-cb"
    later = asyncio.Event()

    def broken() -> None:
        raise ValueError("a bug in the caller")

    async with Journal(store, Config()) as journal:
        log = journal.open(name, editor.doc.get_update, 0)
        log.append(editor.insert(0, "a"), "c1", on_durable=broken)
        log.append(editor.insert(1, "b"), "c1", on_durable=later.set)
        await within(later.wait())
    assert any("on_durable" in r.getMessage() for r in caplog.records)


async def test_unicode_survives_the_round_trip(store: Store, prefix: str) -> None:
    editor, name = Editor(), f"{prefix}-u"
    pieces = ["Grüße ", "🙂👩‍👩‍👧", " 漢字かな ", "e\u0301a\u0308 ", "𝔘𝔫𝔦", "\u200d🏳️‍🌈"]  # noqa: RUF001
    async with Journal(store, Config(snapshot_every_updates=4)) as journal:
        log = journal.open(name, editor.doc.get_update, 0)
        for piece in pieces:
            log.append(editor.insert(len(editor), piece), "クライアント")
        await within(log.flush())
        log.append(editor.insert(0, "😀"), "c")
    assert await loaded_text(store, name) == str(editor.text) == "😀" + "".join(pieces)


_counter = itertools.count()

operations = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.floats(0, 1), st.text(min_size=1, max_size=4)),
        st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 3)),
        st.tuples(st.just("flush"), st.just(0.0), st.just(0)),
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations, every=st.integers(1, 8), close_log=st.booleans())
async def test_snapshots_and_log_always_agree(
    store: Store, prefix: str, ops: list[tuple[str, float, Any]], every: int, close_log: bool
) -> None:
    editor, name = Editor(), f"{prefix}-h{next(_counter)}"
    texts = [""]  # texts[seq]: the live text once entry ``seq`` was applied
    config = Config(snapshot_every_updates=every, commit_interval=0.001)
    async with Journal(store, config) as journal:
        log = journal.open(name, editor.doc.get_update, 0)
        for kind, where, arg in ops:
            length = len(editor)
            if kind == "flush":
                await within(log.flush())
                continue
            if kind == "insert":
                update = editor.insert(int(where * length), arg)
            elif length == 0:
                continue
            else:
                start = min(int(where * length), length - 1)
                update = editor.delete(start, min(length, start + arg))
            log.append(update, "c1")
            texts.append(str(editor.text))
        if close_log:
            await within(log.close())
    last = len(texts) - 1
    assert await loaded_text(store, name) == str(editor.text)
    logged = await store.entries(name)
    assert [e.seq for e in logged] == list(range(1, last + 1))
    seen = set()
    for seq in range(1, last + 1):
        snapshot = await store.snapshot_before(name, seq)
        if snapshot is None or snapshot.seq in seen:
            continue
        seen.add(snapshot.seq)
        # A snapshot is exactly the log up to its seq: same text as the replay, and as the live doc.
        replayed = rebuild(None, [e.update for e in logged[: snapshot.seq]])
        assert rebuild(snapshot.state, []) == replayed == texts[snapshot.seq]
    if last:  # leaving the journal (or closing the log) always ends on a full snapshot
        final = await store.snapshot_before(name, last)
        assert final is not None and final.seq == last
    await store.delete(name)


CRASH = """
import asyncio, os, signal, sys
from pycrdt import Doc, Text
from collab.config import Config
from collab.core.journal import Journal
from collab.store import store_from_url

async def main(url, name):
    store = store_from_url(url)
    await store.open()
    doc: Doc[Any] = Doc()
    text = doc.get("text", type=Text)
    updates = []
    doc.observe(lambda event: updates.append(event.update))
    async with Journal(store, Config()) as journal:
        log = journal.open(name, doc.get_update, 0)
        for i in range(200):
            text.insert(i, "x")
            log.append(updates[-1], "c1", on_durable=lambda i=i: print(i, flush=True))
            if i == 149:
                await log.flush()
        # 150..199 are accepted, not durable: the committer has not run since. Die now.
        os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_what_was_durable_survives_a_killed_process(
    sql_store: DurableStore, prefix: str
) -> None:
    name = f"{prefix}-kill"
    url = sql_store.url
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASH,
        url,
        name,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    stdout, _ = await within(child.communicate())
    assert child.returncode == -signal.SIGKILL
    reported = [int(line) for line in stdout.split()]
    assert reported == list(range(150))  # on_durable fired for exactly the flushed ones
    logged = await sql_store.entries(name)
    assert [e.seq for e in logged] == list(range(1, 151))  # durable: all there; the rest: not
    assert await loaded_text(sql_store, name) == "x" * 150


class Proxy:
    """A TCP proxy to PostgreSQL that the test can cut and restore: a database that goes away."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(PG_HOST, PG_PORT)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.mark.postgres
async def test_postgres_going_away_and_coming_back(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    require_postgres()
    proxy = Proxy()
    await proxy.start()
    store = SqlStore(f"postgresql://postgres@127.0.0.1:{proxy.port}/{PG_DATABASE}")
    await store.open()
    editor, name = Editor(), f"{prefix}-away"
    fired: list[int] = []
    all_fired = asyncio.Event()

    def durable(i: int) -> None:
        fired.append(i)
        if len(fired) == 6:
            all_fired.set()

    try:
        async with Journal(store, Config(commit_retry_max_delay=0.1)) as journal:
            log = journal.open(name, editor.doc.get_update, 0)
            log.append(editor.insert(0, "a"), "c1", on_durable=lambda: durable(0))
            await within(log.flush())
            await proxy.stop()
            with caplog.at_level(logging.ERROR, logger="collab.journal"):
                for i in range(1, 6):
                    log.append(
                        editor.insert(i, "bcdef"[i - 1]),
                        "c1",
                        on_durable=functools.partial(durable, i),
                    )
                with pytest.raises(StoreError):
                    await within(log.flush())
            assert fired == [0]
            assert any(r.levelno == logging.ERROR for r in caplog.records)
            await proxy.start()  # same port: the database is back
            await within(all_fired.wait())
            assert fired == list(range(6))
            await within(log.flush())
        logged = await store.entries(name)
        assert [e.seq for e in logged] == list(range(1, 7))
        assert await loaded_text(store, name) == "abcdef"
    finally:
        try:
            await store.delete(name)
        finally:
            await store.close()
            await proxy.stop()


async def test_a_long_unsnapshotted_log_gets_a_snapshot_when_closed(
    store: Store, prefix: str
) -> None:
    editor, name = Editor(), f"{prefix}-long"
    await store.append([NewEntry(name, editor.insert(i, "q"), 1.0, "c1") for i in range(30)])
    loaded = await store.load(name)
    assert loaded.snapshot is None
    async with Journal(store, Config(snapshot_every_updates=10)) as journal:
        log = journal.open(name, editor.doc.get_update, loaded.last_seq, len(loaded.entries))
        await within(log.close())  # nothing appended, but the log it was loaded from is long
    snapshot = (await store.load(name)).snapshot
    assert snapshot is not None and snapshot.seq == 30
    assert rebuild(snapshot.state, []) == "q" * 30


async def test_a_document_reopened_after_a_failed_close_keeps_every_entry(prefix: str) -> None:
    store = MemoryStore()
    await store.open()
    name = f"{prefix}-re"
    first, second = Editor(), Editor()
    async with Journal(store, Config(commit_retry_max_delay=0.05, snapshot_every_updates=1)) as j:
        log = j.open(name, first.doc.get_update, 0)
        await store.close()  # the database goes away
        log.append(first.insert(0, "lost?"), "c1")
        with pytest.raises(StoreError):
            await within(log.close())
        with pytest.raises(JournalClosed):
            log.append(first.insert(0, "x"), "c1")
        # The room is gone; an editor comes back and the document is loaded again (empty).
        again = j.open(name, second.doc.get_update, 0)
        with pytest.raises(ValueError):
            j.open(name, second.doc.get_update, 0)
        durable = asyncio.Event()
        again.append(second.insert(0, "new "), "c2", on_durable=durable.set)
        await store.open()
        await within(durable.wait())
        await within(again.close())
    loaded = await store.load(name)
    assert loaded.snapshot is None  # the second Doc never saw "lost?": no snapshot from it
    assert [e.seq for e in loaded.entries] == [1, 2]
    assert sorted(await loaded_text(store, name)) == sorted("lost?new ")


class Told:
    """A DocumentObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.committed_docs: list[tuple[str, int]] = []

    def committed(self, entries: Sequence[Any]) -> None:
        self.committed_docs.extend((e.doc, e.seq) for e in entries)

    def deleted(self, doc: str) -> None:
        pass


async def test_a_log_of_a_document_deleted_elsewhere_ends_unacknowledged(
    store: Store, prefix: str
) -> None:
    gone, live = f"{prefix}-gone", f"{prefix}-live"
    await store.append([NewEntry(gone, b"\x00\x00", 1.0, "c")])
    told = Told()
    acked: list[str] = []
    config = Config(db_url="memory://", commit_interval=0.001)
    async with Journal(store, config, observer=told) as journal:
        incarnation = (await store.load(gone)).incarnation
        old = journal.open(gone, lambda: b"\x00\x00", 1, incarnation=incarnation)
        new = journal.open(live, lambda: b"\x00\x00", 0)
        assert await store.delete(gone, state_vector=b"\x01\x07\x01")  # by someone else
        old.append(b"\x00\x00", "c", on_durable=lambda: acked.append(gone))
        new.append(b"\x00\x00", "c", on_durable=lambda: acked.append(live))
        await asyncio.wait_for(asyncio.gather(old.flush(), new.flush()), WAIT)
        assert acked == [live]
        assert told.committed_docs == [(live, 1)]
        assert old.ended and not new.ended
        assert old.pending == 0  # settled: a flush does not wait for it forever
        await asyncio.wait_for(old.close(), WAIT)  # and no final snapshot brings it back
    assert await store.document(gone) is None
