"""A room: one document in memory, the editors on it, and who is here.

The room is plain code — no ``await``, no sockets, no SQL. The server hands it
decoded messages (:meth:`Room.receive`); the room applies each update to its
``pycrdt.Doc`` exactly once, with the sending editor as transaction origin, and
pushes frames to the other editors through :meth:`Peer.send`, which never
blocks. What the Doc integrated goes to the document's log (the journal) in
the same synchronous step, so a snapshot taken between two updates always
matches the log.

With several processes (collab.core.relay), what local editors change also goes
to the room's :attr:`Room.relay`; what other processes' editors changed comes in
through :meth:`Room.receive_remote` and :meth:`Room.receive_remote_awareness`,
which forward it to every local editor but never log it nor relay it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pycrdt import Doc, TransactionEvent, get_state

if TYPE_CHECKING:
    import asyncio

from collab.core import metrics
from collab.core.awareness import AwarenessTable
from collab.core.guard import Guard
from collab.core.relay import Relay
from collab.errors import (
    DocumentDeleted,
    DocumentTooLarge,
    InvalidPayload,
    ProtocolError,
    ReadOnly,
)
from collab.wire import protocol
from collab.wire.protocol import (
    Auth,
    Awareness,
    AwarenessEntry,
    Event,
    Message,
    QueryAwareness,
    Saved,
    SyncStep1,
    SyncStep2,
    Update,
)
from collab.wire.vectors import check_update_header, decode_state_vector

log = logging.getLogger("collab.room")

#: The origin of transactions and the owner of presence that came from another process.
REMOTE: object = type("Remote", (), {"__repr__": lambda self: "REMOTE"})()


class Peer(Protocol):
    """One editor's connection, as the room sees it."""

    #: Identifies the connection in logs and in the update log ("who sent it").
    id: str
    user: str | None
    read_only: bool

    def send(self, frame: bytes) -> None:
        """Queue ``frame`` for this editor. Must not block; a peer that cannot keep
        up closes itself (SlowConsumer) instead of buffering without bound."""

    def saved(self) -> None:
        """One more update from this editor is durable (only called if it asked for acks)."""

    @property
    def wants_acks(self) -> bool: ...


class Log(Protocol):
    """Where accepted updates go to become durable (``collab.journal.DocumentLog``)."""

    def append(
        self,
        update: bytes,
        client: str,
        user: str | None = None,
        on_durable: Callable[[], None] | None = None,
    ) -> None: ...

    def when_durable(self, callback: Callable[[], None]) -> None: ...

    @property
    def ending(self) -> asyncio.Future[None]:
        """Done once the store refuses this log's appends (the document was deleted)."""
        ...


