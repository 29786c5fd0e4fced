"""The durable store on a SQLite file, in the standard library's ``sqlite3``.

The tables are the ones :mod:`collab.store.sql` declares and the Alembic revisions
create (see there for the schema, the seq counter and *several writers*); this module
reads and writes them with the same statements and the same semantics, without
SQLAlchemy (with aiosqlite and greenlet, ~23 MiB of a server's memory; docs/performance.md).

Two threads, each with its own connection: the writer runs every transaction that
writes (:meth:`SqliteStore.append`, :meth:`~SqliteStore.replace_range`,
:meth:`~SqliteStore.delete`) as ``BEGIN IMMEDIATE ... COMMIT`` in one hop
(:class:`~collab.store.sqlite_append.WriterThread`); the reader runs reads, each in
one read transaction, so a load sees one state of the file. WAL lets the two (and
other processes) run at once; ``synchronous=FULL`` makes a commit durable once it
returns (see :mod:`collab.store.sql`).

**Schema.** :meth:`SqliteStore.open` reads ``alembic_version`` in plain SQL; a store
at head (every start but the first after an upgrade) opens without SQLAlchemy or
Alembic. Otherwise a child process, ``python -m collab.store.migrate_sqlite``, checks
and upgrades it with Alembic (or refuses it, as :func:`collab.store.schema.bring_to_head`
says) and the store continues, so the migration's libraries never stay in the
server's memory. :meth:`SqliteStore.migrate` (``collab migrate``) runs in-process.

Every ``sqlite3`` or OS error leaves this module as :class:`~collab.errors.StoreError`,
chained to the original.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from collab.errors import StoreError
from collab.store import (
    DocumentInfo,
    Loaded,
    LogEntry,
    NewEntry,
    Snapshot,
    Tombstone,
    log_entries,
    schema,
)
from collab.store.sqlite_append import WriterThread, append_in_transaction

if TYPE_CHECKING:
    from collab.store.schema import SchemaState

__all__ = ["PRAGMAS", "SqliteStore", "connect", "describe", "sqlite_path", "switch_to_wal"]

log = logging.getLogger("collab.store")

T = TypeVar("T")

#: Set on every connection. ``journal_mode=WAL`` is set apart, once the schema is
#: accepted: a database the store refuses, or only inspects, is not changed.
PRAGMAS = ("PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=10000")

#: The writer's page cache (KiB). It appends at the right edge of two B-trees and
#: writes snapshots: a few pages, which the next commit reads again anyway. SQLite's
#: default of 2 MiB fills as the log grows (+2.4 MiB of RSS holding a document typed
#: in 100,000 edits, docs/performance.md), for nothing. Reads have their own
#: connection, with the default cache.
WRITER_CACHE_KIB = 256

_FAILURES = (sqlite3.Error, OSError)

#: Where this collab package lives: the schema child imports collab from here too,
#: whatever this process's ``sys.path`` was.
_ROOT = str(Path(__file__).resolve().parents[2])

_DOC_ID = "(SELECT id FROM documents WHERE name = ?)"
_SNAPSHOT = f"SELECT seq, state, at FROM snapshots WHERE doc_id = {_DOC_ID}"
_ENTRIES = f'SELECT seq, data, at, client, "user" FROM updates WHERE doc_id = {_DOC_ID} AND seq > ?'
_TOMBSTONES = "SELECT id, name, deleted_at, state_vector FROM tombstones"
_INFO = "SELECT name, created_at, updated_at, last_seq FROM documents"


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:///path`` URL names (``sqlite:////abs`` is ``/abs``).

    Raises ``StoreError`` for anything else: another scheme, no path, an in-memory
    database (the store's two connections would see two databases) or query options.
    """
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme not in ("sqlite", "sqlite+aiosqlite"):
        raise StoreError(f"not a SQLite file URL: {url!r} (use sqlite:///path.db)")
    if not rest or rest == ":memory:" or "?" in rest:
        raise StoreError(
            f"unsupported SQLite URL {url!r}: name a file, without options (sqlite:///path.db)"
        )
    return rest


def describe(exc: BaseException) -> str:
    """One line on what failed, e.g. ``DatabaseError: file is not a database``."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def switch_to_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, waiting out other processes that hold the file.

    Changing the journal mode needs the file to itself and, unlike a write, does not
    wait on ``busy_timeout``: with several processes opening one new database at once
    it fails at once with "database is locked". Retried for up to 10 s (blocking: call
    it in a thread).
    """
    for attempt in range(200):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 199:
                raise
            time.sleep(0.05)


def _connect_writer(path: str) -> sqlite3.Connection:
    """:func:`connect`, with the writer's small page cache (:data:`WRITER_CACHE_KIB`)."""
    conn = connect(path)
    conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
    return conn


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (callers say BEGIN and COMMIT) with :data:`PRAGMAS`."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in PRAGMAS:
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


