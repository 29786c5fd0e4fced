"""The store: a per-document update log plus snapshots, behind one small interface.

A document is its log: every accepted update, in order, each with a per-document
``seq`` (1, 2, 3, ...), the time it arrived and who sent it. A snapshot is the
full encoded state of a document *exactly* as of one seq; loading is the latest
snapshot plus the entries after it. Order is always by seq, never by timestamp:
timestamps are for people.

Implementations: :mod:`collab.store.sqlite` (a SQLite file, in plain sqlite3),
:mod:`collab.store.sql` (PostgreSQL through SQLAlchemy's asyncio extension) and
:mod:`collab.store.memory` (tests). Every method may raise
:class:`~collab.errors.StoreError`; nothing else escapes.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An accepted update on its way into the log."""

    doc: str
    update: bytes
    at: float  # seconds since the epoch, when the server accepted it
    client: str  # the connection that sent it
    user: str | None = None  # the authenticated user, once auth exists


@dataclass(frozen=True, slots=True)
class LogEntry:
    """An update in the log.

    After retention merged a range, ``client`` and ``user`` list every author, comma-separated.
    """

    seq: int
    update: bytes
    at: float
    client: str
    user: str | None = None


def log_entries(rows: Iterable[Sequence[Any]]) -> list[LogEntry]:
    """Log entries from database rows whose columns are in LogEntry's field order
    (``seq, data, at, client, user``), with the cyclic garbage collector paused.

    Loading 100,000 entries allocates 200,000 objects, which triggers several full
    collections of the whole heap: about half of the load time. Nothing here can
    form a cycle, and it never awaits, so no other task runs while paused.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return [LogEntry(*row) for row in rows]
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A document's full state as of (and including) log entry ``seq``."""

    seq: int
    state: bytes
    at: float


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A deleted incarnation of a document: what it held, as a Yjs state vector.

    ``id`` orders deletions across the whole store (a later deletion has a larger
    id); ``state_vector`` is lib0-encoded, as ``Doc.get_state()`` gives it.
    """

    id: int
    doc: str
    deleted_at: float
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a room needs to rebuild a document: a snapshot and the entries after it,
    and the state vectors of the name's deleted incarnations (oldest first)."""

    snapshot: Snapshot | None
    entries: list[LogEntry] = field(default_factory=list)
    tombstones: tuple[Tombstone, ...] = ()

    @property
    def incarnation(self) -> int:
        """The id of the name's newest tombstone (0: never deleted). A deletion noticed
        later with a larger id ended the incarnation that was loaded."""
        return self.tombstones[-1].id if self.tombstones else 0

    @property
    def last_seq(self) -> int:
        if self.entries:
            return self.entries[-1].seq
        return self.snapshot.seq if self.snapshot else 0


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    name: str
    created_at: float
    updated_at: float
    last_seq: int


class Store(Protocol):
    """Where documents live when they are not in memory, and their history."""

    async def open(self) -> None:
        """Connect and create (or migrate) the schema. Call once before anything else."""

    async def close(self) -> None:
        """Release connections. The store is unusable afterwards."""

    async def append(
        self,
        entries: Sequence[NewEntry],
        snapshots: Mapping[str, bytes] | None = None,
        incarnations: Mapping[str, int] | None = None,
    ) -> list[int]:
        """Append ``entries`` in one transaction; return the seq given to each, in order.

        ``snapshots`` maps a document name to its full state *including* every
        entry for that document in this batch; it is stored in the same
        transaction with the seq of that document's last entry here (or its
        current last seq when the batch has none for it), so a snapshot and the
        log it covers never disagree. When this returns, everything is durable;
        when it raises ``StoreError``, nothing was written.

        ``incarnations`` fences writers that hold a deleted document: it maps a
        document to :attr:`Loaded.incarnation` as the writer loaded it. A document
        with a newer tombstone (deleted since, by anyone, and perhaps created
        again) gets none of its entries or its snapshot written, in the same
        transaction that checks; those entries' seqs are 0. Documents it does not
        name, or all of them when it is ``None``, are not fenced.
        """
        ...

    async def load(self, doc: str) -> Loaded:
        """The latest snapshot of ``doc`` and the entries after it (empty for a new document)."""
        ...

    async def documents(self) -> list[DocumentInfo]:
        """Every document, by name."""
        ...

    async def document(self, doc: str) -> DocumentInfo | None:
        """One document's summary, or ``None`` if the store has no entry for it."""
        ...

    async def entries(self, doc: str, after: int = 0, upto: int | None = None) -> list[LogEntry]:
        """Log entries with ``after < seq <= upto``, in seq order."""
        ...

    async def snapshot_before(self, doc: str, seq: int) -> Snapshot | None:
        """The latest snapshot whose seq is ``<= seq``, to rebuild an old version fast."""
        ...

    async def replace_range(self, doc: str, first: int, last: int, merged: LogEntry) -> None:
        """Replace entries ``first..last`` with one entry (retention). ``merged.seq == last``."""
        ...

    async def delete(self, doc: str, state_vector: bytes | None = None) -> bool:
        """Remove a document, its log and its snapshots. ``False`` if it did not exist.

        With ``state_vector`` (what the deleted document held), a :class:`Tombstone`
        is written in the same transaction, so a deletion is never durable without
        it. Without, nothing remembers the document (an import that failed half way).
        """
        ...

    async def tombstones(self, after: int = 0) -> list[Tombstone]:
        """Every tombstone with ``id > after``, by id: how a server learns of deletions
        made by another process (``collab delete``) or another server."""
        ...


def store_from_url(url: str, *, auto_migrate: bool = True, several_writers: bool = False) -> Store:
    """Build (but do not open) the store a URL names.

    ``memory://`` gives a :class:`~collab.store.memory.MemoryStore` (tests);
    ``sqlite:///path.db`` a :class:`~collab.store.sqlite.SqliteStore`;
    ``postgresql://...`` and ``postgresql+asyncpg://...`` a
    :class:`~collab.store.sql.SqlStore`. Their ``open()`` upgrades an older schema
    unless ``auto_migrate`` is false (then it refuses it). ``several_writers``: other
    processes log to the same documents (Redis joins them; see :mod:`collab.store.sql`).
    Call ``await store.open()`` next. Raises ``StoreError`` for a URL no store understands.
    Only the store the URL names is imported (SQLAlchemy only for PostgreSQL).
    """
    if url.startswith("memory:"):
        from collab.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith(("sqlite:", "sqlite+aiosqlite:")):
        from collab.store.sqlite import SqliteStore

        return SqliteStore(url, auto_migrate=auto_migrate, several_writers=several_writers)
    from collab.store.sql import SqlStore

    return SqlStore(url, auto_migrate=auto_migrate, several_writers=several_writers)
