"""Connection, rate and size limits on a live server (both kinds), beside a normal editor.

Each limit trips with its status or close code and one WARNING naming the connection
(or peer), the document and the setting, while a stock Yjs client (tests/interop) keeps
editing and converging with another editor. Slots go back on every way a connection
ends, so a refused client gets in once a place is free.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from collab.client import connect
from collab.config import Config
from collab.wire import protocol
from collab.wire.protocol import QueryAwareness, SyncStep1, SyncStep2, Update
from tests.conftest import ServeKind, doc_url, eventually
from tests.interop.node_peer import NodePeer
from tests.servers import RunningServer


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get("text", type=Text))


def counts(server: RunningServer) -> tuple[int, int]:
    """(connections counted in all, on document ``notes``)."""
    connections = server.runtime.gate.connections
    return connections.total, connections.on_doc("notes")


async def refusal(url: str, **headers: str) -> tuple[int, str]:
    """The status and JSON reason of a refused handshake (fails if it is upgraded)."""
    with pytest.raises(InvalidStatus) as info:
        ws = await ws_connect(url, additional_headers=headers, compression=None)
        await ws.close()
    response = info.value.response
    return response.status_code, json.loads(response.body)["error"]


async def synced(url: str, **headers: str) -> tuple[ClientConnection, Doc[Any]]:
    """A bare protocol client, handshake and first sync done."""
    ws = await ws_connect(url, additional_headers=headers, compression=None)
    doc: Doc[Any] = Doc()
    await ws.send(protocol.encode(SyncStep1(doc.get_state())))
    while True:
        message = protocol.decode(await ws.recv())  # type: ignore[arg-type]
        if isinstance(message, SyncStep1):
            await ws.send(protocol.encode(SyncStep2(doc.get_update(message.state_vector))))
        elif isinstance(message, SyncStep2):
            doc.apply_update(message.update)
            return ws, doc


async def close_code(ws: ClientConnection) -> int:
    """Read until the server closes ``ws``; the code it closed with."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert info.value.rcvd is not None
    return info.value.rcvd.code


def warnings(caplog: pytest.LogCaptureFixture, *parts: str) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [line for line in lines if all(part in line for part in parts)]


async def coedit(server: RunningServer, node: NodePeer, words: str) -> None:
    """The stock client types ``words``; a Python editor sees them, and its answer comes back."""
    async with connect(doc_url(server, "notes")) as python:
        await python.wait_synced()
        before = await node.text()
        await node.type(words, interval_ms=20)
        await python.wait_for(lambda: text_of(python.doc) == before + words, 10)
        python.doc.get("text", type=Text).insert(0, ">")
        await node.wait_text(">" + before + words, 10)


