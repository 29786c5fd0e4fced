"""Typed room events (?events=1): relayed between the editors of one document, stamped
with their sender by the server, never stored, never sent to clients that did not ask.

"Reaches nobody else" is shown without waiting for a silence: the server relays each
event synchronously when it reads it, and frames to one connection keep their order,
so once a later frame (a marker event or an update) reaches a connection, any event
wrongly sent to it earlier would have arrived first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from collab.client import Client, RoomEvent, connect
from collab.config import Config
from collab.core.journal import Journal
from collab.core.rooms import Rooms
from collab.core.session import Identity, Session
from collab.store.memory import MemoryStore
from collab.wire import protocol
from collab.wire.protocol import Auth, Event, SyncStep1, Update
from tests.conftest import ServeKind, doc_url
from tests.interop.node_peer import NodePeer
from tests.servers import RunningServer as Server
from tests.test_session import FakeTransport


def nested(levels: int) -> Any:
    value: Any = "deep"
    for _ in range(levels):
        value = [value]
    return value


async def next_event(client: Client, timeout: float = 5.0) -> RoomEvent:
    events: AsyncIterator[RoomEvent] = client.events()
    async with asyncio.timeout(timeout):
        return await anext(events)


async def ready(client: Client) -> str:
    """Wait until ``client`` is synced and knows its connection id; return the id."""
    await client.wait_for(lambda: client.synced and client.connection_id is not None)
    assert client.connection_id is not None
    return client.connection_id


async def test_editors_of_one_document_exchange_stamped_events(server: Server) -> None:
    async with (
        connect(doc_url(server, "room"), events=True) as alice,
        connect(doc_url(server, "room"), events=True) as bob,
        connect(doc_url(server, "elsewhere"), events=True) as carol,
        connect(doc_url(server, "elsewhere"), events=True) as dave,
    ):
        alice_id, bob_id = await ready(alice), await ready(bob)
        await ready(carol)
        await ready(dave)
        assert alice_id != bob_id

        await alice.send_event({"typing": True, "name": "Alice"})
        got = await next_event(bob)
        assert (got.sender, got.data, got.user, got.to) == (
            alice_id,
            {"typing": True, "name": "Alice"},
            None,
            None,
        )
        await bob.send_event(["a", 1, None])
        back = await next_event(alice)
        assert (back.sender, back.data) == (bob_id, ["a", 1, None])

        # Nobody on another document got either; nor did the senders get their own.
        await dave.send_event("marker")
        first = await next_event(carol)
        assert first.data == "marker"
        assert list(alice._events) == [] and list(bob._events) == []


async def test_an_event_to_one_connection_reaches_only_it(server: Server) -> None:
    url = doc_url(server, "direct")
    async with (
        connect(url, events=True) as alice,
        connect(url, events=True) as bob,
        connect(url, events=True) as carol,
    ):
        alice_id = await ready(alice)
        await ready(bob)
        carol_id = await ready(carol)

        await alice.send_event({"hello": "carol"}, to=carol_id)
        await alice.send_event("everyone")
        to_carol = await next_event(carol)
        assert (to_carol.sender, to_carol.data, to_carol.to) == (
            alice_id,
            {"hello": "carol"},
            carol_id,
        )
        assert (await next_event(carol)).data == "everyone"
        assert (await next_event(bob)).data == "everyone"  # bob's first is the broadcast

        # A `to` naming nobody here reaches nobody (and costs the sender nothing).
        await alice.send_event("lost", to="00000000")
        await alice.send_event("after")
        assert (await next_event(bob)).data == "after"
        assert alice.connected


async def test_events_are_not_stored_and_not_replayed_to_a_late_joiner(server: Server) -> None:
    url = doc_url(server, "ephemeral")
    async with (
        connect(url, events=True, saved_acks=True) as alice,
        connect(url, events=True) as bob,
    ):
        await ready(alice)
        await ready(bob)
        await alice.send_event("before")
        assert (await next_event(bob)).data == "before"
        async with connect(url, events=True) as late:
            await ready(late)
            await alice.send_event("now")
            assert (await next_event(late)).data == "now"
            alice.doc.get("text", type=Text).insert(0, "one edit")
            await alice.wait_saved()  # durable, with anything logged before it
            entries = (await server.store.load("ephemeral")).entries
            assert [entry.client for entry in entries] == [alice.connection_id]


async def test_a_stock_client_on_the_document_is_sent_no_event(server: Server) -> None:
    url = doc_url(server, "mixed")
    async with (
        NodePeer(f"ws://127.0.0.1:{server.port}", "mixed") as stock,
        connect(url, events=True) as alice,
        connect(url, events=True) as bob,
    ):
        await stock.wait_synced()
        await ready(alice)
        await ready(bob)
        await alice.send_event({"typing": True})
        assert (await next_event(bob)).data == {"typing": True}
        alice.doc.get("text", type=Text).insert(0, "after the event")
        await stock.wait_text("after the event")

        types, logged = await stock.seen()
        assert 0 in types  # it did see frames (sync), and nothing it does not know
        assert all(t in (0, 1, 2, 3) for t in types), types
        assert logged == []


async def raw_events_socket(url: str) -> Any:
    ws = await ws_connect(url, compression=None)
    await ws.send(protocol.encode(SyncStep1(b"\x00")))
    return ws


async def closed_with(ws: Any) -> int:
    """Read until the server closes ``ws``; the close code it sent."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None
    return int(closed.value.rcvd.code)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"data": "hi", "sender": {"id": "forged", "user": "admin"}}, 1007),
        ({"data": "hi", "from": "server"}, 1007),
        ({"to": "x"}, 1007),
        ({"data": "hi", "to": 7}, 1007),
        (["data"], 1007),
        ({"data": float("nan")}, 1007),
        ({"data": nested(40)}, 1007),
    ],
)
async def test_a_forged_or_malformed_event_is_refused_and_relays_nothing(
    server: Server, body: Any, code: int
) -> None:
    url = doc_url(server, "forgery")
    async with connect(url, events=True) as victim, connect(url, events=True) as friend:
        await ready(victim)
        friend_id = await ready(friend)
        ws = await raw_events_socket(url + "?events=1")
        await ws.send(protocol.encode(Event(json.dumps(body))))
        assert await closed_with(ws) == code
        await friend.send_event("genuine")
        got = await next_event(victim)
        assert (got.sender, got.data) == (friend_id, "genuine")


