"""collab.room: plain method calls in, frames in editors' outboxes out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab.core.room import Room
from collab.errors import InvalidPayload, ReadOnly
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
    frames: list[bytes] = field(default_factory=list)
    acks: int = 0

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)
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

    @property
    def ending(self) -> asyncio.Future[None]:
        """Never done: this log accepts everything."""
        return asyncio.get_running_loop().create_future()

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
    doc: Doc[Any] = Doc()
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
    replica: Doc[Any] = Doc()
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
    assert b.frames[-1] is frame  # the fast path: no re-encoding
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
    client: Doc[Any] = Doc()
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
    log = ListLog()
    room = make_room(log)
    peer, other = FakePeer("r", read_only=True), FakePeer("w")
    room.join(peer)
    room.join(other)
    before = len(other.frames)
    with pytest.raises(ReadOnly):
        room.receive(peer, Update(edit("no")))
    with pytest.raises(ReadOnly):
        room.receive(peer, SyncStep2(edit("nor this")))
    assert str(room.doc.get("text", type=Text)) == ""
    assert log.entries == [] and len(other.frames) == before


def test_read_only_editor_changes_nothing_with_a_deletion() -> None:
    log = ListLog()
    room = make_room(log)
    writer, reader = FakePeer("w"), FakePeer("r", read_only=True)
    room.join(writer)
    room.join(reader)
    room.receive(writer, Update(edit("abc")))
    replica: Doc[Any] = Doc()
    replica.apply_update(room.doc.get_update())
    before = replica.get_state()
    del replica.get("text", type=Text)[0:1]
    deletion = replica.get_update(before)
    with pytest.raises(ReadOnly):
        room.receive(reader, Update(deletion))
    assert str(room.doc.get("text", type=Text)) == "abc" and len(log.entries) == 1
    # Once a writer made the same deletion, the reader's copy of it is harmless.
    room.receive(writer, Update(deletion))
    room.receive(reader, Update(deletion))
    assert str(room.doc.get("text", type=Text)) == "bc"


def test_read_only_editor_may_send_what_the_document_has() -> None:
    room = make_room()
    writer, reader = FakePeer("w"), FakePeer("r", read_only=True)
    room.join(writer)
    room.receive(writer, Update(edit("abc")))
    room.join(reader)
    # A stock client's step 2 on connect holds nothing new: it is no attempt to write.
    room.receive(reader, SyncStep2(b"\x00\x00"))
    room.receive(reader, SyncStep2(room.doc.get_update()))
    room.receive(reader, Update(room.doc.get_update(room.doc.get_state())))
    assert str(room.doc.get("text", type=Text)) == "abc"


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


def test_a_changed_awareness_frame_goes_on_as_it_came() -> None:
    room = make_room()
    a, b = FakePeer("a"), FakePeer("b")
    room.join(a)
    room.join(b)
    move = protocol.encode(awareness(7, 1, '{"cursor":1}'))
    room.receive(a, protocol.decode(move), move)
    assert b.frames[-1] is move  # the fast path: validated, not re-encoded
    # Two entries of which one changed: only the change goes on, encoded afresh.
    both = protocol.encode(
        Awareness(
            protocol.encode_awareness(
                [AwarenessEntry(7, 1, '{"cursor":1}'), AwarenessEntry(8, 1, '{"cursor":2}')]
            )
        )
    )
    room.receive(a, protocol.decode(both), both)
    assert b.frames[-1] is not both
    assert b.outbox[-1] == awareness(8, 1, '{"cursor":2}')


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


def chain(*parts: str) -> list[bytes]:
    """Updates of one editor typing ``parts`` one after another: each depends on the last."""
    doc: Doc[Any] = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for part in parts:
        text.insert(len(text), part)
    return updates


class LiveEditor:
    """A FakePeer with a Doc that applies exactly the updates the room sent it."""

    def __init__(self, room: Room, name: str = "live") -> None:
        self.peer = FakePeer(name)
        self.doc: Doc[Any] = Doc()
        room.join(self.peer)
        # As y-websocket does: answer the room's step 1 with ours; its step 2 follows.
        room.receive(self.peer, SyncStep1(self.doc.get_state()))

    def text(self) -> str:
        for message in self.peer.outbox:
            if isinstance(message, Update | SyncStep2):
                self.doc.apply_update(message.update)
        self.peer.outbox.clear()
        return str(self.doc.get("text", type=Text))


def test_an_update_held_for_its_dependency_reaches_live_editors() -> None:
    log = ListLog()
    room = make_room(log)
    sender = FakePeer("a")
    room.join(sender)
    live = LiveEditor(room)
    one, two = chain("one ", "two ")
    room.receive(sender, Update(two), protocol.encode(Update(two)))
    assert live.text() == "" == str(room.doc.get("text", type=Text))
    room.receive(sender, Update(one), protocol.encode(Update(one)))
    assert str(room.doc.get("text", type=Text)) == "one two "
    assert live.text() == "one two "


#: One editor's edits: insert ``str`` at a position, or delete that many characters at one
#: (positions are taken modulo the text's length, so every edit applies). The first edit
#: inserts, so that there is always something to deliver.
insertion = st.tuples(st.just("insert"), st.integers(0, 50), st.text("abc", min_size=1, max_size=3))
deletion = st.tuples(st.just("delete"), st.integers(0, 50), st.integers(1, 3))
edits = st.builds(
    lambda first, rest: [first, *rest], insertion, st.lists(insertion | deletion, max_size=7)
)


Edit = tuple[str, int, str | int]


def typed(edits: list[Edit]) -> tuple[list[bytes], str]:
    """The updates of editors making ``edits`` in turn, each edit by a new client that has
    seen the edits before it (so each update may depend on any earlier one), and the
    text they make. One client per edit: see test_yrs_loses_an_update_held_past_a_gap."""
    source: Doc[Any] = Doc()
    updates: list[bytes] = []
    for change in edits:
        editor: Doc[Any] = Doc()
        editor.apply_update(source.get_update())
        made = _made_by(editor, change)
        for update in made:
            source.apply_update(update)
        updates += made
    return updates, str(source.get("text", type=Text))


def _made_by(editor: Doc[Any], edit: Edit) -> list[bytes]:
    text = editor.get("text", type=Text)
    made: list[bytes] = []
    subscription = editor.observe(lambda event: made.append(event.update))
    match edit:
        case ("insert", at, str(chars)):
            text.insert(at % (len(text) + 1), chars)
        case ("delete", at, int(count)) if len(text):
            start = at % len(text)
            del text[start : min(len(text), start + count)]
    editor.unobserve(subscription)
    return made


@given(ops=edits, data=st.data())
def test_live_editors_follow_the_server_whatever_order_updates_arrive_in(
    ops: list[Edit], data: st.DataObject
) -> None:
    updates, final = typed(ops)
    order = data.draw(st.permutations(range(len(updates))), label="order")
    repeats = data.draw(
        st.lists(st.tuples(st.integers(0, len(order)), st.sampled_from(range(len(updates))))),
        label="duplicates (position, update)",
    )
    for position, index in sorted(repeats, reverse=True):
        order.insert(position, index)
    late_at = data.draw(st.integers(0, len(order)), label="a second editor joins before step")
    log = ListLog()
    room = make_room(log)
    sender = FakePeer("a")
    room.join(sender)
    live = [LiveEditor(room)]
    for step, index in enumerate(order):
        if step == late_at:
            live.append(LiveEditor(room, "late"))
        update = updates[index]
        room.receive(sender, Update(update), protocol.encode(Update(update)))
        server_text = str(room.doc.get("text", type=Text))
        assert [editor.text() for editor in live] == [server_text] * len(live)
        # The log holds what the Doc integrated: replaying it gives the server's text.
        logged: Doc[Any] = Doc()
        for entry, _ in log.entries:
            logged.apply_update(entry)
        assert str(logged.get("text", type=Text)) == server_text
    assert str(room.doc.get("text", type=Text)) == final


def test_an_item_past_a_gap_in_its_clients_clock_is_forwarded_when_shown() -> None:
    """Yrs shows an item whose own client's earlier update is missing (when its
    neighbours are there); Yjs would hold it back. The transaction's update is empty
    then; the room still forwards and logs what the Doc shows."""
    doc: Doc[Any] = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for part in ("a", "b", "c"):
        text.insert(len(text), part)
    text.insert(0, "X")  # depends on "a" only, but comes after "c" in its client's clock
    a, b, c, x = updates
    log = ListLog()
    room = make_room(log)
    sender = FakePeer("s")
    room.join(sender)
    room.receive(sender, Update(a))
    live = LiveEditor(room)
    assert live.text() == "a"
    for update, shown in ((x, "Xa"), (b, "Xab"), (c, "Xabc")):
        room.receive(sender, Update(update))
        assert live.text() == shown == str(room.doc.get("text", type=Text))
    logged: Doc[Any] = Doc()
    for entry, _ in log.entries:
        logged.apply_update(entry)
    assert str(logged.get("text", type=Text)) == "Xabc" and len(log.entries) == 4


@pytest.mark.xfail(strict=True, reason="pycrdt 0.14.13 (yrs 0.28) drops a held update")
def test_yrs_loses_an_update_held_past_a_gap() -> None:
    """Upstream bug, found by the property test above when one client made every edit.

    Updates 0-3 typed at the start, 4 and 5 too, 6 at the end. Applied as 0 1 2 3 5 6 4:
    5 waits for 4 (its right neighbour); 6 only has a gap in its clock, so Yrs shows it
    at once, and drops the held 5 on the way. Yjs gives "543X210". This is why the
    property test makes each edit with a new client (no clock gaps): collab must not
    pass updates of one client to a Doc out of order until this is fixed upstream.
    """
    doc: Doc[Any] = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for char in "012345":
        text.insert(0, char)
    text.insert(len(text), "X")
    server: Doc[Any] = Doc()
    for index in (0, 1, 2, 3, 5, 6, 4):
        server.apply_update(updates[index])
    assert str(server.get("text", type=Text)) == "543210X"
