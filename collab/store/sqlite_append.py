"""The SQLite store's hot path (:meth:`~collab.store.sqlite.SqliteStore.append`) and its thread.

Every accepted update goes through one group commit, so what a commit costs
beyond SQLite's own work is paid on every batch. Through SQLAlchemy Core a
commit of 10 entries over 10 documents took ~3 ms of CPU (pool checkout, event
dispatch, statement cache lookups, result wrapping, the reset-on-return on
checkin); the same statements on a plain ``sqlite3`` connection take ~0.7 ms,
of which the fsync is ~0.3 ms (measured in one sitting on the benchmark machine,
docs/performance.md). The fan-out benchmark's durable runs commit 10-20 times a
second, so this is most of what durability costs the server.

:func:`append_in_transaction` runs the *same* transaction as ``collab.store.sql._append``
(which PostgreSQL uses): for each document, in name order, the counter row is
bumped with ``UPDATE ... RETURNING`` first (on SQLite that takes the write lock at
once, so concurrent writers serialise and never share a seq), a document seen for
the first time is inserted, then the entries go in with one ``executemany`` and the
snapshots are upserted, inside the caller's ``BEGIN IMMEDIATE`` ... ``COMMIT``
(:class:`~collab.store.sqlite.SqliteStore`). The tables are the ones
``collab.store.sql`` declares; the test suite runs the store contract
(tests/test_store.py) against both. A change to ``sql._append`` must be made here too.
Errors are ``sqlite3.Error``, which the store turns into ``StoreError``.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from collab.store import NewEntry
from collab.store.replay import with_entries_since_snapshot

__all__ = ["WriterThread", "append_in_transaction"]

T = TypeVar("T")

_BUMP = (
    "UPDATE documents SET last_seq = last_seq + ?,"
    " updated_at = CASE WHEN updated_at < ? THEN ? ELSE updated_at END"
    " WHERE name = ? RETURNING id, last_seq"
)
_NEW_DOCUMENT = (
    "INSERT INTO documents (name, created_at, updated_at, last_seq) VALUES (?, ?, ?, 0)"
    " ON CONFLICT (name) DO NOTHING"
)
_INSERT = 'INSERT INTO updates (doc_id, seq, at, client, "user", data) VALUES (?, ?, ?, ?, ?, ?)'
_PREVIOUS_SNAPSHOT = "SELECT max(seq) FROM snapshots WHERE doc_id = ?"
_ENTRIES_SINCE = "SELECT data FROM updates WHERE doc_id = ? AND seq > ? AND seq <= ? ORDER BY seq"
_NEWEST_TOMBSTONE = "SELECT name, max(id) FROM tombstones WHERE name IN ({}) GROUP BY name"
_UNBUMP = "UPDATE documents SET last_seq = last_seq - ? WHERE id = ?"
#: Names per tombstone query: under SQLite's smallest limit on bound variables (999).
_NAMES_PER_QUERY = 500
_SNAPSHOT = (
    "INSERT INTO snapshots (doc_id, seq, at, state) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (doc_id, seq) DO UPDATE SET state = excluded.state, at = excluded.at"
)


class WriterThread:
    """One thread that runs blocking calls in order, each awaited by an asyncio task.

    What ``loop.run_in_executor`` on a one-thread ``ThreadPoolExecutor`` does, for a
    fraction of its CPU: a commit is one hop there and one back, and the executor's
    futures, locks and callbacks cost ~150 us of CPU per hop on the benchmark machine
    (313 against 160 us per hop, a 2 ms blocking call, 1,500 hops; docs/performance.md).
    Here a hop is a queue put, a future and ``call_soon_threadsafe``.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the thread, after everything queued before it; its result or error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return await future

    def shutdown(self) -> None:
        """Let the calls queued so far finish, then stop the thread (blocking)."""
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            loop, future, fn, args = item
            try:
                result = fn(*args)
            except Exception as exc:
                self._settle(loop, future, None, exc)
            else:
                self._settle(loop, future, result, None)

    @staticmethod
    def _settle(
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        result: object,
        error: Exception | None,
    ) -> None:
        def settle() -> None:
            if future.done():  # the awaiting task was cancelled
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is closed: nobody awaits any more
            pass


