"""An in-memory :class:`~collab.store.Store`, for tests that need no database.

It follows the same contract as :class:`~collab.store.sql.SqlStore` (per-document
seqs from 1, one atomic ``append`` per batch, snapshots tied to the seq they
cover), so tests written against it hold for the SQL store too; the store tests
run every case against both. Nothing is persisted: the data lives as long as
the object. Between ``close()`` and the next ``open()`` every call raises
:class:`~collab.errors.StoreError`, like a database that went away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from collab.errors import StoreError
from collab.store import DocumentInfo, Loaded, LogEntry, NewEntry, Snapshot, Tombstone


@dataclass(slots=True)
class _Document:
    created_at: float
    updated_at: float
    last_seq: int = 0
    log: dict[int, LogEntry] = field(default_factory=dict)  # seq -> entry, insertion = seq order
    snapshots: list[Snapshot] = field(default_factory=list)  # ascending seq


class MemoryStore:
    """A :class:`~collab.store.Store` that keeps everything in dicts."""

    def __init__(self) -> None:
        self._docs: dict[str, _Document] = {}
        self._tombstones: list[Tombstone] = []
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check(self) -> None:
        if not self._open:
            raise StoreError("the store is not open")

    async def append(
        self,
        entries: Sequence[NewEntry],
        snapshots: Mapping[str, bytes] | None = None,
        incarnations: Mapping[str, int] | None = None,
    ) -> list[int]:
        self._check()
        await asyncio.sleep(0)  # a real store yields here; so do we, to surface races in tests
        self._check()
        now = time.time()
        ended = self._ended(incarnations) if incarnations else set()
        seqs: list[int] = []
        for entry in entries:
            if entry.doc in ended:
                seqs.append(0)
                continue
            doc = self._docs.get(entry.doc)
            if doc is None:
                doc = self._docs[entry.doc] = _Document(created_at=entry.at, updated_at=entry.at)
            doc.last_seq += 1
            doc.log[doc.last_seq] = LogEntry(
                seq=doc.last_seq,
                update=bytes(entry.update),
                at=entry.at,
                client=entry.client,
                user=entry.user,
            )
            doc.updated_at = max(doc.updated_at, entry.at)
            seqs.append(doc.last_seq)
        for name, state in (snapshots or {}).items():
            if name in ended:
                continue
            doc = self._docs.get(name)
            if doc is None:
                doc = self._docs[name] = _Document(created_at=now, updated_at=now)
            # The document's last seq now is exactly the seq of its last entry in this batch
            # (or its previous last seq when the batch has none for it).
            self._put_snapshot(doc, Snapshot(seq=doc.last_seq, state=bytes(state), at=now))
        return seqs

    def _ended(self, incarnations: Mapping[str, int]) -> set[str]:
        """The documents of ``incarnations`` deleted since (a newer tombstone)."""
        return {t.doc for t in self._tombstones if t.id > incarnations.get(t.doc, t.id)}

    @staticmethod
    def _put_snapshot(doc: _Document, snapshot: Snapshot) -> None:
        doc.snapshots = [s for s in doc.snapshots if s.seq != snapshot.seq]
        doc.snapshots.append(snapshot)
        doc.snapshots.sort(key=lambda s: s.seq)

    async def load(self, doc: str) -> Loaded:
        self._check()
        found = self._docs.get(doc)
        tombstones = tuple(t for t in self._tombstones if t.doc == doc)
        if found is None:
            return Loaded(snapshot=None, entries=[], tombstones=tombstones)
        snapshot = found.snapshots[-1] if found.snapshots else None
        after = snapshot.seq if snapshot else 0
        entries = [e for s, e in found.log.items() if s > after]
        return Loaded(snapshot=snapshot, entries=entries, tombstones=tombstones)

    async def documents(self) -> list[DocumentInfo]:
        self._check()
        return [self._info(name, doc) for name, doc in sorted(self._docs.items())]

    async def document(self, doc: str) -> DocumentInfo | None:
        self._check()
        found = self._docs.get(doc)
        return self._info(doc, found) if found else None

    @staticmethod
    def _info(name: str, doc: _Document) -> DocumentInfo:
        return DocumentInfo(
            name=name, created_at=doc.created_at, updated_at=doc.updated_at, last_seq=doc.last_seq
        )

    async def entries(self, doc: str, after: int = 0, upto: int | None = None) -> list[LogEntry]:
        self._check()
        found = self._docs.get(doc)
        if found is None:
            return []
        return [e for s, e in found.log.items() if s > after and (upto is None or s <= upto)]

    async def snapshot_before(self, doc: str, seq: int) -> Snapshot | None:
        self._check()
        found = self._docs.get(doc)
        if found is None:
            return None
        best = None
        for snapshot in found.snapshots:
            if snapshot.seq <= seq:
                best = snapshot
        return best

    async def replace_range(self, doc: str, first: int, last: int, merged: LogEntry) -> None:
        self._check()
        if merged.seq != last or first > last:
            raise StoreError(f"replace_range({first}, {last}) needs merged.seq == last >= first")
        found = self._docs.get(doc)
        if found is None:
            raise StoreError(f"no document {doc!r}")
        if last > found.last_seq or not any(first <= s <= last for s in found.log):
            raise StoreError(f"{doc!r} has no entries to merge in {first}..{last}")
        log = {s: e for s, e in found.log.items() if not first <= s <= last}
        log[last] = merged
        found.log = dict(sorted(log.items()))

    async def delete(self, doc: str, state_vector: bytes | None = None) -> bool:
        self._check()
        if self._docs.pop(doc, None) is None:
            return False
        if state_vector is not None:
            number = len(self._tombstones) + 1
            self._tombstones.append(Tombstone(number, doc, time.time(), bytes(state_vector)))
        return True

    async def tombstones(self, after: int = 0) -> list[Tombstone]:
        self._check()
        return [t for t in self._tombstones if t.id > after]
