"""Server-side edits and restores seen by a stock Yjs client (yjs + y-websocket in Node).

A bot edits over HTTP (``collab.client.edit`` / ``restore``) while a stock
WebsocketProvider holds the document: it sees each change at once, keeps what it
types during a ``replace``, and history names the bot as author. Both servers.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from collab import client
from collab.config import Config
from collab.history import versions as history
from tests.conftest import ServeKind
from tests.servers import RunningServer

from .node_peer import NodePeer, require_node_deps
from .test_bindings import cases as cases  # the fixture, for these tests too

pytestmark = pytest.mark.interop


@pytest.fixture
async def one_per_version(config: Config, serve_kind: ServeKind) -> AsyncIterator[RunningServer]:
    """A server whose every logged update is a version of its own."""
    require_node_deps()
    async with serve_kind(config.replace(version_max_updates=1)) as running:
        yield running


def base_url(server: RunningServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def ws_url(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.port}"


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until the async ``check()`` holds (store state has no event to wait on)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


async def durable(server: RunningServer, doc: str, seq: int) -> None:
    """Wait until the store holds seq ``seq`` of ``doc``."""

    async def check() -> bool:
        info = await server.store.document(doc)
        return info is not None and info.last_seq >= seq

    await until(check)


async def test_insert_reaches_a_stock_client_at_once(server: RunningServer) -> None:
    require_node_deps()
    async with NodePeer(ws_url(server), "bot-notes") as peer:
        await peer.wait_synced()
        await peer.insert(0, "Hello world")
        await durable(server, "bot-notes", 1)
        seq = await client.edit(base_url(server), "bot-notes", insert=(5, ", dear"), author="bot")
        assert await peer.wait_text("Hello, dear world") == "Hello, dear world"
    assert seq == 2
    [_, entry] = await server.store.entries("bot-notes")
    assert (entry.seq, entry.client, entry.user) == (2, "http:bot", "bot")
    found = await history.versions(server.store, server.config, "bot-notes")
    assert found[-1].contributors[-1] == "bot"


async def test_replace_keeps_what_a_typist_types_meanwhile(server: RunningServer) -> None:
    require_node_deps()
    typed = "".join(chr(ord("a") + i % 26) for i in range(400))
    async with NodePeer(ws_url(server), "race") as peer:
        await peer.wait_synced()
        await peer.insert(0, "The quick brown fox.")
        await durable(server, "race", 1)
        async with httpx.AsyncClient(base_url=base_url(server)) as http:
            typing = asyncio.create_task(peer.type(typed, interval_ms=5))
            # The bot reads the text while the typist is typing (some of it is durable),
            # changes one word and writes the whole text back, naming the seq it read.
            read: dict[str, Any] = {}

            async def some_typed() -> bool:
                read.update((await http.get("/api/docs/race/text")).json())
                return bool(read["text"].startswith("The quick brown fox.abc"))

            await until(some_typed)
            # What the bot read lacks most of what is being typed: the typing goes on
            # around its read and its write.
            assert len(read["text"]) < len("The quick brown fox.") + len(typed) // 2
            new = read["text"].replace("brown", "red")
            reply = await http.post(
                "/api/docs/race/text",
                json={"replace": new, "base": read["version"]["last_seq"], "author": "bot"},
            )
            assert reply.status_code == 200, reply.text
            await typing
        expected = "The quick red fox." + typed
        assert await peer.wait_text(expected) == expected

    async def stored() -> bool:
        text, _ = await history.text_at(server.store, server.config, "race")
        return text == expected

    await until(stored)


async def test_restore_while_a_stock_client_is_connected(one_per_version: RunningServer) -> None:
    server = one_per_version
    async with NodePeer(ws_url(server), "story") as peer:
        await peer.wait_synced()
        for seq, piece in enumerate(["Once", " upon", " a time"], start=1):
            await peer.insert(len(await peer.text()), piece)
            await durable(server, "story", seq)
        found = await history.versions(server.store, server.config, "story")
        assert [(v.id, v.size) for v in found] == [(1, 4), (2, 9), (3, 16)]

        seq, restored = await client.restore(base_url(server), "story", 1, author="ada")
        assert restored == 1
        assert await peer.wait_text("Once") == "Once"

        found = await history.versions(server.store, server.config, "story")
        last = found[-1]
        assert (last.id, last.restored_from, last.contributors) == (seq, 1, ["ada"])
        [entry] = await server.store.entries("story", after=seq - 1)
        assert (entry.client, entry.user) == ("restore:1", "ada")

        # Undo the restore: bring back the version before it.
        before = found[-2]
        assert before.id == 3
        _, restored = await client.restore(base_url(server), "story", before.id, author="ada")
        assert restored == 3
        assert await peer.wait_text("Once upon a time") == "Once upon a time"
        # The stock client keeps editing the restored text as usual.
        await peer.insert(0, ">")
        await durable(server, "story", seq + 2)
        text, _ = await history.text_at(server.store, server.config, "story")
        assert text == ">Once upon a time"


@pytest.mark.parametrize("name", ["prosemirror", "tiptap", "quill", "json"])
async def test_restore_brings_back_any_binding(
    one_per_version: RunningServer, cases: dict[str, Any], name: str
) -> None:
    server = one_per_version
    url = base_url(server)
    updates = [base64.b64decode(u) for u in cases[name]["updates"]]
    for update in updates:
        await client.edit(url, name, update=update, author="writer")
    last = len(updates)

    async def export(at: int | None) -> tuple[str, str]:
        async with httpx.AsyncClient(base_url=url) as http:
            query = {} if at is None else {"at": str(at)}
            reply = await http.get(f"/api/docs/{name}/export", params={"format": "json", **query})
        value = reply.json()
        return value["text"], value["markdown"]

    first, latest = await export(1), await export(last)
    assert first != latest
    seq, _ = await client.restore(url, name, 1, author="ada")
    assert await export(None) == first
    await client.restore(url, name, seq - 1, author="ada")
    assert await export(None) == latest
    found = await history.versions(server.store, server.config, name)
    assert [v.restored_from for v in found[-2:]] == [1, last]