async def test_a_connection_that_did_not_ask_may_not_send_events(server: Server) -> None:
    url = doc_url(server, "unasked")
    async with connect(url, events=True) as watcher:
        await ready(watcher)
        ws = await raw_events_socket(url)
        await ws.send(protocol.encode(Event(json.dumps({"data": "sneaky"}))))
        assert await closed_with(ws) == 1002
        assert list(watcher._events) == []


async def test_events_are_bounded_in_size_and_rate(config: Config, serve_kind: ServeKind) -> None:
    limits = config.replace(event_max_bytes=1000, event_messages_per_second=0.001, event_burst=3)
    async with serve_kind(limits) as server:
        url = doc_url(server, "bounded") + "?events=1"
        big = await raw_events_socket(url)
        await big.send(protocol.encode(Event(json.dumps({"data": "x" * 1000}))))
        assert await closed_with(big) == 1009

        fast = await raw_events_socket(url)
        for i in range(4):
            await fast.send(protocol.encode(Event(json.dumps({"data": i}))))
        assert await closed_with(fast) == 1008

        name = doc_url(server, "bounded")
        async with connect(name, events=True) as calm, connect(name, events=True) as seer:
            await ready(calm)
            await ready(seer)
            for i in range(3):  # the burst is admitted
                await calm.send_event(i)
            assert [(await next_event(seer)).data for _ in range(3)] == [0, 1, 2]


async def test_a_read_only_editor_may_send_events_but_not_edits() -> None:
    config = Config(db_url="memory://", unload_grace_seconds=0.01, commit_interval=0.001)
    store = MemoryStore()
    await store.open()
    async with Journal(store, config) as journal:
        rooms = Rooms(config, store, journal)
        reader_out, writer_out = FakeTransport(), FakeTransport()
        reader = Session(
            reader_out, "ro", rooms, config, wants_events=True, identity=Identity("ann", True)
        )
        writer = Session(writer_out, "ro", rooms, config, wants_events=True)
        assert await reader.start() and await writer.start()
        reader.receive(protocol.encode(Event(json.dumps({"data": "hi"}))))
        last = protocol.decode(writer_out.written[-1])
        assert isinstance(last, Event)
        assert json.loads(last.payload) == {
            "sender": {"id": reader.id, "user": "ann"},
            "data": "hi",
        }
        assert reader_out.closed is None
        replica: Doc[Any] = Doc()
        replica.get("text", type=Text).insert(0, "no")
        reader.receive(protocol.encode(Update(replica.get_update())))
        assert reader_out.closed is None  # refused with the auth message, never closed
        assert protocol.decode(reader_out.written[-1]) == Auth("read-only")
        told = len(reader_out.written)
        replica.get("text", type=Text).insert(0, "again ")
        reader.receive(protocol.encode(Update(replica.get_update())))
        assert len(reader_out.written) == told and reader_out.closed is None  # told once
        assert rooms.get("ro") is not None
        assert str(rooms.get("ro").doc.get("text", type=Text)) == ""  # type: ignore[union-attr]
        reader.end()
        writer.end()
        await rooms.close()
