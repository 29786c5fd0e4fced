"""Tokens, read-only editors, expiry and origins end to end: both servers, real sockets,
a real SQLite store, stock Yjs clients where a client matters."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from collab.client import PermanentlyClosed, connect
from collab.config import Config
from collab.policy.tokens import mint
from collab.wire import protocol
from collab.wire.protocol import SyncStep1, SyncStep2
from tests.conftest import ServeKind, eventually
from tests.interop.node_peer import NodePeer
from tests.servers import RunningServer as Server

SECRET = "test-secret-0123456789abcdef0123456789abcdef"
GOOD_ORIGIN = "https://good.example"


def token(doc: str, mode: str = "write", ttl: float | None = 3600, **kw: Any) -> str:
    return mint(kw.pop("secret", SECRET), doc, mode, now=kw.pop("now", time.time()), ttl=ttl, **kw)


@pytest.fixture
async def server(config: Config, serve_kind: ServeKind) -> AsyncIterator[Server]:
    secured = config.replace(auth_secret=SECRET, allow_origin=(GOOD_ORIGIN,))
    async with serve_kind(secured) as running:
        yield running


def url(server: Server, path: str, tok: str | None = None) -> str:
    query = f"?token={tok}" if tok is not None else ""
    return f"ws://127.0.0.1:{server.port}/{path}{query}"


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get("text", type=Text))


async def refused(address: str, **options: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as info:
        await ws_connect(address, **options)
    response = info.value.response
    return response.status_code, json.loads(response.body)


REFUSALS = {
    "no token": (None, {}, 401, "token is required"),
    "bad signature": (
        token("notes", secret="another-secret-0123456789abcdef"),
        {},
        401,
        "signature",
    ),
    "expired": (token("notes", now=time.time() - 7200), {}, 401, "expired"),
    "another document": (token("other"), {}, 403, "does not cover"),
    "another prefix": (token("team-b/*"), {}, 403, "does not cover"),
    "wrong origin": (token("notes"), {"origin": "https://evil.example"}, 403, "origin"),
}


@pytest.mark.parametrize("case", REFUSALS)
async def test_a_refused_handshake_is_answered_before_the_upgrade_and_writes_nothing(
    server: Server, case: str
) -> None:
    tok, options, status, reason = REFUSALS[case]
    path = "team-a/notes" if "prefix" in case else "notes"
    got, body = await refused(url(server, path, tok), **options)
    assert got == status and reason in body["error"], body
    assert server.rooms.get(path) is None
    assert await server.store.documents() == []
    assert await server.store.document(path) is None


@pytest.mark.parametrize(
    ("path", "tok", "options"),
    [
        ("notes", token("notes"), {}),
        ("team-a/notes", token("team-a/*"), {}),
        ("anything", token("*", "read"), {}),
        ("notes", token("notes"), {"origin": GOOD_ORIGIN}),
        ("notes", None, {"additional_headers": {"Authorization": f"Bearer {token('notes')}"}}),
    ],
)
async def test_a_covering_token_is_admitted(
    server: Server, path: str, tok: str | None, options: dict[str, Any]
) -> None:
    async with ws_connect(url(server, path, tok), compression=None, **options) as ws:
        first = protocol.decode(await ws.recv())  # type: ignore[arg-type]
        assert isinstance(first, SyncStep1)
    assert server.rooms.get(path) is not None or await server.store.document(path) is None


async def test_signaling_needs_a_token_and_sees_only_covered_topics(server: Server) -> None:
    got, _ = await refused(url(server, "signal"))
    assert got == 401
    address = url(server, "signal", token("team-a/*", "read"))
    async with ws_connect(address) as ws:
        await ws.send(json.dumps({"type": "subscribe", "topics": ["team-a/notes"]}))
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
        await ws.send(json.dumps({"type": "subscribe", "topics": ["team-b/notes"]}))
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 4403


async def test_a_stock_client_with_a_read_token_reads_but_cannot_write(server: Server) -> None:
    writer_token = token("notes", "write", user="wally")
    async with connect(url(server, "notes", writer_token), saved_acks=True) as writer:
        await writer.wait_synced()
        writer.doc.get("text", type=Text).insert(0, "hello")
        await writer.wait_saved()
        reader = NodePeer(
            f"ws://127.0.0.1:{server.port}", "notes", {"token": token("notes", "read")}
        )
        async with reader:
            await reader.wait_synced()
            assert await reader.text() == "hello"
            # Live edits reach it.
            writer.doc.get("text", type=Text).insert(5, " world")
            await reader.wait_text("hello world")
            # Its presence is forwarded.
            await reader.set_awareness({"name": "rita"})
            await writer.wait_for(
                lambda: any(s.get("name") == "rita" for s in writer.peers.values())
            )
            # Its edit is refused: the auth message, nothing applied, broadcast or logged.
            await reader.insert(0, "EVIL ")
            async with asyncio.timeout(10):
                while 2 not in (await reader.seen())[0]:
                    await asyncio.sleep(0.02)
            _, logged = await reader.seen()
            assert any("read-only" in line for line in logged), logged
            writer.doc.get("text", type=Text).insert(11, "!")
            await writer.wait_saved()
            await reader.wait_contains("world!")
            room = server.rooms.get("notes")
            assert room is not None and text_of(room.doc) == "hello world!"
            assert text_of(writer.doc) == "hello world!"
            loaded = await server.store.load("notes")
            assert {e.user for e in loaded.entries} == {"wally"}
            opens, closes = await reader.connections()
            assert (opens, closes) == (1, [])


async def test_a_read_only_step_2_with_nothing_new_is_harmless(server: Server) -> None:
    async with connect(url(server, "notes", token("notes")), saved_acks=True) as writer:
        await writer.wait_synced()
        writer.doc.get("text", type=Text).insert(0, "abc")
        await writer.wait_saved()
        async with ws_connect(url(server, "notes", token("notes", "read"))) as ws:
            doc: Doc[Any] = Doc()
            await ws.send(protocol.encode(SyncStep1(doc.get_state())))
            while True:
                message = protocol.decode(await ws.recv())  # type: ignore[arg-type]
                if isinstance(message, SyncStep2):
                    doc.apply_update(message.update)
                    break
            # What it has is what the server has: sending it back is no write.
            await ws.send(protocol.encode(SyncStep2(doc.get_update())))
            await ws.send(protocol.encode(SyncStep1(doc.get_state())))
            reply = protocol.decode(await ws.recv())  # type: ignore[arg-type]
            assert isinstance(reply, SyncStep2)  # no auth message came first


async def test_a_connection_is_closed_with_4401_when_its_token_expires(server: Server) -> None:
    async with ws_connect(url(server, "notes", token("notes", ttl=2))) as ws:
        async with asyncio.timeout(10):
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4401, "token expired")


async def test_no_secret_means_open_and_a_warning(
    config: Config, serve_kind: ServeKind, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "collab.runtime"):
        async with serve_kind(config) as running:
            async with ws_connect(f"ws://127.0.0.1:{running.port}/notes") as ws:
                assert isinstance(protocol.decode(await ws.recv()), SyncStep1)  # type: ignore[arg-type]
    assert any("authentication is off" in r.getMessage() for r in caplog.records)


async def test_the_http_api_honours_tokens(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=base) as http:
        for doc in ("notes", "other"):
            response = await http.post(
                f"/api/docs/{doc}/text",
                json={"replace": f"text of {doc}"},
                headers={"Authorization": f"Bearer {token(doc, user='ed')}"},
            )
            assert response.status_code == 200, response.text
        assert {e.user for e in (await server.store.load("notes")).entries} == {"ed"}

        assert (await http.get("/api/docs")).status_code == 401
        assert (await http.get("/api/docs/notes/text")).status_code == 401
        read = token("notes", "read")
        listed = await http.get("/api/docs", params={"token": read})
        assert [d["name"] for d in listed.json()["docs"]] == ["notes"]
        everything = await http.get("/api/docs", params={"token": token("*", "read")})
        assert sorted(d["name"] for d in everything.json()["docs"]) == ["notes", "other"]
        text = await http.get("/api/docs/notes/text", headers={"Authorization": f"Bearer {read}"})
        assert (text.status_code, text.json()["text"]) == (200, "text of notes")
        assert (await http.get("/api/docs/other/text", params={"token": read})).status_code == 403
        bad = token("notes", "read", secret="another-secret-0123456789abcdef")
        assert (await http.get("/api/docs/notes/text", params={"token": bad})).status_code == 401
        written = await http.post(
            "/api/docs/notes/text", params={"token": read}, json={"replace": "x"}
        )
        assert written.status_code == 403 and "mode" in written.json()["error"]
        after = await http.get("/api/docs/notes/text", params={"token": read})
        assert after.json()["text"] == "text of notes"
        # Pages stay public: the browser client brings the token itself.
        assert (await http.get("/")).status_code == 200


async def test_origins_and_cors_preflights(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    read = token("notes", "read")
    async with httpx.AsyncClient(base_url=base) as http:
        evil = await http.get(
            "/api/docs", params={"token": read}, headers={"Origin": "https://evil.example"}
        )
        assert evil.status_code == 403 and "origin" in evil.json()["error"]
        good = await http.get("/api/docs", params={"token": read}, headers={"Origin": GOOD_ORIGIN})
        assert good.status_code == 200
        assert good.headers["access-control-allow-origin"] == GOOD_ORIGIN
        same = await http.get("/api/docs", params={"token": read}, headers={"Origin": base})
        assert same.status_code == 200 and "access-control-allow-origin" not in same.headers
        preflight = {"Access-Control-Request-Method": "POST"}
        answered = await http.options(
            "/api/docs/notes/text", headers={"Origin": GOOD_ORIGIN, **preflight}
        )
        assert answered.status_code == 204
        assert answered.headers["access-control-allow-origin"] == GOOD_ORIGIN
        assert "Authorization" in answered.headers["access-control-allow-headers"]
        assert "POST" in answered.headers["access-control-allow-methods"]
        refused_preflight = await http.options(
            "/api/docs/notes/text", headers={"Origin": "https://evil.example", **preflight}
        )
        assert refused_preflight.status_code == 403
        assert "access-control-allow-origin" not in refused_preflight.headers


async def test_the_http_fallback_passes_the_same_gate(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.post("/_http/notes")).status_code == 401
        assert (
            await http.post("/_http/notes", params={"token": token("other")})
        ).status_code == 403
        evil = await http.post(
            "/_http/notes",
            params={"token": token("notes")},
            headers={"Origin": "https://evil.example"},
        )
        assert evil.status_code == 403
        assert await server.store.documents() == [] and server.rooms.get("notes") is None
        opened = await http.post("/_http/notes", params={"token": token("notes")})
        assert opened.status_code == 201
        await eventually(lambda: server.rooms.get("notes") is not None)


async def test_the_python_client_sends_its_token_and_stops_on_a_permanent_code(
    server: Server,
) -> None:
    base = f"ws://127.0.0.1:{server.port}/notes"
    async with connect(base, token=token("notes", user="pat"), saved_acks=True) as client:
        await client.wait_synced()
        client.doc.get("text", type=Text).insert(0, "by pat")
        await client.wait_saved()
    assert {e.user for e in (await server.store.load("notes")).entries} == {"pat"}

    # Refused at the handshake: no retry, the reason is the server's.
    async with connect(base, backoff_initial=0.01) as anonymous:
        with pytest.raises(PermanentlyClosed) as refused_info:
            await anonymous.wait_synced()
        assert refused_info.value.code == 4401
        assert "token is required" in refused_info.value.reason
        assert anonymous.error is refused_info.value

    # Closed with 4401 when the token expires: no retry either.
    async with connect(base, token=token("notes", ttl=2), backoff_initial=0.01) as expiring:
        await expiring.wait_synced()
        with pytest.raises(PermanentlyClosed) as expired:
            await expiring.wait_for(lambda: False, timeout=10)
        assert (expired.value.code, expired.value.close_reason) == (4401, "token expired")
        await asyncio.sleep(0.3)  # a retrying client would be back by now (10 ms backoff)
        assert expiring.connections == 1 and not expiring.connected


async def test_the_python_client_with_a_read_token_stays_and_learns_it_is_read_only(
    server: Server,
) -> None:
    base = f"ws://127.0.0.1:{server.port}/notes"
    async with connect(base, token=token("notes", "read")) as reader:
        await reader.wait_synced()
        reader.doc.get("text", type=Text).insert(0, "nope")
        await reader.wait_for(lambda: reader.read_only)
        assert reader.connected and reader.error is None
    room = server.rooms.get("notes")
    assert room is None or text_of(room.doc) == ""


async def test_the_python_client_does_not_retry_after_a_permanent_close(
    config: Config, serve_kind: ServeKind
) -> None:
    async with serve_kind(config.replace(max_doc_bytes=2000)) as running:
        address = f"ws://127.0.0.1:{running.port}/big"
        async with connect(address, backoff_initial=0.01) as client:
            await client.wait_synced()
            client.doc.get("text", type=Text).insert(0, "x" * 5000)
            with pytest.raises(PermanentlyClosed) as info:
                await client.wait_for(lambda: False, timeout=10)
            assert info.value.code == 4413
            # The handshake would be admitted again (and its step 2 refused again).
            await asyncio.sleep(0.3)
            assert client.connections == 1 and not client.connected