async def test_over_max_connections_the_handshake_gets_503(
    config: Config, serve_kind: ServeKind, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve_kind(config.replace(max_connections=3)) as server:
        async with NodePeer(f"ws://127.0.0.1:{server.port}", "notes") as node:
            await node.wait_synced()
            await node.insert(0, "kept")
            async with connect(doc_url(server, "notes")) as python:
                await python.wait_synced()
                extra, _ = await synced(doc_url(server, "other"))
                await eventually(lambda: counts(server) == (3, 2))
                status, reason = await refusal(doc_url(server, "notes"))
                assert (status, "max_connections=3" in reason) == (503, True), reason
                assert warnings(caplog, "'notes'", "max_connections=3")
                await extra.close()
                # The normal editors carry on, and a freed place is taken again.
                await node.insert(4, " going")
                await python.wait_for(lambda: text_of(python.doc) == "kept going")
                await eventually(lambda: counts(server) == (2, 2))
            await coedit(server, node, "!")
        await eventually(lambda: counts(server) == (0, 0))


async def test_over_max_connections_per_doc_that_document_gets_503(
    config: Config, serve_kind: ServeKind, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve_kind(config.replace(max_connections_per_doc=2)) as server:
        async with NodePeer(f"ws://127.0.0.1:{server.port}", "notes") as node:
            await node.wait_synced()
            python, _ = await synced(doc_url(server, "notes"))
            status, reason = await refusal(doc_url(server, "notes"))
            assert status == 503 and "max_connections_per_doc=2" in reason, reason
            assert warnings(caplog, "'notes'", "max_connections_per_doc=2")
            # The HTTP fallback takes places from the same counts.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
                answer = await http.post("/_http/notes")
                assert answer.status_code == 503, answer.text
                assert "max_connections_per_doc=2" in answer.json()["error"]
            other, _ = await synced(doc_url(server, "other"))  # another document is open
            await other.close()
            await python.close()
            await eventually(lambda: counts(server) == (1, 1))
            await coedit(server, node, "typed on")


async def test_over_max_connections_per_ip_a_forwarded_client_gets_429(
    config: Config, serve_kind: ServeKind, caplog: pytest.LogCaptureFixture
) -> None:
    behind_proxy = config.replace(max_connections_per_ip=1, forwarded_allow_ips=("127.0.0.1",))
    async with serve_kind(behind_proxy) as server:
        url = doc_url(server, "notes")
        first, _ = await synced(url, **{"X-Forwarded-For": "198.51.100.7"})
        status, reason = await refusal(url, **{"X-Forwarded-For": "198.51.100.7"})
        assert status == 429 and "max_connections_per_ip=1" in reason, reason
        assert warnings(caplog, "198.51.100.7", "'notes'", "max_connections_per_ip=1")
        # Another client behind the same proxy is another address, and edits go on.
        second, doc = await synced(url, **{"X-Forwarded-For": "203.0.113.5, 198.51.100.8"})
        replica: Doc[Any] = Doc()
        replica.get("text", type=Text).insert(0, "from .7")
        await first.send(protocol.encode(Update(replica.get_update())))
        while text_of(doc) != "from .7":
            message = protocol.decode(await second.recv())  # type: ignore[arg-type]
            if isinstance(message, Update):
                doc.apply_update(message.update)
        await first.close()
        await eventually(lambda: server.runtime.gate.connections.from_ip("198.51.100.7") == 0)
        again, _ = await synced(url, **{"X-Forwarded-For": "198.51.100.7"})
        await again.close()
        await second.close()


async def test_without_a_trusted_proxy_the_forwarded_header_is_ignored(
    config: Config, serve_kind: ServeKind
) -> None:
    async with serve_kind(config.replace(max_connections_per_ip=1)) as server:
        url = doc_url(server, "notes")
        first, _ = await synced(url, **{"X-Forwarded-For": "198.51.100.7"})
        # A forged header does not make a second address: both are 127.0.0.1.
        status, _ = await refusal(url, **{"X-Forwarded-For": "198.51.100.8"})
        assert status == 429
        assert server.runtime.gate.connections.from_ip("127.0.0.1") == 1
        await first.close()


async def test_an_editor_over_the_message_rate_is_closed_with_1008(
    config: Config, serve_kind: ServeKind, caplog: pytest.LogCaptureFixture
) -> None:
    limited = config.replace(messages_per_second=20, message_burst=40)
    async with serve_kind(limited) as server:
        async with NodePeer(f"ws://127.0.0.1:{server.port}", "notes") as node:
            await node.wait_synced()
            flood, _ = await synced(doc_url(server, "notes"))
            frame = protocol.encode(QueryAwareness())
            for _ in range(200):
                await flood.send(frame)
            assert await close_code(flood) == 1008
            assert warnings(caplog, "'notes'", "messages per second", "(1008)")
            # A typist at the rate carries on (20 ms apart: 50 a second for a moment).
            await coedit(server, node, "steady typing")
            assert await node.text() == ">steady typing"


async def test_an_update_past_max_doc_bytes_is_refused_and_closed_with_4413(
    config: Config, serve_kind: ServeKind, caplog: pytest.LogCaptureFixture
) -> None:
    bounded = config.replace(max_doc_bytes=4_000)
    async with serve_kind(bounded) as server:
        async with NodePeer(f"ws://127.0.0.1:{server.port}", "notes") as node:
            await node.wait_synced()
            await node.type("hello", interval_ms=10)
            offender, doc = await synced(doc_url(server, "notes"))
            while text_of(doc) != "hello":
                message = protocol.decode(await offender.recv())  # type: ignore[arg-type]
                if isinstance(message, Update):
                    doc.apply_update(message.update)
            before = doc.get_state()
            doc.get("text", type=Text).insert(5, "x" * 5_000)
            await offender.send(protocol.encode(Update(doc.get_update(before))))
            assert await close_code(offender) == 4413
            assert warnings(caplog, "'notes'", "max_doc_bytes", "(4413)")
            room = server.rooms.get("notes")
            assert room is not None and text_of(room.doc) == "hello"
            await coedit(server, node, " world")
            assert await node.text() == ">hello world"
    # The store holds what the editors kept, nothing of the refused update.
    async with serve_kind(bounded) as server:
        async with connect(doc_url(server, "notes")) as reader:
            await reader.wait_synced()
            assert text_of(reader.doc) == ">hello world"


async def test_every_way_out_gives_the_place_back(config: Config, serve_kind: ServeKind) -> None:
    async with serve_kind(config.replace(max_connections=1)) as server:
        port = server.port
        # A WebSocket that ends.
        ws, _ = await synced(doc_url(server, "notes"))
        await ws.close()
        await eventually(lambda: counts(server) == (0, 0))
        # An upgrade the WebSocket handshake refuses after the gate admitted it.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /notes HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"  # no key
        )
        status = await reader.readline()
        assert status.split()[1] in (b"400", b"426"), status
        writer.close()
        await eventually(lambda: counts(server) == (0, 0))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            # A fallback request the gate admitted but the fallback does not serve.
            assert (await http.post("/_http/signal")).status_code == 404
            assert counts(server) == (0, 0)
            # A fallback session, closed by its client.
            opened = await http.post("/_http/notes")
            assert opened.status_code == 201 and counts(server) == (1, 1)
            refused = await http.post("/_http/notes")
            assert refused.status_code == 503
            await http.delete("/_http/notes", params={"session": opened.json()["session"]})
            await eventually(lambda: counts(server) == (0, 0))
        # A signaling peer holds a place too, until it leaves.
        signal = await ws_connect(f"ws://127.0.0.1:{port}/signal", compression=None)
        await eventually(lambda: server.runtime.gate.connections.total == 1)
        status_code, _ = await refusal(doc_url(server, "notes"))
        assert status_code == 503
        await signal.close()
        await eventually(lambda: server.runtime.gate.connections.total == 0)
        ws, _ = await synced(doc_url(server, "notes"))
        await ws.close()


async def test_an_http_edit_past_max_doc_bytes_gets_413_and_changes_nothing(
    config: Config, serve_kind: ServeKind
) -> None:
    async with serve_kind(config.replace(max_doc_bytes=4_000)) as server:
        async with NodePeer(f"ws://127.0.0.1:{server.port}", "notes") as node:
            await node.wait_synced()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
                small = {"insert": {"index": 0, "text": "fits"}}
                assert (await http.post("/api/docs/notes/text", json=small)).status_code == 200
                await node.wait_text("fits")
                big = {"insert": {"index": 4, "text": "x" * 5_000}}
                answer = await http.post("/api/docs/notes/text", json=big)
                assert answer.status_code == 413, answer.text
                assert "max_doc_bytes" in answer.json()["error"]
                assert (await http.get("/api/docs/notes/text")).json()["text"] == "fits"
            await coedit(server, node, " still")
            assert await node.text() == ">fits still"
