"""The durable store on PostgreSQL, through SQLAlchemy Core's asyncio extension.

Schema (the tables below; Alembic revisions in collab/store/migrations create and
change them, and :meth:`SqlStore.open` brings a database to the newest, see
:mod:`collab.store.schema`; :mod:`collab.store.sqlite` keeps the same tables in a
SQLite file, with the same statements and semantics, in plain sqlite3)::

    documents(id PK, name UNIQUE, created_at, updated_at, last_seq)
    updates(doc_id, seq, at, client, user, data)      PK (doc_id, seq)
    snapshots(doc_id, seq, at, state)                 PK (doc_id, seq)
    tombstones(id PK, name, deleted_at, state_vector) INDEX (name)

Seqs are per document, from 1, without gaps except where retention merged a
range. ``documents.last_seq`` is the counter: :meth:`SqlStore.append` bumps it
with ``UPDATE ... RETURNING`` *before* inserting the rows, in the same
transaction, so the row lock (PostgreSQL) or the database write lock (SQLite)
serialises appenders across processes and no two batches get the same seqs.

**Several writers** (processes joined by Redis, ``several_writers=True``). Each
process logs its own editors' updates; the bump's row lock orders their batches,
so a document's log stays gapless and in commit order. The same lock, held until
commit, makes snapshots of one document one process's at a time. A process's Doc
may lack an entry another process committed a moment ago (it is still crossing
Redis), yet a snapshot is labelled with the document's last seq and loading skips
every entry up to it; so a snapshot is written as the Doc's state *merged with*
every entry since the previous snapshot (``merge_updates``, which keeps updates
whose dependencies are not there yet) and never drops what another process logged.

SQLite (:mod:`collab.store.sqlite`) runs in WAL mode with ``synchronous=FULL``: a
commit returns only once the WAL is fsynced, which is what "durable" promises
(``NORMAL`` survives a process crash but can lose the last commits on power loss).
Group commit pays that fsync once per batch. See docs/storage.md.

Every SQLAlchemy, driver or OS error leaves this module as
:class:`~collab.errors.StoreError`, chained to the original.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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
from collab.store.replay import with_entries_since_snapshot
from collab.store.schema import SchemaState

#: The tables this code reads and writes, as of the head revision. A change here ships
#: with a revision in collab/store/migrations/versions/ (tests/test_migrations.py fails
#: until the revisions produce exactly these tables).
metadata = sa.MetaData()

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
)

updates = sa.Table(
    "updates",
    metadata,
    sa.Column(
        "doc_id", sa.Integer, sa.ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("client", sa.Text, nullable=False),
    sa.Column("user", sa.Text, nullable=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

snapshots_table = sa.Table(
    "snapshots",
    metadata,
    sa.Column(
        "doc_id", sa.Integer, sa.ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("state", sa.LargeBinary, nullable=False),
)

tombstones_table = sa.Table(
    "tombstones",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, index=True),
    sa.Column("deleted_at", sa.Float, nullable=False),
    sa.Column("state_vector", sa.LargeBinary, nullable=False),
)

#: Errors that mean "the database failed", as opposed to a bug in this module.
_FAILURES: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError, sqlite3.Error)


def _is_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means the database failed (:data:`_FAILURES`, or asyncpg's own errors).

    asyncpg (~4 MiB) is imported only by SQLAlchemy's PostgreSQL dialect, for PostgreSQL
    URLs; its errors can only occur once it is loaded, so it is looked up, not imported.
    """
    if isinstance(exc, _FAILURES):
        return True
    asyncpg = sys.modules.get("asyncpg")
    return asyncpg is not None and isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError))


#: Any value, so that PostgreSQL's advisory lock around schema changes is one well-known key.
_SCHEMA_LOCK_KEY = 0x636F6C6C  # "coll"

log = logging.getLogger("collab.store")

T = TypeVar("T")


