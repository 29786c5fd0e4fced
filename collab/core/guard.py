"""The deleted-document guard: keep a stale copy of a deleted document out of its successor.

When a document is deleted, its final state vector stays behind as a tombstone
(:class:`~collab.store.Tombstone`). A client that was editing it (a browser tab
left open, an offline copy in IndexedDB) still holds those structs; when it
reconnects to a new document of the same name, a stock Yjs provider sends its
state vector (step 1) and then everything the server lacks (step 2), which would
merge the deleted text into the new document. This guard refuses that.

The rule, per client id ``c`` (a Yjs client's clock ``k`` means it holds all of
``c``'s structs below ``k``, so ranges are ``[0, clock)``):

    deleted[c] > current[c]  and  claimed[c] > current[c]

``deleted`` is the merge of the name's tombstones, ``current`` the live document's
state vector, ``claimed`` what the message carries: the clocks of a step 1 state
vector, or the end clock per client of the structs in a step 2 or update (read by
:func:`~collab.wire.vectors.update_ranges`, incremental updates included). Then
the message carries ``c``'s structs that the tombstone covers and the document
does not -- or structs of ``c`` past the tombstone, which only a holder of the
deleted ones can have made -- and the client is closed with 4404 before anything
it sent is applied. A document re-imported from an archive of the deleted one
holds the deleted structs again (``current[c] >= deleted[c]``) and lets them by.

Pure code: bytes and state vectors in, :class:`~collab.errors.DocumentDeleted`
out. Only documents with a tombstone have a guard, so nobody else pays anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from collab.errors import DocumentDeleted
from collab.wire.vectors import StateVector, decode_state_vector, merge, update_ranges

__all__ = ["Guard"]


class Guard:
    """What the deleted incarnations of one document name held."""

    def __init__(self, deleted: Mapping[int, int]) -> None:
        self.deleted: StateVector = {c: k for c, k in deleted.items() if k > 0}

    @classmethod
    def from_tombstones(cls, state_vectors: Iterable[bytes]) -> Guard | None:
        """The guard of a name whose tombstones hold ``state_vectors``; ``None`` if none
        held anything (no guard needed). Raises ``InvalidPayload`` for a corrupt one."""
        guard = cls(merge(decode_state_vector(sv) for sv in state_vectors))
        return guard if guard.deleted else None

    def stale_clients(self, claimed: Mapping[int, int], current: Mapping[int, int]) -> list[int]:
        """The clients of ``claimed`` whose deleted structs the document lacks (see the rule)."""
        stale = []
        for client, clock in claimed.items():
            deleted = self.deleted.get(client, 0)
            if deleted:
                have = current.get(client, 0)
                if deleted > have and clock > have:
                    stale.append(client)
        return stale

    def check_state_vector(self, state_vector: bytes, current_state: bytes) -> None:
        """Raise :class:`DocumentDeleted` if a step 1 ``state_vector`` shows deleted content.

        ``current_state`` is the live document's ``get_state()``.
        """
        self._check(decode_state_vector(state_vector), current_state, "state vector")

    def check_update(self, update: bytes, current_state: bytes) -> None:
        """Raise :class:`DocumentDeleted` if ``update`` (step 2 or update) carries deleted
        content. Raises ``InvalidPayload`` if it is not a Yjs update at all."""
        ends = {client: end for client, (_, end) in update_ranges(update).items()}
        self._check(ends, current_state, "update")

    def _check(self, claimed: StateVector, current_state: bytes, what: str) -> None:
        stale = self.stale_clients(claimed, decode_state_vector(current_state))
        if stale:
            raise DocumentDeleted(
                f"this copy holds content of a deleted incarnation of the document "
                f"({what} names {len(stale)} client(s) of it); drop it and reload"
            )
