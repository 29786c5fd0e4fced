"""/signal end to end: raw WebSockets against a real collab server on 127.0.0.1.

Each check is ordered by the wire, not by time: a connection's frames are
handled in order and a relay is written before the next frame is read, so once
a peer has its own echo of a publish, every other subscriber has been sent it
too. "Nothing arrived" is shown by the *next* frame being something else.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from collab.config import Config
from collab.core.gate import DocumentEntry, Gate, SignalingEntry
from collab.core.signaling import Hub
from tests.conftest import ServeKind, eventually
from tests.servers import RunningServer


def signal_url(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.port}/signal"


def connect(server: RunningServer) -> Any:
    """A raw WebSocket to /signal. No compression: what is sent is what the server buffers
    (uvicorn would otherwise negotiate permessage-deflate)."""
    return ws_connect(signal_url(server), compression=None)


def gate_of(server: RunningServer) -> Gate:
    return server.runtime.gate


def hub_of(server: RunningServer) -> Hub:
    return gate_of(server).signaling


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def recv(ws: ClientConnection) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(frame, str), "signaling answers in text frames"
    message: dict[str, Any] = json.loads(frame)
    return message


async def subscribed(ws: ClientConnection, *topics: str) -> ClientConnection:
    """Subscribe and wait until the server has taken it (a ping's pong comes after)."""
    await send(ws, {"type": "subscribe", "topics": list(topics)})
    await send(ws, {"type": "ping"})
    assert await recv(ws) == {"type": "pong"}
    return ws


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason


@pytest.fixture
async def peers(server: RunningServer) -> AsyncIterator[list[ClientConnection]]:
    """Three raw connections to /signal, closed at the end."""
    opened = [await connect(server) for _ in range(3)]
    try:
        yield opened
    finally:
        for ws in opened:
            await ws.close()


async def test_publish_reaches_subscribers_only_the_sender_included(
    server: RunningServer, peers: list[ClientConnection]
) -> None:
    a, b, c = peers
    await subscribed(a, "notes")
    await subscribed(b, "notes")
    await subscribed(c, "elsewhere")
    announce = {"type": "announce", "from": "peer-a"}
    await send(a, {"type": "publish", "topic": "notes", "data": announce})
    relayed = {"type": "publish", "topic": "notes", "data": announce, "clients": 2}
    assert await recv(a) == relayed
    assert await recv(b) == relayed
    await send(c, {"type": "ping"})
    assert await recv(c) == {"type": "pong"}  # c got nothing before its pong


async def test_a_publish_to_a_topic_not_subscribed_is_dropped(
    server: RunningServer, peers: list[ClientConnection]
) -> None:
    a, b, _ = peers
    await subscribed(a, "notes")
    await subscribed(b, "other")
    await send(b, {"type": "publish", "topic": "notes", "data": {"type": "signal", "to": "a"}})
    await send(b, {"type": "subscribe", "topics": ["notes"]})
    await send(b, {"type": "publish", "topic": "notes", "data": "after"})
    # a's next frame is the legitimate publish: the first one was never relayed.
    assert await recv(a) == {"type": "publish", "topic": "notes", "data": "after", "clients": 2}
    assert await recv(b) == {"type": "publish", "topic": "notes", "data": "after", "clients": 2}


async def test_unsubscribe_stops_the_relay_and_frees_the_topic(
    server: RunningServer, peers: list[ClientConnection]
) -> None:
    a, b, _ = peers
    await subscribed(a, "notes", "drafts")
    await subscribed(b, "notes")
    assert hub_of(server).topics == 2
    await send(a, {"type": "unsubscribe", "topics": ["notes", "drafts"]})
    await send(a, {"type": "ping"})
    assert await recv(a) == {"type": "pong"}
    assert hub_of(server).topics == 1  # "drafts" had no one left
    await send(b, {"type": "publish", "topic": "notes", "data": 1})
    assert (await recv(b))["clients"] == 1  # b's echo: the relay to a would have gone already
    await send(a, {"type": "ping"})
    assert await recv(a) == {"type": "pong"}
    await b.close()
    await eventually(lambda: hub_of(server).topics == 0)


async def test_json_ping_is_answered_with_pong(peers: list[ClientConnection]) -> None:
    a = peers[0]
    for _ in range(3):
        await send(a, {"type": "ping"})
        assert await recv(a) == {"type": "pong"}


async def test_malformed_json_closes_only_that_connection_with_1007(
    server: RunningServer, peers: list[ClientConnection]
) -> None:
    a, b, c = peers
    await subscribed(a, "notes")
    await subscribed(b, "notes")
    await b.send('{"type": "publish", "topic": "notes", ')
    assert await closed_with(b) == (1007, "signaling frame is not JSON")
    await c.send(b"\x00\x00\x01\x00")  # a y-websocket frame sent here by mistake
    assert (await closed_with(c))[0] == 1007
    await send(a, {"type": "publish", "topic": "notes", "data": "still here"})
    assert await recv(a) == {
        "type": "publish",
        "topic": "notes",
        "data": "still here",
        "clients": 1,
    }


async def test_a_topic_must_be_a_document_name(peers: list[ClientConnection]) -> None:
    a, b, _ = peers
    await send(a, {"type": "subscribe", "topics": ["notes", "not a name"]})
    code, reason = await closed_with(a)
    assert code == 1008 and reason is not None and "not a document name" in reason
    await subscribed(b, "team/notes")  # segments are fine, as in document names


async def test_a_silent_peer_is_dropped_by_keepalive(config: Config, serve_kind: ServeKind) -> None:
    fast = config.replace(ping_interval=0.2, ping_timeout=0.3, close_timeout=0.3)
    async with serve_kind(fast) as server:
        async with connect(server) as live, connect(server) as gone:
            await subscribed(live, "notes")
            await subscribed(gone, "notes")
            gone.transport.pause_reading()  # a pulled cable: no pong, no close frame
            await eventually(lambda: hub_of(server).subscribers("notes") == 1)
            # The live peer answered every ping meanwhile and is still subscribed.
            await send(live, {"type": "publish", "topic": "notes", "data": "x"})
            assert (await recv(live))["clients"] == 1
            await eventually(lambda: hub_of(server).peers == 1)
            gone.transport.abort()


async def test_too_many_topics_closes_with_1008(config: Config, serve_kind: ServeKind) -> None:
    async with serve_kind(config.replace(signal_max_topics=2)) as server:
        async with connect(server) as a:
            await subscribed(a, "one", "two")
            await send(a, {"type": "subscribe", "topics": ["three"]})
            assert await closed_with(a) == (1008, "over 2 topics on one connection")
        await eventually(lambda: hub_of(server).topics == 0)


async def test_too_many_messages_closes_with_1008(config: Config, serve_kind: ServeKind) -> None:
    # No refill to speak of: the sixth message is over the burst, however slow the machine.
    limits = config.replace(signal_burst=5, signal_messages_per_second=0.001)
    async with serve_kind(limits) as server:
        async with connect(server) as a, connect(server) as b:
            for _ in range(5):
                await send(a, {"type": "ping"})
            for _ in range(5):
                assert await recv(a) == {"type": "pong"}
            await send(a, {"type": "ping"})
            assert await closed_with(a) == (1008, "over 0.001 messages per second")
            await send(b, {"type": "ping"})  # every connection has its own budget
            assert await recv(b) == {"type": "pong"}


async def test_a_frame_over_the_signaling_bound_closes_with_1009(
    config: Config, serve_kind: ServeKind
) -> None:
    async with serve_kind(config.replace(signal_max_message_size=1000)) as server:
        async with connect(server) as a:
            await subscribed(a, "notes")
            await send(a, {"type": "publish", "topic": "notes", "data": "x" * 1000})
            code, _ = await closed_with(a)
            assert code == 1009


async def test_a_peer_that_stops_reading_is_dropped_and_slows_nobody(
    config: Config, serve_kind: ServeKind
) -> None:
    limit = 128 * 1024
    roomy = config.replace(outbox_max_bytes=limit, signal_messages_per_second=1e6)
    async with serve_kind(roomy) as server:
        async with connect(server) as writer, connect(server) as slow:
            await subscribed(writer, "firehose")
            await subscribed(slow, "firehose")
            slow.transport.pause_reading()  # stops reading: the server's buffer for it fills
            chunk = "x" * 60_000
            for _ in range(400):  # 24 MB in all, far beyond the slow peer's bound
                await send(writer, {"type": "publish", "topic": "firehose", "data": chunk})
                if (await recv(writer))["clients"] == 1:
                    break  # the slow peer was cut off instead of buffered without bound
            else:
                pytest.fail("the slow peer was never dropped")
            assert hub_of(server).subscribers("firehose") == 1
            slow.transport.abort()


async def test_only_the_path_signal_is_reserved(server: RunningServer) -> None:
    gate = gate_of(server)
    assert isinstance(gate.admit("/signal", "", {}), SignalingEntry)
    assert isinstance(gate.admit("/%73ignal", "", {}), SignalingEntry)  # no way around it
    entry = gate.admit("/signal/x", "saved=1", {})
    assert isinstance(entry, DocumentEntry) and entry.name == "signal/x"
