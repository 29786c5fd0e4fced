"""collab.server end to end: real WebSockets on 127.0.0.1, a real SQLite file."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from collab.client import Client, connect
from collab.config import Config
from collab.store import Loaded
from collab.store.sqlite import SqliteStore
from collab.wire import protocol
from collab.wire.protocol import Awareness, AwarenessEntry, SyncStep1, SyncStep2, Update
from tests.conftest import ServeKind, doc_url, eventually
from tests.servers import AsgiServer
from tests.servers import RunningServer as Server


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get("text", type=Text))


def edit(base: Doc[Any], index: int, content: str) -> bytes:
    """An update inserting ``content`` at ``index`` on top of ``base``'s state."""
    replica: Doc[Any] = Doc()
    replica.apply_update(base.get_update())
    before = replica.get_state()
    replica.get("text", type=Text).insert(index, content)
    return replica.get_update(before)


def text_is(client: Client, value: str) -> Callable[[], bool]:
    return lambda: text_of(client.doc) == value


def text_at_least(client: Client, length: int) -> Callable[[], bool]:
    return lambda: len(text_of(client.doc)) >= length


async def raw_synced(url: str) -> tuple[ClientConnection, Doc[Any]]:
    """A bare protocol client: handshake done, the server's content applied."""
    ws = await ws_connect(url, compression=None)
    doc: Doc[Any] = Doc()
    await ws.send(protocol.encode(SyncStep1(doc.get_state())))
    while True:
        message = protocol.decode(await ws.recv())  # type: ignore[arg-type]
        if isinstance(message, SyncStep1):
            await ws.send(protocol.encode(SyncStep2(doc.get_update(message.state_vector))))
        elif isinstance(message, SyncStep2):
            doc.apply_update(message.update)
            return ws, doc


async def test_two_editors_coedit_and_see_presence(server: Server) -> None:
    url = doc_url(server, "notes")
    async with connect(url) as a, connect(url) as b:
        await a.wait_synced()
        await b.wait_synced()
        a.doc.get("text", type=Text).insert(0, "hello")
        await b.wait_for(lambda: text_of(b.doc) == "hello")
        b.doc.get("text", type=Text).insert(5, " world")
        await a.wait_for(lambda: text_of(a.doc) == "hello world")
        a.set_awareness({"user": "ann"})
        await b.wait_for(lambda: list(b.peers.values()) == [{"user": "ann"}])
    # b left: a's presence goes with its connection; nothing else changed.