#: Reserve ``count`` seqs of a document and keep its newest timestamp, in one statement
#: built once (SQLAlchemy caches its compiled form): the hot path of every commit.
_BUMP = (
    documents.update()
    .where(documents.c.name == sa.bindparam("doc_name"))
    .values(
        last_seq=documents.c.last_seq + sa.bindparam("count", type_=sa.BigInteger),
        updated_at=sa.case(
            (
                documents.c.updated_at < sa.bindparam("newest", type_=sa.Float),
                sa.bindparam("newest", type_=sa.Float),
            ),
            else_=documents.c.updated_at,
        ),
    )
    .returning(documents.c.id, documents.c.last_seq)
)


def _append(
    conn: sa.Connection,
    entries: Sequence[NewEntry],
    snapshots: Mapping[str, bytes],
    several_writers: bool = False,
    incarnations: Mapping[str, int] | None = None,
) -> list[int]:
    """The body of :meth:`SqlStore.append`, on a connection inside a transaction
    (through ``AsyncConnection.run_sync`` on asyncpg). Entries of a document
    ``incarnations`` shows deleted since get seq 0 (see :meth:`Store.append`).
    The tombstones are read after the bumps: a deletion that committed first is
    seen, one that comes later waits on the bumped row.

    SQLite runs the same transaction in plain sqlite3
    (collab.store.sqlite_append.append_in_transaction): a change here must be made there too.
    """
    # Per document: how many entries, and the span of their timestamps.
    counts: dict[str, int] = {}
    first_at: dict[str, float] = {}
    last_at: dict[str, float] = {}
    for entry in entries:
        counts[entry.doc] = counts.get(entry.doc, 0) + 1
        first_at[entry.doc] = min(first_at.get(entry.doc, entry.at), entry.at)
        last_at[entry.doc] = max(last_at.get(entry.doc, entry.at), entry.at)
    now = time.time()
    names = sorted(set(counts) | set(snapshots))  # fixed order: no lock-order deadlocks
    insert = postgresql.insert

    ids: dict[str, int] = {}
    next_seq: dict[str, int] = {}
    ended: set[str] = set()
    for name in names:
        # The bump is a write, so on SQLite it takes the write lock at once (no lock
        # upgrade later); a document seen for the first time is inserted, then bumped.
        count = counts.get(name, 0)
        bump = {"doc_name": name, "count": count, "newest": last_at.get(name, 0.0)}
        row = conn.execute(_BUMP, bump).first()
        if row is None:
            if incarnations is not None and _ended(conn, [name], incarnations):
                ended.add(name)  # deleted since it was loaded: not created again
                continue
            conn.execute(
                insert(documents).on_conflict_do_nothing(index_elements=["name"]),
                {
                    "name": name,
                    "created_at": first_at.get(name, now),
                    "updated_at": last_at.get(name, now),
                    "last_seq": 0,
                },
            )
            row = conn.execute(_BUMP, bump).one()
        ids[name] = row.id
        next_seq[name] = row.last_seq - count + 1
    if incarnations is not None and ids:
        # Deleted and created again since this writer loaded it: a new incarnation's row.
        for name in _ended(conn, list(ids), incarnations):
            ended.add(name)
            conn.execute(_UNBUMP, {"doc_id": ids.pop(name), "count": counts.get(name, 0)})
    if ended:
        snapshots = {name: state for name, state in snapshots.items() if name not in ended}
    seqs: list[int] = []
    rows: list[dict[str, Any]] = []
    for entry in entries:
        if entry.doc in ended:
            seqs.append(0)
            continue
        seq = next_seq[entry.doc]
        next_seq[entry.doc] = seq + 1
        seqs.append(seq)
        rows.append(
            {
                "doc_id": ids[entry.doc],
                "seq": seq,
                "at": entry.at,
                "client": entry.client,
                "user": entry.user,
                "data": entry.update,
            }
        )
    if rows:
        conn.execute(updates.insert(), rows)  # executemany: one round trip
    if snapshots and several_writers:
        snapshots = _with_others_entries(conn, snapshots, ids, next_seq)
    if snapshots:
        upsert = insert(snapshots_table)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=["doc_id", "seq"],
                set_={"state": upsert.excluded.state, "at": upsert.excluded.at},
            ),
            [
                # next_seq is now one past the doc's last seq, whether or not it had entries
                {"doc_id": ids[name], "seq": next_seq[name] - 1, "at": now, "state": state}
                for name, state in snapshots.items()
            ],
        )
    return seqs


