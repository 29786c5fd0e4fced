"""collab.client: sync, awareness, reconnect with resync of only what is missing."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Text

from collab.client import Client, connect
from tests.conftest import doc_url
from tests.servers import RunningServer as Server
from tests.tcp_proxy import tcp_proxy


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get("text", type=Text))


async def test_reconnect_after_a_cut_resyncs_only_the_missing_edits(server: Server) -> None:
    big = "".join(f"line {i:05d} of the shared document\n" for i in range(5000))  # ~170 KB
    async with tcp_proxy(server.port) as proxy:
        far = f"ws://127.0.0.1:{proxy.port}/roaming"
        async with (
            connect(far, backoff_initial=0.05, backoff_max=0.2) as a,
            connect(doc_url(server, "roaming")) as b,
        ):
            await a.wait_synced()
            await b.wait_synced()
            a.doc.get("text", type=Text).insert(0, big)
            await b.wait_for(lambda: text_of(b.doc) == big)

            await proxy.cut()  # no close frame: the connection just dies
            await a.wait_for(lambda: not a.connected)
            ta, tb = a.doc.get("text", type=Text), b.doc.get("text", type=Text)
            for i in range(5):
                ta.insert(0, f"[a-offline-{i}]")
                tb.insert(len(tb), f"[b-online-{i}]")
            up, down = proxy.bytes_up, proxy.bytes_down
            await proxy.restore()

            await a.wait_for(lambda: a.synced and a.connections == 2)
            await a.wait_for(lambda: text_of(a.doc) == text_of(b.doc))
            await b.wait_for(lambda: text_of(a.doc) == text_of(b.doc))
            final = text_of(a.doc)
            for i in range(5):
                assert final.count(f"[a-offline-{i}]") == 1
                assert final.count(f"[b-online-{i}]") == 1
            assert final.count("line 04999 of") == 1
            # Only the missing edits crossed the wire, not the 170 KB document.
            resync = proxy.bytes_up - up + proxy.bytes_down - down
            assert resync < 4_000, resync


async def test_offline_edits_made_before_the_first_connection_are_delivered(
    server: Server,
) -> None:
    doc: Doc[Any] = Doc()
    doc.get("text", type=Text).insert(0, "written offline")
    async with connect(doc_url(server, "late"), doc=doc) as a:
        await a.wait_synced()
        async with connect(doc_url(server, "late")) as b:
            await b.wait_for(lambda: text_of(b.doc) == "written offline")


async def test_awareness_leaves_with_the_client(server: Server) -> None:
    url = doc_url(server, "presence")
    async with connect(url) as watcher:
        await watcher.wait_synced()
        client = Client(url)
        await client.start()
        await client.wait_synced()
        client.set_awareness({"name": "temp"})
        await watcher.wait_for(lambda: list(watcher.peers.values()) == [{"name": "temp"}])
        await client.close()
        await watcher.wait_for(lambda: watcher.peers == {})


async def test_wait_saved_needs_acks() -> None:
    client = Client("ws://127.0.0.1:9/x")
    with pytest.raises(ValueError, match="saved_acks"):
        await client.wait_saved()


async def test_a_server_sending_garbage_is_closed_with_a_code_and_reconnected() -> None:
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve
    from websockets.exceptions import ConnectionClosed

    from collab.wire import protocol
    from collab.wire.protocol import SyncStep2

    codes: list[int | None] = []

    async def handler(ws: ServerConnection) -> None:
        if not codes:
            await ws.send(b"\x07 not a y-websocket message")
        else:
            await ws.send(protocol.encode(SyncStep2(Doc().get_update())))
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
        codes.append(ws.close_code)

    async with ws_serve(handler, "127.0.0.1", 0) as bad:
        port = bad.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/x", backoff_initial=0.01) as client:
            await client.wait_synced()
            assert client.connections == 2
    assert codes[0] == 1002
