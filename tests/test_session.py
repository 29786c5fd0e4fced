"""collab.core.session: bytes in, frames out, through a fake transport.

The session core is the one place that joins rooms, runs the message loop,
bounds what waits for a slow editor, acknowledges saves and maps errors to close
codes, for every transport. These tests drive it as a transport would, with a
real MemoryStore and Journal underneath and no sockets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pycrdt import Doc, Text

from collab.config import Config
from collab.core.gate import DocumentEntry, Gate
from collab.core.journal import Journal
from collab.core.rooms import Rooms
from collab.core.session import CONGESTION_BYTES, Session
from collab.errors import InvalidName, StoreError
from collab.store.memory import MemoryStore
from collab.wire import protocol
from collab.wire.protocol import Awareness, AwarenessEntry, Saved, SyncStep1, SyncStep2, Update

CONFIG = Config(db_url="memory://", unload_grace_seconds=0.01, commit_interval=0.001)


@dataclass(eq=False)
class FakeTransport:
    """Records what the session writes; ``waiting`` is what it reports as buffered."""

    written: list[bytes] = field(default_factory=list)
    closed: tuple[int, str] | None = None
    waiting: int = 0
    congested: bool = True

    def write(self, message: bytes) -> None:
        assert self.closed is None, "a session must not write after closing"
        self.written.append(message)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    @property
    def buffered(self) -> int:
        return self.waiting

    def messages(self) -> list[protocol.Message]:
        return [protocol.decode(frame) for frame in self.written]


@pytest.fixture
async def rooms() -> AsyncIterator[Rooms]:
    store = MemoryStore()
    await store.open()
    async with Journal(store, CONFIG) as journal:
        rooms = Rooms(CONFIG, store, journal)
        yield rooms
        await rooms.close()


async def joined(
    rooms: Rooms, name: str = "notes", acks: bool = False
) -> tuple[Session, FakeTransport]:
    transport = FakeTransport()
    session = Session(transport, name, rooms, CONFIG, wants_acks=acks)
    assert await session.start()
    return session, transport


def edit(text: str) -> bytes:
    doc: Doc[Any] = Doc()
    doc.get("text", type=Text).insert(0, text)
    return protocol.encode(Update(doc.get_update()))


async def test_start_greets_with_the_state_vector(rooms: Rooms) -> None:
    _, transport = await joined(rooms)
    [greeting] = transport.messages()
    assert isinstance(greeting, SyncStep1)


async def test_an_update_reaches_the_others_not_the_sender(rooms: Rooms) -> None:
    alice, to_alice = await joined(rooms)
    _, to_bob = await joined(rooms)
    frame = edit("hello")
    alice.receive(frame)
    assert to_bob.written[-1] == frame  # forwarded as it came
    assert all(not isinstance(m, Update) for m in to_alice.messages())
    room = rooms.get("notes")
    assert room is not None and str(room.doc.get("text", type=Text)) == "hello"


async def test_a_step_1_is_answered_with_what_the_editor_lacks(rooms: Rooms) -> None:
    alice, _ = await joined(rooms)
    alice.receive(edit("abc"))
    _, to_bob = await joined(rooms)
    bob = rooms.get("notes")
    assert bob is not None
    session = next(p for p in bob.peers if p is not alice)
    assert isinstance(session, Session)
    session.receive(protocol.encode(SyncStep1(Doc().get_state())))
    answer = to_bob.messages()[-1]
    assert isinstance(answer, SyncStep2)
    doc: Doc[Any] = Doc()
    doc.apply_update(answer.update)
    assert str(doc.get("text", type=Text)) == "abc"


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        ("a text frame", 1002, "text frames"),
        (b"\xff\xff\xff", 1002, ""),
        (protocol.encode(Update(b"\x01\x02garbage")), 1007, "invalid update"),
        (protocol.encode(Awareness(b"\x05")), 1007, "awareness"),
    ],
)
async def test_bad_input_closes_that_session_with_its_code_and_a_logged_reason(
    rooms: Rooms, data: bytes | str, code: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    offender, to_offender = await joined(rooms)
    bystander, to_bystander = await joined(rooms)
    bystander.receive(edit("kept"))
    with caplog.at_level(logging.WARNING, logger="collab.session"):
        offender.receive(data)
    assert to_offender.closed is not None and to_offender.closed[0] == code
    assert reason in to_offender.closed[1]
    assert any(f"({code})" in record.getMessage() for record in caplog.records)
    assert offender.closed and not bystander.closed
    offender.receive(edit("ignored"))  # after the close, nothing is applied
    room = rooms.get("notes")
    assert room is not None and str(room.doc.get("text", type=Text)) == "kept"
    bystander.receive(edit("!"))  # the others carry on
    assert to_bystander.closed is None


async def test_a_slow_editor_is_closed_with_1013_and_the_sender_is_not(rooms: Rooms) -> None:
    writer, to_writer = await joined(rooms)
    _, to_slow = await joined(rooms)
    to_slow.waiting = CONFIG.outbox_max_bytes  # its peer stopped reading
    writer.receive(edit("x" * 100))
    assert to_slow.closed is not None and to_slow.closed[0] == 1013
    assert "outbox" in to_slow.closed[1]
    assert to_writer.closed is None
    writer.receive(edit("more"))  # and nothing more is written to the slow one
    assert to_slow.closed[0] == 1013


async def test_an_uncongested_transport_is_still_measured_for_a_frame_that_could_pass(
    rooms: Rooms,
) -> None:
    # Not congested: at most CONGESTION_BYTES wait. A frame that, with those, could pass
    # the limit is measured all the same; a small one is not (the transport's word).
    writer, _ = await joined(rooms)
    _, to_reader = await joined(rooms)
    to_reader.congested = False
    to_reader.waiting = CONGESTION_BYTES
    writer.receive(edit("small"))
    assert to_reader.closed is None
    writer.receive(edit("z" * (CONFIG.outbox_max_bytes - CONGESTION_BYTES)))
    assert to_reader.closed is not None and to_reader.closed[0] == 1013


async def test_one_big_message_into_an_empty_buffer_is_admitted(rooms: Rooms) -> None:
    writer, _ = await joined(rooms)
    _, to_reader = await joined(rooms)
    big = edit("y" * (CONFIG.outbox_max_bytes // 4))
    to_reader.waiting = 0
    writer.receive(big)
    assert to_reader.closed is None and to_reader.written[-1] == big


async def test_saved_acks_come_once_durable_and_coalesced(rooms: Rooms) -> None:
    alice, to_alice = await joined(rooms, acks=True)
    for i in range(5):
        alice.receive(edit(f"{i}"))
    async with asyncio.timeout(5):
        while not any(isinstance(m, Saved) and m.count == 5 for m in to_alice.messages()):
            await asyncio.sleep(0.005)
    acks = [m for m in to_alice.messages() if isinstance(m, Saved)]
    assert len(acks) <= 2  # one frame per commit, not one per update


async def test_end_leaves_the_room_and_announces_the_departure(rooms: Rooms) -> None:
    alice, _ = await joined(rooms)
    _, to_bob = await joined(rooms)
    state = protocol.encode_awareness([AwarenessEntry(7, 1, '{"name":"alice"}')])
    alice.receive(protocol.encode(Awareness(state)))
    alice.end(1000, "bye")
    alice.end()  # idempotent
    room = rooms.get("notes")
    assert room is not None and alice not in room.peers
    last = to_bob.messages()[-1]
    assert isinstance(last, Awareness)
    [gone] = protocol.decode_awareness(last.payload)
    assert gone.client_id == 7 and gone.state == "null"


async def test_an_abnormal_end_is_logged_and_a_normal_one_is_not(
    rooms: Rooms, caplog: pytest.LogCaptureFixture
) -> None:
    normal, _ = await joined(rooms)
    refused, _ = await joined(rooms)
    with caplog.at_level(logging.WARNING, logger="collab.session"):
        normal.end(1000, "")
        refused.end(1009, "frame too big")
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 and "frame too big (1009)" in messages[0]


async def test_a_store_that_cannot_load_closes_with_1013(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()  # never opened: every load fails
    async with Journal(store, CONFIG) as journal:
        rooms = Rooms(CONFIG, store, journal)
        transport = FakeTransport()
        session = Session(transport, "notes", rooms, CONFIG)
        assert not await session.start()
        assert transport.closed == (1013, "document unavailable")
        assert "notes" not in rooms
        with pytest.raises(StoreError):
            await store.load("notes")


def test_the_gate_refuses_bad_names_before_any_session(rooms: Rooms) -> None:
    gate = Gate(rooms, CONFIG)
    for path in ("/a//b", "/bad%09name", "/..", "/a/./b", "/x%2Fy"):
        with pytest.raises(InvalidName) as info:
            gate.admit(path, "", {})
        assert info.value.http_status == 400
    entry = gate.admit("/team-a/json:notebook:1", "saved=1", {})
    assert isinstance(entry, DocumentEntry)
    assert entry.name == "team-a/json:notebook:1" and entry.wants_acks is True
