"""The awareness table of one room: who is here, pure and clock-driven.

pycrdt's ``Awareness`` runs its own background task and compares states after
parsing them; collab wants the room to stay plain (no tasks) and to forward only
*real* changes, so the table is small and explicit: the caller passes ``now``.

Rules follow y-protocols' awareness: a higher clock wins; the same clock with a
``null`` state removes; a state not renewed for ``timeout`` seconds is removed
and the removal announced with a bumped clock, exactly as a client does.
"""

from __future__ import annotations

from dataclasses import dataclass

from collab.wire.protocol import AwarenessEntry

NULL = "null"


@dataclass(slots=True)
class _Presence:
    clock: int
    state: str
    updated: float
    owner: object


@dataclass(frozen=True, slots=True)
class Changes:
    """The outcome of applying one awareness update.

    ``changed`` must reach every other editor now (a new state, an edit of a
    state, a departure); ``renewed`` only keeps a state alive (same state, higher
    clock) and may be batched.
    """

    changed: list[AwarenessEntry]
    renewed: list[AwarenessEntry]


class AwarenessTable:
    """Every live awareness state of a room, and which connection set it."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._live: dict[int, _Presence] = {}
        #: Clocks of removed clients, so a late, older state cannot resurrect them.
        self._gone: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._live)

    def apply(self, entries: list[AwarenessEntry], owner: object, now: float) -> Changes:
        """Apply decoded entries sent by ``owner``; return what actually changed."""
        changed: list[AwarenessEntry] = []
        renewed: list[AwarenessEntry] = []
        for entry in entries:
            current = self._live.get(entry.client_id)
            if current is None:
                if entry.removed or entry.clock <= self._gone.get(entry.client_id, -1):
                    continue
                self._live[entry.client_id] = _Presence(entry.clock, entry.state, now, owner)
                self._gone.pop(entry.client_id, None)
                changed.append(entry)
            elif entry.removed and entry.clock >= current.clock:
                del self._live[entry.client_id]
                self._gone[entry.client_id] = entry.clock
                changed.append(entry)
            elif entry.clock > current.clock:
                same = entry.state == current.state
                current.clock, current.state, current.updated = entry.clock, entry.state, now
                current.owner = owner
                (renewed if same else changed).append(entry)
        return Changes(changed, renewed)

    def remove_owner(self, owner: object) -> list[AwarenessEntry]:
        """Remove every state ``owner`` set (its connection closed); return the removals."""
        ids = [cid for cid, p in self._live.items() if p.owner is owner]
        return [self._remove(cid) for cid in ids]

    def owned_by(self, owner: object) -> set[int]:
        """The client ids whose state ``owner`` set last."""
        return {cid for cid, p in self._live.items() if p.owner is owner}

    def expire(self, now: float) -> list[AwarenessEntry]:
        """Remove states not renewed within the timeout; return the removals to announce."""
        ids = [cid for cid, p in self._live.items() if now - p.updated >= self._timeout]
        return [self._remove(cid) for cid in ids]

    def entries(self) -> list[AwarenessEntry]:
        """Every live state, for a newcomer or a query-awareness message."""
        return [AwarenessEntry(cid, p.clock, p.state) for cid, p in self._live.items()]

    def _remove(self, client_id: int) -> AwarenessEntry:
        presence = self._live.pop(client_id)
        clock = presence.clock + 1
        self._gone[client_id] = clock
        return AwarenessEntry(client_id, clock, NULL)
