"""Stock Yjs clients (npm yjs + y-websocket in Node.js) co-edit with collab's Python client.

The Node peers are the unmodified ``WebsocketProvider`` a browser app would use
(tests/interop/peer.mjs), so these tests show that collab speaks the standard
protocol, not a dialect its own clients happen to share. Every wait is on a
condition with a timeout; nothing sleeps.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text

from collab.client import Client, connect
from collab.config import Config
from tests.conftest import ServeKind
from tests.servers import RunningServer as Server

from .node_peer import NodePeer, require_node_deps

pytestmark = pytest.mark.interop


@pytest.fixture
async def collab_server(tmp_path: Path, serve_kind: ServeKind) -> AsyncIterator[Server]:
    """collab serve's server, then the ASGI app under uvicorn: stock clients see no difference."""
    require_node_deps()  # skip (or fail in CI) before starting anything
    config = Config(port=0, db_url=f"sqlite:///{tmp_path / 'collab.db'}", ping_interval=None)
    async with serve_kind(config) as server:
        yield server


def base_url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}"


def text_of(client: Client) -> Text:
    text: Text = client.doc.get("text", type=Text)
    return text


async def wait_text(client: Client, expected: str, seconds: float = 5.0) -> None:
    text = text_of(client)
    try:
        await client.wait_for(lambda: str(text) == expected, seconds)
    except TimeoutError:
        raise AssertionError(f"python client has {str(text)!r}, expected {expected!r}") from None


async def test_edits_cross_both_ways(collab_server: Server) -> None:
    url = base_url(collab_server)
    async with NodePeer(url, "shared") as node, connect(f"{url}/shared") as py:
        await node.wait_synced()
        await py.wait_synced()

        await node.insert(0, "hello from node")
        await wait_text(py, "hello from node")

        text = text_of(py)
        text.insert(0, "[py] ")
        await node.wait_text("[py] hello from node")

        del text[0:5]
        await node.wait_text("hello from node")
        await node.insert(len("hello from node"), "!")
        await node.wait_text("hello from node!")
        await wait_text(py, "hello from node!")


async def test_a_stock_client_edits_a_name_with_a_slash_and_only_that_one(
    collab_server: Server,
) -> None:
    url = base_url(collab_server)
    async with (
        NodePeer(url, "team-a/notes") as node,
        connect(f"{url}/team-a/notes") as same,
        connect(f"{url}/team-b/notes", saved_acks=True) as other,
    ):
        await node.wait_synced()
        await same.wait_synced()
        await other.wait_synced()
        text_of(other).insert(0, "team b's own")
        await other.wait_saved()  # the server has it before team a's edits begin
        await node.insert(0, "from node to team a")
        await wait_text(same, "from node to team a")
        text_of(same).insert(0, "> ")
        assert await node.wait_text("> from node to team a") == "> from node to team a"
        async with connect(f"{url}/team-b/notes") as fresh:
            await wait_text(fresh, "team b's own")
        assert sorted(collab_server.rooms.loaded()) == ["team-a/notes", "team-b/notes"]


async def test_late_stock_client_receives_the_whole_document(collab_server: Server) -> None:
    url = base_url(collab_server)
    async with connect(f"{url}/late") as py:
        await py.wait_synced()
        text_of(py).insert(0, "written before the Node peer existed ✓ 😀")
        async with NodePeer(url, "late") as node:
            await node.wait_synced()
            await node.wait_text("written before the Node peer existed ✓ 😀")


async def test_concurrent_edits_from_both_sides_converge(collab_server: Server) -> None:
    """Two Node peers and two Python clients edit at random, interleaved; all converge."""
    url = base_url(collab_server)
    rng = random.Random(5)
    async with (
        NodePeer(url, "busy") as n1,
        NodePeer(url, "busy") as n2,
        connect(f"{url}/busy") as p1,
        connect(f"{url}/busy") as p2,
    ):
        for peer in (n1, n2):
            await peer.wait_synced()
        for client in (p1, p2):
            await client.wait_synced()
        inserted: list[str] = []
        for round_ in range(40):
            who = rng.choice(["n1", "n2", "p1", "p2"])
            token = f"<{who}:{round_}>"
            inserted.append(token)
            if who.startswith("n"):
                peer = n1 if who == "n1" else n2
                length = len(await peer.text())
                await peer.insert(rng.randint(0, length), token)
            else:
                text = text_of(p1 if who == "p1" else p2)
                text.insert(rng.randint(0, len(text)), token)
        # Everyone has every token; the Python side decides the expected text.
        total = sum(len(t) for t in inserted)
        await p1.wait_for(lambda: len(text_of(p1)) == total, 10)
        await p2.wait_for(lambda: len(text_of(p2)) == total, 10)
        final = str(text_of(p1))
        assert str(text_of(p2)) == final
        await n1.wait_text(final, 10)
        await n2.wait_text(final, 10)
        # Later inserts may land inside earlier tokens, so compare characters: each once.
        assert sorted(final) == sorted("".join(inserted))


async def test_awareness_crosses_both_ways_and_departures_are_announced(
    collab_server: Server,
) -> None:
    url = base_url(collab_server)
    async with connect(f"{url}/presence") as py:
        await py.wait_synced()
        py.set_awareness({"name": "python", "color": "#123456"})
        async with NodePeer(url, "presence") as node:
            await node.wait_synced()
            await node.set_awareness({"name": "node", "color": "#abcdef"})
            node_id, _ = await node.awareness()

            def sees_node() -> bool:
                return py.peers.get(node_id, {}).get("name") == "node"

            await py.wait_for(sees_node, 5)
            states = await node.wait_awareness("name", "python")
            assert {"name": "python", "color": "#123456"} in states.values()

            await node.set_awareness({"name": "node, renamed", "color": "#abcdef"})
            await py.wait_for(lambda: py.peers.get(node_id, {}).get("name") == "node, renamed")
        # The Node peer left: its presence is removed for the Python client.
        await py.wait_for(lambda: node_id not in py.peers, 5)


async def test_pycrdt_provider_co_edits_with_a_stock_yjs_peer(collab_server: Server) -> None:
    """pycrdt's own Provider (the pycrdt-websocket family) is a stock client too."""
    import anyio
    from pycrdt import Provider
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed

    class Channel:
        def __init__(self, ws: Any, path: str) -> None:
            self._ws = ws
            self.path = path

        def __aiter__(self) -> Channel:
            return self

        async def __anext__(self) -> bytes:
            try:
                return await self.recv()
            except ConnectionClosed:
                raise StopAsyncIteration from None

        async def send(self, message: bytes) -> None:
            await self._ws.send(message)

        async def recv(self) -> bytes:
            message = await self._ws.recv()
            assert isinstance(message, bytes)
            return message

    url = base_url(collab_server)
    doc: Doc[Any] = Doc()
    text = doc.get("text", type=Text)
    async with (
        ws_connect(f"{url}/pycrdt") as ws,
        Provider(doc, Channel(ws, "/pycrdt")) as provider,
        NodePeer(url, "pycrdt") as node,
    ):
        with anyio.fail_after(5):
            await provider.synced.wait()
        await node.wait_synced()
        text.insert(0, "from pycrdt")
        await node.wait_text("from pycrdt")
        await node.insert(0, "node + ")
        changed = anyio.Event()
        subscription = text.observe(lambda _event: changed.set())
        with anyio.fail_after(5):
            while str(text) != "node + from pycrdt":
                await changed.wait()
                changed = anyio.Event()
        text.unobserve(subscription)
