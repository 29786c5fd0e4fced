"""Rebuild a document from its snapshot and log: the one way collab turns stored bytes into a Doc.

A document is always rebuilt from its CRDT updates, never from its text (which
would duplicate content when editors that still hold the old items reconnect).
All updates are applied in one transaction: for a long log that is markedly
faster than a transaction per update (Yrs cleans up after each commit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pycrdt import Doc, merge_updates

from collab.errors import StoreError
from collab.store import LogEntry, Snapshot

log = logging.getLogger("collab.store")


def replay(snapshot: Snapshot | None, entries: Iterable[LogEntry]) -> Doc[Any]:
    """A fresh Doc holding ``snapshot`` (if any) and then ``entries``, in order.

    Raises:
        StoreError: the store holds bytes pycrdt cannot apply (naming the seq).
    """
    doc: Doc[Any] = Doc()
    with doc.transaction():
        if snapshot is not None:
            apply_entry(doc, snapshot.state, snapshot.seq)
        for entry in entries:
            apply_entry(doc, entry.update, entry.seq)
    return doc


def apply_entry(doc: Doc[Any], update: bytes, seq: int) -> None:
    """Apply one stored update (or snapshot) to ``doc``; bad bytes become ``StoreError``."""
    try:
        doc.apply_update(update)
    except Exception as exc:  # pycrdt raises bare ValueError / RuntimeError
        raise StoreError(f"log entry {seq} holds an update that cannot be applied") from exc


def with_entries_since_snapshot(
    snapshots: Mapping[str, bytes],
    entries_since_snapshot: Callable[[str], Iterable[bytes]],
) -> dict[str, bytes]:
    """Each snapshot merged with what ``entries_since_snapshot(name)`` returns: its
    document's entries after the previous snapshot, up to the new one's seq, in order.

    The stores call this inside their append transaction, under the documents' row
    locks, so no other writer can add an entry below the new snapshot meanwhile. A
    document whose entries cannot be merged keeps no snapshot this time (its log is
    complete; one comes later) and the reason is logged.
    """
    merged: dict[str, bytes] = {}
    for name, state in snapshots.items():
        try:
            merged[name] = merge_updates(state, *entries_since_snapshot(name))
        except Exception:  # pycrdt raises bare ValueError / RuntimeError
            log.exception("snapshot of %r skipped: its entries could not be merged", name)
    return merged