def _versions(conn: sqlite3.Connection) -> list[str] | None:
    """The rows of ``alembic_version``; ``None`` when the table does not exist."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    ).fetchone()
    if found is None:
        return None
    return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


class SqliteStore:
    """A :class:`~collab.store.Store` in one SQLite file (see the module docstring).

    Build it with a ``sqlite:///path`` URL, ``await open()`` before use and ``await
    close()`` after. It never blocks the event loop. ``auto_migrate`` and
    ``several_writers`` mean what they mean for :class:`~collab.store.sql.SqlStore`.
    """

    dialect = "sqlite"

    def __init__(
        self, url: str, *, auto_migrate: bool = True, several_writers: bool = False
    ) -> None:
        self.url = url
        #: The database file.
        self.path = sqlite_path(url)
        self.auto_migrate = auto_migrate
        #: Other processes append to the same documents (see :mod:`collab.store.sql`).
        self.several_writers = several_writers
        self._writer: WriterThread | None = None
        self._reader: WriterThread | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({self.url!r})"

    async def open(self) -> None:
        self._writer = WriterThread("collab-sqlite-writer")
        self._reader = WriterThread("collab-sqlite-reader")
        try:
            if not await self._run("open", self._writer, self._open_writer, True):
                await self._bring_to_head()
                await self._run("open", self._writer, self._open_writer, False)
        except BaseException:
            await self.close()
            raise

    def _open_writer(self, only_at_head: bool) -> bool:
        """Open the writer's connection and switch the file to WAL, unless
        ``only_at_head`` and the schema is not at head (then none stays open and
        this returns False). In the writer thread."""
        conn = _connect_writer(self.path)
        try:
            if only_at_head and schema.quick_state(_versions(conn)) is None:
                conn.close()
                return False
            switch_to_wal(conn)
        except BaseException:
            conn.close()
            raise
        self._write_conn = conn
        return True

    async def _bring_to_head(self) -> None:
        """Check (and upgrade, or refuse) the schema in a child process, as
        :func:`collab.store.schema.bring_to_head` does; log what it changed.

        Raises ``StoreError`` with the child's message (the same words an
        in-process check gives) or, if it died without one, its exit status.
        """
        command = [sys.executable, "-m", "collab.store.migrate_sqlite", self.url]
        if not self.auto_migrate:
            command.append("--refuse-changes")
        path = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)
        child = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )
        out, err = await child.communicate()
        try:
            answer: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            tail = " ".join(err.decode(errors="replace").split())[-500:]
            raise StoreError(
                f"open failed: the schema check exited with status {child.returncode}: {tail}"
            ) from None
        if "error" in answer:
            raise StoreError(str(answer["error"]))
        if answer.get("upgraded"):
            log.info("%s", answer["upgraded"])

    async def migrate(self, *, apply: bool = True) -> SchemaState:
        """What :meth:`collab.store.sql.SqlStore.migrate` does, on this file, in this
        process (it imports SQLAlchemy and Alembic: ``collab migrate``, not the server)."""
        from collab.store import migrate_sqlite

        try:
            return await asyncio.to_thread(migrate_sqlite.migrate, self.url, apply)
        except StoreError:
            raise
        except Exception as exc:
            if not migrate_sqlite.is_failure(exc):
                raise
            raise StoreError(f"migrate failed: {migrate_sqlite.describe_failure(exc)}") from exc

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        reader, self._reader = self._reader, None
        try:
            for thread, closing in ((writer, self._close_writer), (reader, self._close_reader)):
                if thread is not None:
                    await thread.run(closing)
                    await asyncio.to_thread(thread.shutdown)
        except _FAILURES as exc:
            raise StoreError(f"close failed: {describe(exc)}") from exc

    def _close_writer(self) -> None:
        conn, self._write_conn = self._write_conn, None
        if conn is not None:
            conn.close()

    def _close_reader(self) -> None:
        conn, self._read_conn = self._read_conn, None
        if conn is not None:
            conn.close()

    async def _write(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction on the writer thread:
        committed when it returns, rolled back whole when it raises."""
        return await self._run(action, self._writer, self._transaction, fn)

    async def _read(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` in one read transaction on the reader thread."""
        return await self._run(action, self._reader, self._snapshot_read, fn)

    async def _run(
        self, action: str, thread: WriterThread | None, fn: Callable[..., T], *args: Any
    ) -> T:
        """``fn(*args)`` on ``thread``; database failures become ``StoreError``."""
        if thread is None or self._writer is None:
            raise StoreError(f"{action}: the store is not open")
        try:
            return await thread.run(fn, *args)
        except StoreError:
            raise
        except _FAILURES as exc:
            raise StoreError(f"{action} failed: {describe(exc)}") from exc

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._write_conn is None:  # a connection dropped after a failed rollback
            self._write_conn = _connect_writer(self.path)
        conn = self._write_conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._close_writer()  # start afresh on the next write
            raise
        return result

    def _snapshot_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._read_conn is None:
            self._read_conn = connect(self.path)
        conn = self._read_conn
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    async def append(
        self,
        entries: Sequence[NewEntry],
        snapshots: Mapping[str, bytes] | None = None,
        incarnations: Mapping[str, int] | None = None,
    ) -> list[int]:
        snapshots = snapshots or {}
        if not entries and not snapshots:
            return []
        several = self.several_writers
        return await self._write(
            "append",
            lambda conn: append_in_transaction(conn, entries, snapshots, several, incarnations),
        )

    async def load(self, doc: str) -> Loaded:
        def load(conn: sqlite3.Connection) -> Loaded:
            found = conn.execute(f"{_TOMBSTONES} WHERE name = ? ORDER BY id", (doc,))
            tombstones = tuple(Tombstone(*row) for row in found)
            snapshot = _latest_snapshot(conn, doc, None)
            entries = _entries(conn, doc, snapshot.seq if snapshot else 0, None)
            return Loaded(snapshot=snapshot, entries=entries, tombstones=tombstones)

        return await self._read("load", load)

    async def documents(self) -> list[DocumentInfo]:
        def documents(conn: sqlite3.Connection) -> list[DocumentInfo]:
            return [DocumentInfo(*row) for row in conn.execute(f"{_INFO} ORDER BY name")]

        return await self._read("documents", documents)

    async def document(self, doc: str) -> DocumentInfo | None:
        def document(conn: sqlite3.Connection) -> DocumentInfo | None:
            row = conn.execute(f"{_INFO} WHERE name = ?", (doc,)).fetchone()
            return DocumentInfo(*row) if row else None

        return await self._read("document", document)

    async def entries(self, doc: str, after: int = 0, upto: int | None = None) -> list[LogEntry]:
        return await self._read("entries", lambda conn: _entries(conn, doc, after, upto))

    async def snapshot_before(self, doc: str, seq: int) -> Snapshot | None:
        return await self._read("snapshot_before", lambda conn: _latest_snapshot(conn, doc, seq))

    async def replace_range(self, doc: str, first: int, last: int, merged: LogEntry) -> None:
        if merged.seq != last or first > last:
            raise StoreError(f"replace_range({first}, {last}) needs merged.seq == last >= first")

        def replace(conn: sqlite3.Connection) -> None:
            deleted = conn.execute(
                f"DELETE FROM updates WHERE doc_id = {_DOC_ID} AND seq BETWEEN ? AND ?",
                (doc, first, last),
            ).rowcount
            row = conn.execute(
                "SELECT id, last_seq FROM documents WHERE name = ?", (doc,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no document {doc!r}")
            # Past last_seq, the merged entry would take a seq the next append will use.
            if deleted == 0 or last > row[1]:
                raise StoreError(f"{doc!r} has no entries to merge in {first}..{last}")
            conn.execute(
                'INSERT INTO updates (doc_id, seq, at, client, "user", data)'
                " VALUES (?, ?, ?, ?, ?, ?)",
                (row[0], last, merged.at, merged.client, merged.user, merged.update),
            )

        await self._write("replace_range", replace)

    async def delete(self, doc: str, state_vector: bytes | None = None) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            conn.execute(f"DELETE FROM updates WHERE doc_id = {_DOC_ID}", (doc,))
            conn.execute(f"DELETE FROM snapshots WHERE doc_id = {_DOC_ID}", (doc,))
            if not conn.execute("DELETE FROM documents WHERE name = ?", (doc,)).rowcount:
                return False
            if state_vector is not None:
                conn.execute(
                    "INSERT INTO tombstones (name, deleted_at, state_vector) VALUES (?, ?, ?)",
                    (doc, time.time(), bytes(state_vector)),
                )
            return True

        return await self._write("delete", delete)

    async def tombstones(self, after: int = 0) -> list[Tombstone]:
        def tombstones(conn: sqlite3.Connection) -> list[Tombstone]:
            found = conn.execute(f"{_TOMBSTONES} WHERE id > ? ORDER BY id", (after,))
            return [Tombstone(*row) for row in found]

        return await self._read("tombstones", tombstones)


def _latest_snapshot(conn: sqlite3.Connection, doc: str, upto: int | None) -> Snapshot | None:
    if upto is None:
        row = conn.execute(f"{_SNAPSHOT} ORDER BY seq DESC LIMIT 1", (doc,)).fetchone()
    else:
        row = conn.execute(
            f"{_SNAPSHOT} AND seq <= ? ORDER BY seq DESC LIMIT 1", (doc, upto)
        ).fetchone()
    return Snapshot(seq=row[0], state=bytes(row[1]), at=row[2]) if row else None


def _entries(conn: sqlite3.Connection, doc: str, after: int, upto: int | None) -> list[LogEntry]:
    if upto is None:
        rows = conn.execute(f"{_ENTRIES} ORDER BY seq", (doc, after))
    else:
        rows = conn.execute(f"{_ENTRIES} AND seq <= ? ORDER BY seq", (doc, after, upto))
    return log_entries(rows)
