"""What the rest of a product may watch of the documents: durable commits and deletions.

The journal tells a :class:`DocumentObserver` about every batch of updates once it
is durable (:meth:`DocumentObserver.committed`), and whoever deletes a document
tells it that (:meth:`DocumentObserver.deleted`). Webhooks
(:mod:`collab.integrations.webhooks`) implement it; core never imports them.

An observer is called from the journal's committer task, synchronously: it must
return at once (queue work, never await or do I/O), and an exception it raises is
logged and otherwise ignored, so it can never hold up or break a commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Committed", "DocumentObserver"]


@dataclass(frozen=True, slots=True)
class Committed:
    """One update, now durable, as the log holds it."""

    doc: str
    seq: int
    #: The connection (or HTTP caller) that sent it.
    client: str
    #: Its authenticated user, when known.
    user: str | None
    #: Seconds since the epoch, when the server accepted it.
    at: float
    #: The document's first entry ever (seq 1): it did not exist before this update. Once
    #: per document across every process sharing the store (each seq is given once).
    first: bool = False


class DocumentObserver(Protocol):
    """Told of durable commits and deletions; must never block (see the module docstring)."""

    def committed(self, entries: Sequence[Committed]) -> None:
        """``entries`` (in seq order, possibly of several documents) are durable."""

    def deleted(self, doc: str) -> None:
        """``doc`` was deleted."""
