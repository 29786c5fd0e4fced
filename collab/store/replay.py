"""Rebuild a document from its snapshot and log: the one way collab turns stored bytes into a Doc.

A document is always rebuilt from its CRDT updates, never from its text (which
would duplicate content when editors that still hold the old items reconnect).
All updates are applied in one transaction: for a long log that is markedly
faster than a transaction per update (Yrs cleans up after each commit).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pycrdt import Doc

from collab.errors import StoreError
from collab.store import LogEntry, Snapshot


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