def append_in_transaction(
    conn: sqlite3.Connection,
    entries: Sequence[NewEntry],
    snapshots: Mapping[str, bytes],
    several_writers: bool,
    incarnations: Mapping[str, int] | None = None,
) -> list[int]:
    """The body of :meth:`collab.store.Store.append` on ``conn``, inside a transaction
    that the caller began with ``BEGIN IMMEDIATE`` and commits (or rolls back when this
    raises ``sqlite3.Error``); the seqs given to ``entries``, in order (0: not written,
    its document was deleted after ``incarnations`` says the writer loaded it)."""
    counts: dict[str, int] = {}
    first_at: dict[str, float] = {}
    last_at: dict[str, float] = {}
    for entry in entries:
        doc, at = entry.doc, entry.at
        if doc in counts:
            counts[doc] += 1
            if at < first_at[doc]:
                first_at[doc] = at
            if at > last_at[doc]:
                last_at[doc] = at
        else:
            counts[doc], first_at[doc], last_at[doc] = 1, at, at
    now = time.time()
    ids: dict[str, int] = {}
    next_seq: dict[str, int] = {}
    ended: set[str] = set()
    for name in sorted(counts.keys() | snapshots.keys()):  # fixed order, as in sql._append
        count = counts.get(name, 0)
        newest = last_at.get(name, 0.0)
        bump = (count, newest, newest, name)
        row = conn.execute(_BUMP, bump).fetchone()
        if row is None:
            if incarnations is not None and _ended(conn, [name], incarnations):
                ended.add(name)  # deleted since it was loaded: not created again
                continue
            conn.execute(_NEW_DOCUMENT, (name, first_at.get(name, now), last_at.get(name, now)))
            row = conn.execute(_BUMP, bump).fetchone()
            if row is None:  # pragma: no cover - the row was just inserted under our lock
                raise sqlite3.IntegrityError(f"document {name!r} vanished during an append")
        ids[name] = row[0]
        next_seq[name] = row[1] - count + 1
    if incarnations is not None and ids:
        # Deleted and created again (by another writer) since this writer loaded it: the
        # row is a new incarnation's; give it back the seqs the bump took.
        for name in _ended(conn, list(ids), incarnations):
            ended.add(name)
            conn.execute(_UNBUMP, (counts.get(name, 0), ids.pop(name)))
    if ended:
        snapshots = {name: state for name, state in snapshots.items() if name not in ended}
    seqs: list[int] = []
    rows: list[tuple[object, ...]] = []
    for entry in entries:
        doc = entry.doc
        if doc in ended:
            seqs.append(0)
            continue
        seq = next_seq[doc]
        next_seq[doc] = seq + 1
        seqs.append(seq)
        rows.append((ids[doc], seq, entry.at, entry.client, entry.user, entry.update))
    if rows:
        conn.executemany(_INSERT, rows)
    if snapshots and several_writers:
        snapshots = _with_others_entries(conn, snapshots, ids, next_seq)
    if snapshots:
        conn.executemany(
            _SNAPSHOT,
            [
                # next_seq is now one past the doc's last seq, whether or not it had entries
                (ids[name], next_seq[name] - 1, now, state)
                for name, state in snapshots.items()
            ],
        )
    return seqs


def _ended(
    conn: sqlite3.Connection, names: Sequence[str], incarnations: Mapping[str, int]
) -> list[str]:
    """Those of ``names`` with a tombstone newer than their incarnation in ``incarnations``."""
    ended = []
    for start in range(0, len(names), _NAMES_PER_QUERY):
        chunk = names[start : start + _NAMES_PER_QUERY]
        query = _NEWEST_TOMBSTONE.format(", ".join("?" * len(chunk)))
        for name, newest in conn.execute(query, chunk).fetchall():
            if newest > incarnations.get(name, newest):
                ended.append(name)
    return ended


def _with_others_entries(
    conn: sqlite3.Connection,
    snapshots: Mapping[str, bytes],
    ids: Mapping[str, int],
    next_seq: Mapping[str, int],
) -> dict[str, bytes]:
    """``sql._with_others_entries`` in plain sqlite3, under the write lock the bumps took."""

    def entries(name: str) -> list[bytes]:
        doc_id = ids[name]
        previous = conn.execute(_PREVIOUS_SNAPSHOT, (doc_id,)).fetchone()[0]
        rows = conn.execute(_ENTRIES_SINCE, (doc_id, previous or 0, next_seq[name] - 1))
        return [bytes(row[0]) for row in rows.fetchall()]

    return with_entries_since_snapshot(snapshots, entries)
