"""collab.room: plain method calls in, frames in editors' outboxes out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from pycrdt import Doc, Text

from collab.core.room import Room
from collab.errors import Forbidden, InvalidPayload
from collab.wire import protocol
from collab.wire.protocol import Awareness, AwarenessEntry, SyncStep1, SyncStep2, Update


@dataclass(eq=False)
class FakePeer:
    """An editor whose outbox is a list: the room's only view of a connection."""

    id: str
    user: str | None = None
    read_only: bool = False
    wants_acks: bool = False
    outbox: list[protocol.Message] = field(default_factory=list)
    acks: int = 0

    def send(self, frame: bytes) -> None:
        self.outbox.append(protocol.decode(frame))

    def saved(self) -> None:
        self.acks += 1


@dataclass
class ListLog:
    entries: list[tuple[bytes, str]] = field(default_factory=list)
    callbacks: list[Callable[[], None]] = field(default_factory=list)

    def append(
        self,
        update: bytes,
        client: str,
        user: str | None = None,
        on_durable: Callable[[], None] | None = None,
    ) -> None:
        self.entries.append((update, client))
        if on_durable is not None:
            self.callbacks.append(on_durable)

    def when_durable(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    def commit(self) -> None:
        for callback in self.callbacks:
            callback()
        self.callbacks.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_room(log: ListLog | None = None, clock: Clock | None = None) -> Room:
    room = Room("doc", Doc(), awareness_timeout=30.0, clock=clock or Clock())
    if log is not None:
        room.attach_log(log)
    return room


def edit(text: str) -> bytes:
    doc: Doc = Doc()
    doc.get("text", type=Text).insert(0, text)
    return doc.get_update()


def test_join_sends_state_vector_then_step2_answers_with_what_is_missing() -> None:
    room = make_room()
    writer, reader = FakePeer("w"), FakePeer("r")
    room.join(writer)
    assert writer.outbox == [SyncStep1(room.doc.get_state())]
    room.receive(writer, Update(edit("hello")))
    room.join(reader)
    room.receive(reader, SyncStep1(Doc().get_state()))
    step2 = reader.outbox[-1]
    assert isinstance(step2, SyncStep2)
    replica: Doc = Doc()
    replica.apply_update(step2.update)
    assert str(replica.get("text", type=Text)) == "hello"


def test_update_is_applied_once_forwarded_verbatim_never_echoed() -> None:
    log = ListLog()
    room = make_room(log)
    a, b, c = FakePeer("a"), FakePeer("b"), FakePeer("c")
    for peer in (a, b, c):
        room.join(peer)
        peer.outbox.clear()
    update = edit("x")
    frame = protocol.encode(Update(update))
    room.receive(a, Update(update), frame)
    assert a.outbox == []
    assert b.outbox == [Update(update)] and c.outbox == [Update(update)]
    assert [client for _, client in log.entries] == ["a"]
    # The same update again changes nothing: not forwarded, not logged.
    room.receive(b, Update(update), frame)
    assert a.outbox == [] and c.outbox == [Update(update)]
    assert len(log.entries) == 1


def test_step2_forwards_only_what_was_new() -> None:
    room = make_room(ListLog())
    a, b = FakePeer("a"), FakePeer("b")
    room.join(a)
    room.join(b)
    first = edit("one")
    room.receive(a, Update(first))
    client: Doc = Doc()
    client.apply_update(first)
    client.get("text", type=Text).insert(3, " two")
    b.outbox.clear()
    room.receive(a, SyncStep2(client.get_update()))
    [forwarded] = b.outbox
    assert isinstance(forwarded, Update)
    assert len(forwarded.update) < len(client.get_update())
    assert str(room.doc.get("text", type=Text)) == "one two"


@pytest.mark.parametrize(
    "bad",
    [b"\xff\xfe\xfd", edit("hello world")[:-4], b""],
    ids=["garbage", "cut-short", "empty"],
)
def test_bad_update_raises_and_leaves_document_unchanged(bad: bytes) -> None:
    log = ListLog()
    room = make_room(log)
    a, b = FakePeer("a"), FakePeer("b")
    room.join(a)
    room.join(b)
    room.receive(a, Update(edit("keep")))
    before = room.doc.get_update()
    b.outbox.clear()
    with pytest.raises(InvalidPayload):
        room.receive(a, Update(bad))
    assert room.doc.get_update() == before
    assert b.outbox == [] and len(log.entries) == 1


def test_garbage_state_vector_is_invalid_payload() -> None:
    room = make_room()
    peer = FakePeer("a")
    room.join(peer)
    with pytest.raises(InvalidPayload, match="state vector"):
        room.receive(peer, SyncStep1(b"\x05\x01"))


def test_read_only_editor_cannot_write() -> None:
    room = make_room()
    peer = FakePeer("r", read_only=True)
    room.join(peer)
    with pytest.raises(Forbidden):
        room.receive(peer, Update(edit("no")))
    assert str(room.doc.get("text", type=Text)) == ""


def test_acks_fire_when_the_log_commits() -> None:
    log = ListLog()
    room = make_room(log)
    peer = FakePeer("a", wants_acks=True)
    room.join(peer)
    update = edit("x")
    room.receive(peer, Update(update))
    room.receive(peer, Update(update))  # a duplicate is acked with the log, too
    assert peer.acks == 0
    log.commit()
    assert peer.acks == 2


def awareness(client_id: int, clock: int, state: str) -> Awareness:
    return Awareness(protocol.encode_awareness([AwarenessEntry(client_id, clock, state)]))


def test_awareness_forwards_changes_batches_renewals_and_announces_departures() -> None:
    clock = Clock()
    room = make_room(clock=clock)
    a, b = FakePeer("a"), FakePeer("b")
    room.join(a)
    room.join(b)
    b.outbox.clear()
    room.receive(a, awareness(7, 1, '{"name":"Ann"}'))
    assert b.outbox == [awareness(7, 1, '{"name":"Ann"}')]
    # A renewal (same state) waits for the tick; a stale clock is dropped.
    room.receive(a, awareness(7, 2, '{"name":"Ann"}'))
    room.receive(a, awareness(7, 1, '{"name":"Eve"}'))
    assert len(b.outbox) == 1
    room.tick()
    assert b.outbox[-1] == awareness(7, 2, '{"name":"Ann"}')
    # A newcomer is told who is here.
    c = FakePeer("c")
    room.join(c)
    assert c.outbox[-1] == awareness(7, 2, '{"name":"Ann"}')
    room.leave(a)
    assert b.outbox[-1] == awareness(7, 3, "null")
    assert room.awareness.entries() == []


def test_silent_presence_expires() -> None:
    clock = Clock()
    room = make_room(clock=clock)
    a, b = FakePeer("a"), FakePeer("b")
    room.join(a)
    room.join(b)
    room.receive(a, awareness(9, 4, "{}"))
    clock.now += 29
    room.tick()
    assert len(room.awareness) == 1
    clock.now += 2
    room.tick()
    assert len(room.awareness) == 0
    assert b.outbox[-1] == awareness(9, 5, "null")


def test_garbage_awareness_is_not_relayed() -> None:
    room = make_room()
    a, b = FakePeer("a"), FakePeer("b")
    room.join(a)
    room.join(b)
    b.outbox.clear()
    with pytest.raises(InvalidPayload):
        room.receive(a, Awareness(b"\x01\x07\x01\x03{x}"))
    assert b.outbox == []


def test_presence_renewals_cost_one_frame_per_editor_per_tick() -> None:
    """Renewals are batched: n editors renewing cost n frames per tick, not n squared."""
    room = make_room()
    peers = [FakePeer(str(i)) for i in range(20)]
    for i, peer in enumerate(peers):
        room.join(peer)
        room.receive(peer, awareness(i, 1, f'{{"n":{i}}}'))
    for peer in peers:
        peer.outbox.clear()
    for i, peer in enumerate(peers):
        room.receive(peer, awareness(i, 2, f'{{"n":{i}}}'))  # same state, higher clock
    assert sum(len(p.outbox) for p in peers) == 0
    room.tick()
    assert all(len(p.outbox) == 1 for p in peers)
    batch = peers[0].outbox[0]
    assert isinstance(batch, Awareness)
    assert sorted(e.client_id for e in protocol.decode_awareness(batch.payload)) == list(range(20))