def _ended(conn: sa.Connection, names: Sequence[str], incarnations: Mapping[str, int]) -> list[str]:
    """Those of ``names`` with a tombstone newer than their incarnation in ``incarnations``."""
    newest = sa.func.max(tombstones_table.c.id)
    query = (
        sa.select(tombstones_table.c.name, newest)
        .where(tombstones_table.c.name.in_(names))
        .group_by(tombstones_table.c.name)
    )
    return [name for name, top in conn.execute(query) if top > incarnations.get(name, top)]


_UNBUMP = (
    documents.update()
    .where(documents.c.id == sa.bindparam("doc_id"))
    .values(last_seq=documents.c.last_seq - sa.bindparam("count", type_=sa.BigInteger))
)


def _with_others_entries(
    conn: sa.Connection,
    snapshots: Mapping[str, bytes],
    ids: Mapping[str, int],
    next_seq: Mapping[str, int],
) -> dict[str, bytes]:
    """Each snapshot merged with its document's entries since the previous snapshot
    (:func:`~collab.store.replay.with_entries_since_snapshot`), read through ``conn``."""

    def entries(name: str) -> list[bytes]:
        doc_id = ids[name]
        previous = conn.execute(
            sa.select(sa.func.max(snapshots_table.c.seq)).where(snapshots_table.c.doc_id == doc_id)
        ).scalar()
        rows = conn.execute(
            sa.select(updates.c.data)
            .where(
                updates.c.doc_id == doc_id,
                updates.c.seq > (previous or 0),
                updates.c.seq <= next_seq[name] - 1,
            )
            .order_by(updates.c.seq)
        ).scalars()
        return [bytes(row) for row in rows]

    return with_entries_since_snapshot(snapshots, entries)