async def test_updates_are_not_echoed_to_their_sender(server: Server) -> None:
    url = doc_url(server, "echo")
    ws, doc = await raw_synced(url)
    async with connect(url) as other:
        await other.wait_synced()
        mine = edit(doc, 0, "mine")
        await ws.send(protocol.encode(Update(mine)))
        await other.wait_for(lambda: text_of(other.doc) == "mine")
        other.doc.get("text", type=Text).insert(0, ">")
        # The next frame the raw client gets is the other editor's, not its own echo.
        message = protocol.decode(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
        assert isinstance(message, Update)
        doc.apply_update(mine)
        doc.apply_update(message.update)
        assert text_of(doc) == ">mine"
    await ws.close()


class CountingStore(SqliteStore):
    """The real SQLite store, counting how often each document is loaded."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loads: collections.Counter[str] = collections.Counter()

    async def load(self, doc: str) -> Loaded:
        self.loads[doc] += 1
        return await super().load(doc)


async def test_twenty_clients_opening_a_new_document_at_once_load_it_once(
    config: Config, serve_kind: ServeKind
) -> None:
    store = CountingStore(config.db_url)
    await store.open()
    try:
        async with serve_kind(config, store) as server:
            url = doc_url(server, "rush")
            clients = [connect(url) for _ in range(20)]
            entered = await asyncio.gather(*(c.__aenter__() for c in clients))
            try:
                await asyncio.gather(*(c.wait_synced(timeout=5) for c in entered))
                assert store.loads == {"rush": 1}
                entered[0].doc.get("text", type=Text).insert(0, "all")
                await asyncio.gather(*(c.wait_for(text_is(c, "all"), 5) for c in entered))
            finally:
                await asyncio.gather(*(c.__aexit__(None, None, None) for c in clients))
    finally:
        await store.close()


@pytest.mark.parametrize("name", ["bad name", "a/..", "é", "x" * 129])
async def test_bad_document_names_are_refused_at_the_handshake(server: Server, name: str) -> None:
    from urllib.parse import quote

    with pytest.raises(InvalidStatus) as info:
        await ws_connect(f"ws://127.0.0.1:{server.port}/{quote(name, safe='/')}")
    assert info.value.response.status_code == 400
    assert b"invalid document name" in info.value.response.body


async def test_documents_that_differ_only_in_a_path_prefix_stay_separate(server: Server) -> None:
    base = f"ws://127.0.0.1:{server.port}"
    async with (
        connect(f"{base}/team-a/notes", saved_acks=True) as a,
        connect(f"{base}/team-b/notes", saved_acks=True) as b,
        connect(f"{base}/notes", saved_acks=True) as root,
    ):
        for client, words in ((a, "for team a"), (b, "for team b"), (root, "for nobody")):
            await client.wait_synced()
            client.doc.get("text", type=Text).insert(0, words)
            await client.wait_saved()
        async with connect(f"{base}/team-a/notes") as a_again:
            await a_again.wait_synced()
            assert text_of(a_again.doc) == "for team a"
        assert (text_of(a.doc), text_of(b.doc)) == ("for team a", "for team b")
    assert sorted(info.name for info in await server.store.documents()) == [
        "notes",
        "team-a/notes",
        "team-b/notes",
    ]


@pytest.mark.parametrize("name", ["json:notebook:1234", "a@b", "team-a/json:notebook:1234"])
async def test_real_room_names_are_accepted(server: Server, name: str) -> None:
    async with connect(doc_url(server, name), saved_acks=True) as client:
        await client.wait_synced()
        client.doc.get("text", type=Text).insert(0, name)
        await client.wait_saved()
    assert [info.name for info in await server.store.documents()] == [name]


async def raw_request(port: int, target: bytes, upgrade: bool) -> tuple[bytes, bytes]:
    """Send one request line exactly as given (no client library cleans it); the status line
    and body of the answer."""
    head = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if upgrade:
        head += (
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"Connection: close\r\n\r\n" if not upgrade else head + b"\r\n")
        status = await reader.readline()
        headers = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in headers.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        return status, await reader.readexactly(length)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "target",
    [b"/bad\tname", b"/bad%0Aname", b"/bad%00name", b"/team-a%2Fnotes", b"/team-a//notes"],
    ids=["raw tab", "encoded newline", "encoded NUL", "encoded slash", "empty segment"],
)
@pytest.mark.parametrize("upgrade", [True, False], ids=["websocket", "http api"])
async def test_a_bad_character_in_the_raw_path_is_refused_with_400(
    server: Server, target: bytes, upgrade: bool
) -> None:
    path = target if upgrade else b"/api/docs" + target + b"/text"
    status, body = await raw_request(server.port, path, upgrade)
    assert status.startswith(b"HTTP/1.1 400 "), status
    if b"\t" not in target or not isinstance(server, AsgiServer):
        # (uvicorn's HTTP parser refuses a raw tab itself, in plain text, before the app.)
        assert "error" in json.loads(body)
    # The same request with a good name is upgraded (or answered): the 400 was the name's.
    fine = b"/good" if upgrade else b"/api/docs"
    status, _ = await raw_request(server.port, fine, upgrade)
    assert status.startswith(b"HTTP/1.1 101 " if upgrade else b"HTTP/1.1 200 "), status


async def test_plain_http_get_is_answered_not_upgraded(server: Server) -> None:
    def get() -> int:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/no/such/page")
        except urllib.error.HTTPError as exc:
            return exc.code
        return 200

    assert await asyncio.to_thread(get) == 404


def awareness_frame(client_id: int, clock: int, state: str) -> bytes:
    entry = AwarenessEntry(client_id, clock, state)
    return protocol.encode(Awareness(protocol.encode_awareness([entry])))


HOSTILE = {
    "random bytes": (b"\x99\xff\x13\x00\x07", 1002),
    "truncated varint": (b"\x00\x82", 1002),
    "truncated length": (b"\x00\x02\x7fabc", 1002),
    "unknown message type": (b"\x2a\x00", 1002),
    "garbage state vector": (protocol.encode(SyncStep1(b"\x05\x01\x02")), 1007),
    "garbage update": (protocol.encode(Update(b"\x13\x37\x13\x37\x13\x37")), 1007),
    "garbage awareness": (protocol.encode(Awareness(b"\x01\x05\x01\x03{x}")), 1007),
    "awareness not an object": (awareness_frame(5, 1, "[1]"), 1007),
}


@pytest.mark.parametrize("kind", [*HOSTILE, "valid update cut short", "text frame", "oversize"])
async def test_malformed_frames_close_only_the_offender(
    tmp_path: object,
    config: Config,
    serve_kind: ServeKind,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="collab.session")
    async with serve_kind(config.replace(max_message_size=64 * 1024)) as server:
        url = doc_url(server, "target")
        async with connect(url) as good, connect(url) as watcher:
            await good.wait_synced()
            await watcher.wait_synced()
            good.doc.get("text", type=Text).insert(0, "intact")
            await watcher.wait_for(lambda: text_of(watcher.doc) == "intact")
            watcher.set_awareness({"name": "w"})
            await good.wait_for(lambda: len(good.peers) == 1)
            before = server.rooms.get("target").doc.get_update()  # type: ignore[union-attr]

            ws, doc = await raw_synced(url)
            frame: bytes | str
            if kind in HOSTILE:
                frame, code = HOSTILE[kind]
            elif kind == "valid update cut short":
                full = edit(doc, 0, "a long enough insertion")
                frame, code = protocol.encode(Update(full[: len(full) // 2])), 1007
            elif kind == "text frame":
                frame, code = "hello", 1002
            else:
                frame, code = b"\x00\x02" + b"\x01" * (70 * 1024), 1009
            await ws.send(frame)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == code

            # The document is unchanged and the others carry on.
            assert server.rooms.get("target").doc.get_update() == before  # type: ignore[union-attr]
            watcher.doc.get("text", type=Text).insert(6, "!")
            await good.wait_for(lambda: text_of(good.doc) == "intact!")
            assert text_of(watcher.doc) == "intact!"
            assert len(good.peers) == 1
    # The reason is logged with the document and the close code the offender got.
    assert any(
        record.levelno >= logging.WARNING
        and "on 'target'" in record.getMessage()
        and record.getMessage().endswith(f"({code})")
        for record in caplog.records
    ), [r.getMessage() for r in caplog.records]


async def test_a_client_that_stops_reading_is_dropped_and_slows_nobody(
    config: Config, serve_kind: ServeKind
) -> None:
    limit = 256 * 1024
    async with serve_kind(config.replace(outbox_max_bytes=limit)) as server:
        url = doc_url(server, "firehose")
        slow, _ = await raw_synced(url)
        slow.transport.pause_reading()  # stops reading: the server's buffer for it fills
        async with connect(url) as writer, connect(url) as reader:
            await writer.wait_synced()
            await reader.wait_synced()
            text = writer.doc.get("text", type=Text)
            chunk = "x" * 16 * 1024
            for i in range(400):  # 6.4 MB in all, far beyond the slow client's bound
                text.insert(0, chunk)
                if i % 50 == 0:
                    await reader.wait_for(text_at_least(reader, (i + 1) * len(chunk)))
            await reader.wait_for(lambda: len(text_of(reader.doc)) == 400 * len(chunk))
            # The slow editor was cut off instead of buffered without bound.
            await eventually(lambda: server.connections == 2)
        slow.transport.abort()


async def test_dead_peer_is_dropped_by_keepalive_and_its_presence_removed(
    config: Config,
    serve_kind: ServeKind,
) -> None:
    async with serve_kind(
        config.replace(ping_interval=0.2, ping_timeout=0.3, close_timeout=0.3)
    ) as server:
        url = doc_url(server, "cable")
        ws, _ = await raw_synced(url)
        await ws.send(awareness_frame(4242, 1, '{"name":"ghost"}'))
        async with connect(url) as watcher:
            await watcher.wait_synced()
            await watcher.wait_for(lambda: 4242 in watcher.peers)
            ws.transport.pause_reading()  # a pulled cable: no pong, no close frame
            await watcher.wait_for(lambda: 4242 not in watcher.peers, timeout=10)
            assert server.connections == 1
        ws.transport.abort()


async def test_history_api_is_served_on_the_same_port(server: Server) -> None:
    import json

    async with connect(doc_url(server, "served"), saved_acks=True) as client:
        await client.wait_synced()
        client.doc.get("text", type=Text).insert(0, "över HTTP")
        await client.wait_saved()

    def get(path: str) -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}") as response:
                return response.status, response.headers["Content-Type"], response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read()

    status, kind, body = await asyncio.to_thread(get, "/api/docs")
    assert status == 200 and kind.startswith("application/json")
    assert "served" in [d["name"] for d in json.loads(body)["docs"]]
    status, _, body = await asyncio.to_thread(get, "/api/docs/served/export?format=txt")
    assert (status, body.decode()) == (200, "över HTTP")
    status, _, body = await asyncio.to_thread(get, "/api/docs/nothing-here/versions")
    assert status == 404 and "error" in json.loads(body)


async def test_the_server_thins_old_history(config: Config, serve_kind: ServeKind) -> None:
    from collab.config import Retention

    thin = config.replace(
        retention_interval=0.05, retention=Retention(keep_all_seconds=0, hourly_seconds=3600)
    )
    async with serve_kind(thin) as server:
        async with connect(doc_url(server, "old"), saved_acks=True) as client:
            await client.wait_synced()
            text = client.doc.get("text", type=Text)
            for word in ("one ", "two ", "three"):
                text.insert(len(text), word)
            await client.wait_saved()
            entries = await server.store.entries("old")
            assert len(entries) == 3

            async def merged_count() -> int:
                return len(await server.store.entries("old"))

            async with asyncio.timeout(10):
                while await merged_count() != 1:
                    await asyncio.sleep(0.05)
        async with connect(doc_url(server, "old")) as again:
            await again.wait_synced()
            assert str(again.doc.get("text", type=Text)) == "one two three"


async def test_default_limits_admit_a_2_mib_paste_and_a_50_mb_first_sync(server: Server) -> None:
    url = doc_url(server, "big")
    paste = "0123456789abcdef" * (2 * 1024 * 1024 // 16)  # 2 MiB in one update
    async with connect(url) as a, connect(url) as b:
        await a.wait_synced()
        await b.wait_synced()
        a.doc.get("text", type=Text).insert(0, paste)
        await b.wait_for(lambda: len(text_of(b.doc)) == len(paste), timeout=30)

    offline: Doc[Any] = Doc()
    offline.get("text", type=Text).insert(0, "x" * 50_000_000)  # a 50 MB document, never synced
    async with connect(doc_url(server, "huge"), doc=offline, saved_acks=True) as owner:
        await owner.wait_saved(timeout=60)  # its first sync (one ~50 MB step 2) went through
        async with connect(doc_url(server, "huge")) as newcomer:
            await newcomer.wait_for(lambda: len(text_of(newcomer.doc)) == 50_000_000, 60)


async def test_an_edit_sent_just_before_a_normal_close_is_kept(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # The update and the close frame often arrive in one read: both must count.
    with caplog.at_level(logging.WARNING, logger="collab.session"):
        for attempt in range(5):
            async with connect(doc_url(server, "last-words")) as client:
                await client.wait_synced()
                client.doc.get("text", type=Text).insert(0, str(attempt))
            await eventually(lambda: "last-words" not in server.rooms.loaded())
    loaded = await server.store.load("last-words")
    assert loaded.last_seq == 5
    assert [r.getMessage() for r in caplog.records] == []  # a normal close, not 1011