class Room:
    """One document and its editors.

    Call :meth:`join` when an editor arrives, :meth:`receive` for each message it
    sends, and :meth:`leave` when its connection ends. Call :meth:`tick` every
    few seconds so that silent editors' presence expires.

    ``max_bytes`` bounds the document's state (``None``: no bound). ``size`` is an
    upper bound of the state's encoded length as loaded (the bytes it was rebuilt
    from). The room keeps that bound by adding each applied update's length, and
    refuses an update once bound + update would pass ``max_bytes`` *and* so would
    the exact state (encoded then, and only then) + update: the check is an
    addition per update until the document comes close to its limit.
    """

    def __init__(
        self,
        name: str,
        doc: Doc[Any],
        *,
        awareness_timeout: float,
        log: Log | None = None,
        clock: Callable[[], float],
        max_bytes: int | None = None,
        size: int | None = None,
    ) -> None:
        self.name = name
        self.doc = doc
        self.max_bytes = max_bytes
        self._size_bound = size if size is not None else len(doc.get_update())
        self.peers: set[Peer] = set()
        self.awareness = AwarenessTable(awareness_timeout)
        self._log = log
        self._clock = clock
        self._renewals: dict[int, AwarenessEntry] = {}
        #: Renewals of local editors' presence, for the relay (other processes expire them).
        self._local_renewals: dict[int, AwarenessEntry] = {}
        #: Told of every change local editors make; set by Rooms when processes are joined.
        self.relay: Relay | None = None
        self._delta: bytes | None = None
        #: Set when the name has deleted incarnations (collab.core.guard); None costs nothing.
        self.guard: Guard | None = None
        self._subscription = doc.observe(self._on_transaction)

    def attach_log(self, log: Log) -> None:
        """Set the log once the journal knows the document (after loading)."""
        self._log = log

    @property
    def ending(self) -> asyncio.Future[None] | None:
        """Done once the store refuses this room's updates (:attr:`Log.ending`);
        ``None`` for a room without a log."""
        return None if self._log is None else self._log.ending

    # -- editors ------------------------------------------------------------------------------

    def join(self, peer: Peer) -> None:
        """Greet a new editor: our state vector (step 1) and who is here."""
        self.peers.add(peer)
        peer.send(protocol.encode(SyncStep1(self.doc.get_state())))
        entries = self.awareness.entries()
        if entries:
            peer.send(_awareness_frame(entries))

    def leave(self, peer: Peer) -> None:
        """Forget an editor and announce that its presence is gone."""
        self.peers.discard(peer)
        removals = self.awareness.remove_owner(peer)
        if removals:
            frame = _awareness_frame(removals)
            self._broadcast(frame, exclude=None)
            if self.relay is not None:
                self.relay.awareness(self.name, protocol.encode_awareness(removals))

    # -- messages -----------------------------------------------------------------------------

    def receive(self, peer: Peer, message: Message, frame: bytes | None = None) -> None:
        """Handle one message from ``peer``. ``frame`` is the raw frame it came in, if
        available, so an update or an awareness change can be forwarded without
        re-encoding.

        Raises:
            InvalidPayload: the state vector, update or awareness cannot be decoded.
            ReadOnly: a read-only editor sent an update or step 2 that would change
                the document; nothing was applied (one that would not is ignored).
            DocumentDeleted: the message holds content of a deleted incarnation of this
                document (the guard); nothing of it was applied.
            DocumentTooLarge: the update would grow the state past ``max_bytes``;
                the document is untouched.
        """
        match message:
            case Update(update):
                self._check_update(update)
                self._apply(peer, update, frame)
            case SyncStep2(update):
                self._check_update(update)
                self._apply(peer, update, None)
            case SyncStep1(state_vector):
                # Our own decoding first: Yrs reserves memory for whatever client count a
                # state vector claims, which a few hostile bytes make take a second.
                decode_state_vector(state_vector)
                if self.guard is not None:
                    self.guard.check_state_vector(state_vector, self.doc.get_state())
                try:
                    missing = self.doc.get_update(state_vector)
                except ValueError as exc:
                    raise InvalidPayload("invalid state vector") from exc
                peer.send(protocol.encode(SyncStep2(missing)))
            case Awareness(payload):
                self._receive_awareness(peer, payload, frame)
            case QueryAwareness():
                peer.send(_awareness_frame(self.awareness.entries()))
            case Event():
                # Relayed by sessions (collab.core.events) before the room; never the Doc's.
                raise ProtocolError("a room event reached the document")
            case Auth() | Saved():
                # Server-to-client messages; a client has no business sending them,
                # but stock clients never do and ignoring them harms nothing.
                log.debug("ignoring %s from %s", type(message).__name__, peer.id)

    def tick(self) -> None:
        """Expire silent presence and forward batched renewals. Call periodically."""
        now = self._clock()
        remote = self.awareness.owned_by(REMOTE) if self.relay is not None else set()
        removals = self.awareness.expire(now)
        if removals:
            self._broadcast(_awareness_frame(removals), exclude=None)
        gone = _ids(removals)
        if self._renewals:
            renewals = [e for e in self._renewals.values() if e.client_id not in gone]
            self._renewals.clear()
            if renewals:
                self._broadcast(_awareness_frame(renewals), exclude=None)
        if self.relay is not None:
            # Only what local editors own: another process's states are renewed (or
            # expired) by that process; announcing their expiry here could remove a
            # state whose editor is still there (after a Redis outage, say).
            relayed = [e for e in removals if e.client_id not in remote]
            relayed += [e for e in self._local_renewals.values() if e.client_id not in gone]
            if relayed:
                self.relay.awareness(self.name, protocol.encode_awareness(relayed))
        self._local_renewals.clear()

    def close(self) -> None:
        """Detach from the Doc; the room must not be used afterwards."""
        self.doc.unobserve(self._subscription)

    # -- internals ----------------------------------------------------------------------------

    def _check_update(self, update: bytes) -> None:
        check_update_header(update)
        if self.guard is not None:
            self.guard.check_update(update, self.doc.get_state())

    def _apply(self, peer: Peer, update: bytes, frame: bytes | None) -> None:
        metrics.UPDATES_RECEIVED.value += 1
        if peer.read_only:
            # Never applied, broadcast or logged, whatever it holds.
            if _would_change(self.doc, update):
                raise ReadOnly("read-only")
            return
        limit = self.max_bytes
        if limit is not None and self._size_bound + len(update) > limit:
            self._check_size(len(update), limit)
        self._delta = None
        try:
            with self.doc.transaction(origin=peer):
                self.doc.apply_update(update)
        except ValueError as exc:
            raise InvalidPayload("invalid update") from exc
        delta, self._delta = self._delta, None
        self._size_bound += len(update)
        if delta is None:
            # The Doc did not change: a duplicate, or held back (pending) until its
            # dependencies arrive. It is forwarded and logged then, as part of what the
            # Doc integrates with the update that completes it.
            if peer.wants_acks:
                self._ack_when_durable(peer)
            return
        if delta == _EMPTY_UPDATE:
            # Yrs showed items past a gap in their own client's clock (Yjs holds those
            # back) and the state vector did not move, so the transaction's update
            # (everything past the old state vector) names nothing. What arrived holds
            # those items: forward and log it, so pycrdt editors and a replay show what
            # this Doc shows. (Rare: one client's updates out of order. A held update
            # that Yrs shows along with them reaches editors with the next update that
            # moves the state vector, which then carries everything past the old one.)
            delta = update
        if frame is None or delta != update:
            # Forward what the Doc integrated, not what arrived, whenever they differ:
            # updates held back for a missing dependency are integrated (and logged)
            # along with the one that completed them, and editors need them too, or they
            # never get them. A step 2 often carries much that was not new (a whole
            # delete set; its frame is a step 2, so it is never forwarded as is). In
            # order, the Doc integrates exactly the bytes that arrived, so an update
            # frame goes on as it came: one comparison, no re-encoding. (Measured: of
            # 2,439 updates typed by two Yjs clients, 2,436 came out byte for byte; the
            # other three were deletions listing their two clients in another order.)
            frame = protocol.encode(Update(delta))
        self._broadcast(frame, exclude=peer)
        metrics.DELIVERIES_SENT.value += len(self.peers) - (peer in self.peers)
        if self._log is not None:
            on_durable = peer.saved if peer.wants_acks else None
            self._log.append(delta, peer.id, peer.user, on_durable)
        elif peer.wants_acks:
            peer.saved()
        if self.relay is not None:
            self.relay.update(self.name, delta)

    def _check_size(self, incoming: int, limit: int) -> None:
        # Close to the limit by the running bound: measure the state exactly (this
        # costs an encoding of the whole document, so only here), and refuse if the
        # state plus everything the update could add passes the limit.
        self._size_bound = len(self.doc.get_update())
        if self._size_bound + incoming > limit:
            raise DocumentTooLarge(f"the document would grow past {limit} bytes (max_doc_bytes)")

    def _ack_when_durable(self, peer: Peer) -> None:
        if self._log is None:
            peer.saved()
        else:
            self._log.when_durable(peer.saved)

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._delta = event.update

    def _receive_awareness(self, peer: Peer, payload: bytes, frame: bytes | None = None) -> None:
        try:
            entries = protocol.decode_awareness(payload)
        except ProtocolError as exc:
            raise InvalidPayload(f"invalid awareness update: {exc.reason}") from exc
        changes = self.awareness.apply(entries, owner=peer, now=self._clock())
        if changes.changed:
            whole = len(changes.changed) == len(entries)
            # A cursor move is one entry, and it changed: the frame it came in (decoded
            # and validated above) goes on as it came, as updates do; one encoding saved
            # per move (measured in docs/performance.md, presence phases).
            out = frame if whole and frame is not None else _awareness_frame(changes.changed)
            self._broadcast(out, exclude=peer)
            if self.relay is not None:
                relayed = payload if whole else protocol.encode_awareness(changes.changed)
                self.relay.awareness(self.name, relayed)
        for entry in changes.renewed:
            self._renewals[entry.client_id] = entry
            if self.relay is not None:
                self._local_renewals[entry.client_id] = entry
        for entry in changes.changed:
            self._renewals.pop(entry.client_id, None)
            self._local_renewals.pop(entry.client_id, None)

    # -- what other processes send (collab.core.relay) -----------------------------------------

    def receive_remote(self, update: bytes) -> None:
        """Apply an update that another process's editor sent (or a resync's step 2).

        What the Doc integrated goes to every local editor. It is not logged (the
        process whose editor sent it logs it) and not handed to the relay again.

        Raises:
            InvalidPayload: pycrdt cannot apply ``update`` (the Doc is unchanged).
        """
        if self.guard is not None:
            try:
                self.guard.check_update(update, self.doc.get_state())
            except DocumentDeleted as exc:
                # A process that has not noticed the deletion yet: its room is stale.
                log.warning("%s: dropped an update from another process: %s", self.name, exc)
                return
        self._delta = None
        try:
            with self.doc.transaction(origin=REMOTE):
                self.doc.apply_update(update)
        except ValueError as exc:
            raise InvalidPayload("invalid update from another process") from exc
        delta, self._delta = self._delta, None
        self._size_bound += len(update)  # checked by the process that accepted it
        if delta is None:
            return
        if delta == _EMPTY_UPDATE:
            delta = update  # see _apply: items past a gap in their client's clock
        self._broadcast(protocol.encode(Update(delta)), exclude=None)

    def receive_remote_awareness(self, payload: bytes) -> None:
        """Apply presence that another process's editors set; forward what changed.

        Raises:
            InvalidPayload: ``payload`` is not an awareness update.
        """
        try:
            entries = protocol.decode_awareness(payload)
        except ProtocolError as exc:
            raise InvalidPayload(f"invalid awareness update: {exc.reason}") from exc
        changes = self.awareness.apply(entries, owner=REMOTE, now=self._clock())
        if changes.changed:
            self._broadcast(_awareness_frame(changes.changed), exclude=None)
        for entry in changes.renewed:
            self._renewals[entry.client_id] = entry
        for entry in changes.changed:
            self._renewals.pop(entry.client_id, None)

    def local_awareness(self) -> bytes | None:
        """Every state local editors own, as one awareness update (``None``: there are none),
        for a process that catches up."""
        remote = self.awareness.owned_by(REMOTE)
        entries = [e for e in self.awareness.entries() if e.client_id not in remote]
        return protocol.encode_awareness(entries) if entries else None

    def _broadcast(self, frame: bytes, exclude: Peer | None) -> None:
        for peer in self.peers:
            if peer is not exclude:
                peer.send(frame)