def engine_url(url: str) -> sa.URL:
    """Turn a user-facing URL into one with an asyncio driver.

    ``sqlite:///path.db`` -> aiosqlite; ``postgresql://`` / ``postgres://`` -> asyncpg.
    Raises ``StoreError`` for anything else.
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql" and driver in ("", "asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise StoreError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")


def _describe(exc: BaseException) -> str:
    """One line on what failed: the driver's own error rather than SQLAlchemy's wrapper,
    whose text adds the statement and a link on further lines."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class SqlStore:
    """A :class:`~collab.store.Store` in a PostgreSQL database (see the module docstring).

    Build it with a URL, ``await open()`` before use and ``await close()`` after.
    It never blocks the event loop: everything is asyncpg. (SQLite files are
    :class:`~collab.store.sqlite.SqliteStore`'s; ``store_from_url`` picks.)

    ``auto_migrate`` says what :meth:`open` does with a database whose schema is
    older than the code: upgrade it (``True``) or refuse it (``False``; then
    :meth:`migrate`, i.e. ``collab migrate``, upgrades it).

    Raises:
        StoreError: ``url`` is not a PostgreSQL URL.
    """

    dialect = "postgresql"

    def __init__(
        self, url: str, *, auto_migrate: bool = True, several_writers: bool = False
    ) -> None:
        #: The URL as given (with its password, if any).
        self.url = url
        self._url = engine_url(url)
        if self._url.get_backend_name() != "postgresql":
            raise StoreError(f"{url!r} is not a PostgreSQL URL: SQLite files are SqliteStore's")
        self.auto_migrate = auto_migrate
        #: Other processes append to the same documents (see the module docstring).
        self.several_writers = several_writers
        self._engine: AsyncEngine | None = None

    def __repr__(self) -> str:
        return f"SqlStore({self._url.render_as_string(hide_password=True)!r})"

    @asynccontextmanager
    async def _errors(self, action: str) -> AsyncIterator[None]:
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            if not _is_failure(exc):
                raise
            raise StoreError(f"{action} failed: {_describe(exc)}") from exc

    @asynccontextmanager
    async def _begin(self, action: str) -> AsyncIterator[AsyncConnection]:
        """One transaction; commits on success, rolls back and raises ``StoreError`` on failure."""
        if self._engine is None:
            raise StoreError(f"{action}: the store is not open")
        async with self._errors(action), self._engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _connect(self, action: str) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (no explicit transaction kept open afterwards)."""
        if self._engine is None:
            raise StoreError(f"{action}: the store is not open")
        async with self._errors(action), self._engine.connect() as conn:
            yield conn

    async def open(self) -> None:
        async with self._errors("open"):
            self._engine = create_async_engine(self._url, pool_size=5, max_overflow=10)
        try:
            await self._schema_transaction("open", self._bring_to_head)
        except BaseException:
            await self.close()
            raise

    def _bring_to_head(self, conn: sa.Connection) -> SchemaState:
        state = schema.bring_to_head(conn, auto_migrate=self.auto_migrate)
        if note := schema.upgraded(state):
            log.info("%s", note)
        return state

    async def migrate(self, *, apply: bool = True) -> SchemaState:
        """Where the schema stands and, with ``apply``, upgrade it to the head revision.

        Returns the state found *before* upgrading: its ``pending`` revisions are
        the ones applied (with ``apply``) or that an upgrade would apply. Works on
        an open or a closed store (it opens its own connection), whatever
        ``auto_migrate`` says. Raises ``StoreError`` for a database the code must
        not touch (newer than the code, see :func:`collab.store.schema.inspect`)
        or when a revision fails, which leaves the database as it was.
        """

        def run(conn: sa.Connection) -> SchemaState:
            state = schema.inspect(conn)
            if apply:
                schema.upgrade(conn, state)
            return state

        return await self._schema_transaction("migrate", run)

    async def _schema_transaction(self, action: str, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` on a sync connection in one transaction holding the schema lock."""
        async with self._errors(action):
            engine = self._engine or create_async_engine(self._url, poolclass=sa.pool.NullPool)
            try:
                async with engine.begin() as conn:
                    # Several processes may start on the same database at once; the lock
                    # is held until this transaction ends, so one migrates, the others
                    # then find the schema at head.
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
                    return await conn.run_sync(fn)
            finally:
                if engine is not self._engine:
                    await engine.dispose()

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        async with self._errors("close"):
            if engine is not None:
                await engine.dispose()

    async def append(
        self,
        entries: Sequence[NewEntry],
        snapshots: Mapping[str, bytes] | None = None,
        incarnations: Mapping[str, int] | None = None,
    ) -> list[int]:
        snapshots = snapshots or {}
        if not entries and not snapshots:
            return []
        async with self._begin("append") as conn:
            return await conn.run_sync(
                _append, entries, snapshots, self.several_writers, incarnations
            )

    async def load(self, doc: str) -> Loaded:
        async with self._connect("load") as conn:
            # Tombstones first: a deletion between the reads then fences this load's
            # writes (Store.append's incarnations) instead of going unnoticed.
            found = await conn.execute(
                _TOMBSTONES.where(tombstones_table.c.name == doc).order_by(tombstones_table.c.id)
            )
            tombstones = tuple(Tombstone(*row) for row in found)
            snapshot = await self._latest_snapshot(conn, doc, None)
            after = snapshot.seq if snapshot else 0
            entries = await self._entries(conn, doc, after, None)
        return Loaded(snapshot=snapshot, entries=entries, tombstones=tombstones)

    async def documents(self) -> list[DocumentInfo]:
        async with self._connect("documents") as conn:
            result = await conn.execute(_INFO.order_by(documents.c.name))
            return [DocumentInfo(*row) for row in result]

    async def document(self, doc: str) -> DocumentInfo | None:
        async with self._connect("document") as conn:
            row = (await conn.execute(_INFO.where(documents.c.name == doc))).first()
            return DocumentInfo(*row) if row else None

    async def entries(self, doc: str, after: int = 0, upto: int | None = None) -> list[LogEntry]:
        async with self._connect("entries") as conn:
            return await self._entries(conn, doc, after, upto)

    async def snapshot_before(self, doc: str, seq: int) -> Snapshot | None:
        async with self._connect("snapshot_before") as conn:
            return await self._latest_snapshot(conn, doc, seq)

    async def replace_range(self, doc: str, first: int, last: int, merged: LogEntry) -> None:
        if merged.seq != last or first > last:
            raise StoreError(f"replace_range({first}, {last}) needs merged.seq == last >= first")
        async with self._begin("replace_range") as conn:
            doc_id = _doc_id(doc)
            deleted = await conn.execute(
                updates.delete().where(
                    updates.c.doc_id == doc_id, updates.c.seq.between(first, last)
                )
            )
            row = (
                await conn.execute(
                    sa.select(documents.c.id, documents.c.last_seq).where(documents.c.name == doc)
                )
            ).first()
            if row is None:
                raise StoreError(f"no document {doc!r}")
            found = row.id
            # Past last_seq, the merged entry would take a seq the next append will use.
            if deleted.rowcount == 0 or last > row.last_seq:
                raise StoreError(f"{doc!r} has no entries to merge in {first}..{last}")
            await conn.execute(
                updates.insert().values(
                    doc_id=found,
                    seq=last,
                    at=merged.at,
                    client=merged.client,
                    user=merged.user,
                    data=merged.update,
                )
            )

    async def delete(self, doc: str, state_vector: bytes | None = None) -> bool:
        async with self._begin("delete") as conn:
            doc_id = _doc_id(doc)
            await conn.execute(updates.delete().where(updates.c.doc_id == doc_id))
            await conn.execute(snapshots_table.delete().where(snapshots_table.c.doc_id == doc_id))
            result = await conn.execute(documents.delete().where(documents.c.name == doc))
            if not result.rowcount:
                return False
            if state_vector is not None:
                await conn.execute(
                    tombstones_table.insert().values(
                        name=doc, deleted_at=time.time(), state_vector=bytes(state_vector)
                    )
                )
            return True

    async def tombstones(self, after: int = 0) -> list[Tombstone]:
        async with self._connect("tombstones") as conn:
            found = await conn.execute(
                _TOMBSTONES.where(tombstones_table.c.id > after).order_by(tombstones_table.c.id)
            )
            return [Tombstone(*row) for row in found]

    @staticmethod
    async def _latest_snapshot(
        conn: AsyncConnection, doc: str, upto: int | None
    ) -> Snapshot | None:
        query = sa.select(
            snapshots_table.c.seq, snapshots_table.c.state, snapshots_table.c.at
        ).where(snapshots_table.c.doc_id == _doc_id(doc))
        if upto is not None:
            query = query.where(snapshots_table.c.seq <= upto)
        row = (await conn.execute(query.order_by(snapshots_table.c.seq.desc()).limit(1))).first()
        return Snapshot(seq=row.seq, state=bytes(row.state), at=row.at) if row else None

    @staticmethod
    async def _entries(
        conn: AsyncConnection, doc: str, after: int, upto: int | None
    ) -> list[LogEntry]:
        query = sa.select(
            updates.c.seq, updates.c.data, updates.c.at, updates.c.client, updates.c.user
        ).where(updates.c.doc_id == _doc_id(doc), updates.c.seq > after)
        if upto is not None:
            query = query.where(updates.c.seq <= upto)
        result = await conn.execute(query.order_by(updates.c.seq))
        # Columns are in LogEntry's field order; asyncpg returns ``bytes`` for blobs.
        return log_entries(result.all())


_TOMBSTONES = sa.select(
    tombstones_table.c.id,
    tombstones_table.c.name,
    tombstones_table.c.deleted_at,
    tombstones_table.c.state_vector,
)

_INFO = sa.select(
    documents.c.name, documents.c.created_at, documents.c.updated_at, documents.c.last_seq
)


def _doc_id(doc: str) -> sa.ScalarSelect[int]:
    """The id of document ``doc`` as a subquery, so reads by name take one round trip."""
    return sa.select(documents.c.id).where(documents.c.name == doc).scalar_subquery()