#: An update that holds nothing (no structs, no deletions), as lib0 encodes it.
_EMPTY_UPDATE = b"\x00\x00"


def _would_change(doc: Doc[Any], update: bytes) -> bool:
    """Whether applying ``update`` would change ``doc`` (or hold something back for later).

    New structs show in the update's state vector; a struct-less update (a Yjs deletion,
    or a step 2 that brings nothing new) changes ``doc`` if it deletes a range ``doc`` has
    not deleted. An update with structs ``doc`` already has is a duplicate: harmless.
    Costs a read of ``doc``'s delete set, and runs only for read-only editors.
    """
    try:
        theirs = protocol.decode_state_vector(get_state(update))
    except (ValueError, ProtocolError) as exc:
        raise InvalidPayload("invalid update") from exc
    ours = protocol.decode_state_vector(doc.get_state())
    if any(clock > ours.get(client, 0) for client, clock in theirs.items()):
        return True
    try:
        deletes = protocol.decode_delete_set(update)
    except ProtocolError as exc:
        raise InvalidPayload("invalid update") from exc
    if not deletes:
        return False
    deleted = protocol.decode_delete_set(doc.get_update(doc.get_state())) or {}
    return any(
        not _covered(start, length, deleted.get(client, []))
        for client, ranges in deletes.items()
        for start, length in ranges
    )


def _covered(start: int, length: int, ranges: list[tuple[int, int]]) -> bool:
    """Whether ``[start, start + length)`` lies within the union of ``ranges``."""
    end = start + length
    for begin, size in sorted(ranges):
        if begin > start:
            break
        start = max(start, begin + size)
        if start >= end:
            return True
    return start >= end


def _awareness_frame(entries: list[AwarenessEntry]) -> bytes:
    return protocol.encode(Awareness(protocol.encode_awareness(entries)))


def _ids(entries: list[AwarenessEntry]) -> set[int]:
    return {e.client_id for e in entries}
