"""The HTTP fallback transport on the wire: httpx against a real server, a real SQLite file,
on both servers (``collab serve``'s listener and the ASGI app under uvicorn).

Each test drives :class:`tests.fallback_peer.FallbackPeer` by hand (open, listen,
post, cut, resume) beside stock-protocol WebSocket editors, so what is lost,
repeated or resumed is the test's choice, never a retry loop's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab.client import connect
from collab.config import Config
from collab.errors import SessionExpired
from collab.server import serve
from collab.transports.fallback import EventStream
from collab.wire import protocol
from collab.wire.fallback import EventStreamParser, encode_batch
from collab.wire.protocol import (
    Awareness,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    Update,
    decode_awareness,
)
from tests import servers
from tests.conftest import ServeKind, doc_url, eventually
from tests.fallback_peer import FallbackPeer, awareness_message, sessions
from tests.servers import RunningServer
from tests.test_server import HOSTILE


def text_of(client: object) -> str:
    return str(client.doc.get("text", type=Text))  # type: ignore[attr-defined]


def length_is(client: object, length: int) -> Callable[[], bool]:
    return lambda: len(text_of(client)) == length


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 6000)),
        st.tuples(st.sampled_from(["read", "lose", "resume"]), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_an_event_stream_resumed_after_what_it_received_misses_nothing_and_repeats_nothing(
    ops: list[tuple[str, int]],
) -> None:
    """EventStream alone, against a client model: it reads chunks, loses some (taken by a
    stream that died), and resumes with the last id it received. Whatever it received
    over all its streams is every message once, in order, unless the replay buffer let
    go of one it never got, which the resume then says."""
    limit = 16_000

    async def scenario() -> None:
        stream = EventStream(Config(outbox_max_bytes=limit), lambda code, reason: None)
        parser = EventStreamParser()
        received: list[int] = []
        written = 0
        events = stream.attach(0)
        cut = False
        for op, size in [*ops, ("resume", 0), ("read", 0)]:
            if op == "write":
                if stream.buffered and stream.buffered + size > limit:
                    continue  # the session core closes such a session (1013); not modelled
                written += 1
                stream.write(written.to_bytes(4, "big") * (size // 4 + 1))
            elif op in ("read", "lose") and stream.buffered and not cut:
                chunk = await anext(events)
                if op == "lose":
                    cut = True  # this chunk died with its connection
                    continue
                for event in parser.feed(chunk):
                    message = event.message()
                    assert int(event.id or 0) == int.from_bytes(message[:4], "big")
                    received.append(int(event.id or 0))
            elif op == "resume":
                await events.aclose()
                try:
                    events = stream.attach(received[-1] if received else 0)
                except SessionExpired:
                    return  # a message it missed left the buffer: a new session resyncs
                parser, cut = EventStreamParser(), False
        while stream.buffered:
            for event in parser.feed(await anext(events)):
                received.append(int(event.id or 0))
        await events.aclose()
        assert received == list(range(1, written + 1))

    asyncio.run(scenario())


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(server) as client:
        yield client


def client_of(server: RunningServer, read: float | None = 10) -> httpx.AsyncClient:
    timeout = httpx.Timeout(10, read=read)
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=timeout)


async def test_full_sync_over_events_and_posts(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    async with connect(doc_url(server, "team/notes")) as ws_editor:
        await ws_editor.wait_synced()
        ws_editor.doc.get("text", type=Text).insert(0, "written over WebSocket")
        ws_editor.set_awareness({"user": {"name": "ws"}})

        peer = FallbackPeer(http, "team/notes")
        opened = await peer.open()
        assert opened.status_code == 201
        assert opened.json()["keepalive"] == server.config.fallback_keepalive_seconds
        stream = await peer.listen()
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"

        # The server greets as it greets a WebSocket: its step 1, then who is here.
        first = await peer.next_message()
        assert isinstance(first, SyncStep1)
        presence = await peer.next_message()
        assert isinstance(presence, Awareness)
        states = [json.loads(e.state) for e in decode_awareness(presence.payload)]
        assert states == [{"user": {"name": "ws"}}]
        reply = await peer.post(
            protocol.encode(SyncStep2(peer.doc.get_update(first.state_vector))),
            protocol.encode(SyncStep1(peer.doc.get_state())),
        )
        assert reply.status_code == 200 and reply.json() == {"seq": 0}
        step2 = await peer.next_message()
        assert isinstance(step2, SyncStep2)
        peer.doc.apply_update(step2.update)
        assert peer.text == "written over WebSocket"

        assert (await peer.insert(0, "and over HTTP: ")).status_code == 200
        await ws_editor.wait_for(
            lambda: text_of(ws_editor) == "and over HTTP: written over WebSocket"
        )
        assert peer.ids == [1, 2, 3]  # one id per event, counting from 1
        await peer.cut()


async def test_co_editing_with_a_websocket_editor(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    async with connect(doc_url(server, "pair")) as ws_editor:
        await ws_editor.wait_synced()
        peer = FallbackPeer(http, "pair")
        await peer.sync()
        await peer.post(awareness_message(peer.doc.client_id, 1, {"user": {"name": "http"}}))
        await ws_editor.wait_for(lambda: {"user": {"name": "http"}} in ws_editor.peers.values())

        text = ws_editor.doc.get("text", type=Text)
        text.insert(0, "|")  # so that "before" and "after" mean the same on both sides
        expected = "|"
        await peer.wait_text(expected)
        for i in range(10):
            text.insert(len(text), f"w{i} ")
            await peer.insert(0, f"h{i} ")
            expected = f"h{i} " + expected + f"w{i} "
        await peer.wait_text(expected)
        await ws_editor.wait_for(lambda: text_of(ws_editor) == expected)
        # Nothing the server sent was missed or repeated: ids go up one by one.
        assert peer.ids == list(range(1, len(peer.ids) + 1))
        await peer.cut()


async def test_a_stream_cut_between_two_messages_resumes_with_nothing_missing_or_repeated(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    async with connect(doc_url(server, "resume")) as ws_editor:
        await ws_editor.wait_synced()
        text = ws_editor.doc.get("text", type=Text)
        peer = FallbackPeer(http, "resume")
        await peer.open()
        # This stream is read by hand, to cut it in the middle of an event.
        request = http.build_request("GET", peer.path, params={"session": peer.key})
        response = await http.send(request, stream=True)
        raw = b""
        chunks = response.aiter_raw()
        text.insert(0, "one ")
        text.insert(4, "two ")
        text.insert(8, "three ")
        while raw.count(b"\n\n") < 4:  # the greeting and the three updates have all arrived
            raw += await anext(chunks)
        ends = [i + 2 for i in range(len(raw)) if raw.startswith(b"\n\n", i)]
        # The client got the greeting and "one " whole, and half of the event with "two ".
        received = raw[: ends[1] + (ends[2] - ends[1]) // 2]
        await response.aclose()
        parser = EventStreamParser()
        events = parser.feed(received)
        assert [e.id for e in events] == ["1", "2"]
        doc_so_far = [protocol.decode(e.message()) for e in events]
        assert isinstance(doc_so_far[0], SyncStep1) and isinstance(doc_so_far[1], Update)
        peer.doc.apply_update(doc_so_far[1].update)
        assert peer.text == "one "

        text.insert(len(text), "four")  # sent while no stream is open
        resumed = await peer.listen(last_event_id=int(parser.last_event_id or 0))
        assert resumed.status_code == 200
        await peer.wait_text("one two three four")
        assert peer.ids == [3, 4, 5]  # exactly what the first stream lost, then the new one
        await peer.cut()


async def test_a_retried_post_is_applied_once(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    async with connect(doc_url(server, "retry")) as ws_editor:
        await ws_editor.wait_synced()
        peer = FallbackPeer(http, "retry")
        await peer.sync()
        seq = peer.seq

        before = peer.doc.get_state()
        peer.doc.get("text", type=Text).insert(0, "once")
        edit = protocol.encode(Update(peer.doc.get_update(before)))
        ask = protocol.encode(SyncStep1(peer.doc.get_state()))
        first = await peer.post(edit, ask, seq=seq)
        assert first.json() == {"seq": seq}
        # The answer was lost, say: the client sends the very same POST again...
        again = await peer.post(edit, ask, seq=seq)
        assert again.status_code == 200 and again.json() == {"seq": seq, "duplicate": True}
        # ...and whatever a POST with a number already applied holds is not applied.
        stray: Doc[Any] = Doc()
        stray.get("text", type=Text).insert(0, "stray")
        late = await peer.post(protocol.encode(Update(stray.get_update())), seq=seq)
        assert late.json()["duplicate"] is True
        # A number from the future is a gap: refused, and it says which one comes next.
        gap = await peer.post(edit, seq=seq + 5)
        assert gap.status_code == 409 and gap.json()["expected"] == seq + 1
        # The next POST asks who is here: its answer comes after every earlier one.
        assert (await peer.post(protocol.encode(QueryAwareness()), seq=seq + 1)).status_code == 200

        answers: list[Message] = []
        while not answers or not isinstance(answers[-1], Awareness):
            answers.append(await peer.next_message())
        assert [type(m) for m in answers] == [SyncStep2, Awareness]  # one step 1, one answer
        await ws_editor.wait_for(lambda: text_of(ws_editor) == "once")
        ws_editor.doc.get("text", type=Text).insert(4, "!")
        await peer.wait_text("once!")
        assert "stray" not in text_of(ws_editor)
        await peer.cut()


@pytest.mark.parametrize("kind", [*HOSTILE, "broken batch", "empty batch"])
async def test_a_hostile_message_closes_only_that_session_with_its_code(
    server: RunningServer, http: httpx.AsyncClient, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="collab.session")
    async with connect(doc_url(server, "target")) as ws_editor:
        await ws_editor.wait_synced()
        good, bad = FallbackPeer(http, "target"), FallbackPeer(http, "target")
        await good.sync()
        await bad.sync()
        await good.insert(0, "intact")
        await ws_editor.wait_for(lambda: text_of(ws_editor) == "intact")
        if kind == "broken batch":
            body, code = b"\x09\x00\x02", 1002
        elif kind == "empty batch":
            body, code = b"", 1002
        else:
            frame, code = HOSTILE[kind]
            body = encode_batch([frame])
        answer = await http.post(
            bad.path, params={"session": bad.key, "seq": str(bad.seq)}, content=body
        )
        assert answer.status_code == 410 and answer.json()["code"] == code
        assert (await bad.closed())[0] == code  # the stream's last event says the same
        assert (await bad.insert(0, "more")).json()["code"] == code  # and so does the next POST
        assert any(f"({code})" in r.getMessage() for r in caplog.records)

        ws_editor.doc.get("text", type=Text).insert(6, "!")
        await good.wait_text("intact!")
        await good.insert(0, ">")
        await ws_editor.wait_for(lambda: text_of(ws_editor) == ">intact!")
        await good.cut()
        await bad.cut()


async def test_a_body_over_the_message_limit_is_refused(
    config: Config, serve_kind: ServeKind
) -> None:
    async with serve_kind(config.replace(max_message_size=64 * 1024)) as server:
        async with client_of(server) as http:
            peer = FallbackPeer(http, "big")
            await peer.open()
            answer = await peer.post(b"\x00\x02" + b"\x01" * (70 * 1024))
            assert answer.status_code == 413 and "over" in answer.json()["error"]


async def test_requests_for_a_session_that_is_not_there(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    peer = FallbackPeer(http, "here")
    await peer.open()
    cases: list[tuple[str, str, dict[str, str], dict[str, str]]] = [
        ("GET", "/_http/here", {"session": "nope"}, {}),
        ("POST", "/_http/here", {"session": "nope", "seq": "0"}, {}),
        ("GET", "/_http/elsewhere", {"session": peer.key}, {}),  # the key of another document
    ]
    for method, path, params, headers in cases:
        answer = await http.request(method, path, params=params, headers=headers)
        assert answer.status_code == 404, (method, path)
        assert "no such session" in answer.json()["error"]
    for params, headers in [
        ({}, {}),  # GET without a session
        ({"session": peer.key}, {"Last-Event-ID": "x"}),
        ({"session": peer.key}, {"Last-Event-ID": "99"}),  # never sent
    ]:
        answer = await http.get("/_http/here", params=params, headers=headers)
        assert answer.status_code == 400, (params, headers)
    assert (await http.post("/_http/here", params={"session": peer.key})).status_code == 400
    assert (await http.post("/_http/bad%09name")).status_code == 400  # the gate's name rule
    signal = await http.post("/_http/signal")  # the gate's signaling endpoint: WebSocket only
    assert signal.status_code == 404 and "only documents" in signal.json()["error"]
    assert (await http.put("/_http/here")).status_code == 405
    assert (await http.delete("/_http/here", params={"session": peer.key})).status_code == 204
    assert (await http.post("/_http/here", params={"session": peer.key})).status_code == 404


async def test_an_idle_session_expires_and_an_open_stream_keeps_it(
    config: Config, serve_kind: ServeKind
) -> None:
    quick = config.replace(fallback_session_idle_seconds=0.3, fallback_keepalive_seconds=0.05)
    async with serve_kind(quick) as server:
        async with (
            client_of(server) as http,
            connect(doc_url(server, "idle")) as watcher,
        ):
            await watcher.wait_synced()
            peer = FallbackPeer(http, "idle")
            await peer.sync()
            await peer.post(awareness_message(peer.doc.client_id, 1, {"user": "http"}))
            await watcher.wait_for(lambda: peer.doc.client_id in watcher.peers)
            # Streaming, the session outlives its idle time many times over.
            await eventually(lambda: peer.parser.comments >= 20)
            assert (await peer.insert(0, "alive")).status_code == 200
            await watcher.wait_for(lambda: text_of(watcher) == "alive")

            await peer.cut()
            # Without a stream or a request it ends, as a dropped connection: presence goes.
            await watcher.wait_for(lambda: peer.doc.client_id not in watcher.peers)
            assert (await peer.insert(0, "late")).status_code == 404
            assert sessions(server) == 0


async def test_resuming_past_the_replay_buffer_is_refused_and_a_new_session_resyncs(
    config: Config, serve_kind: ServeKind
) -> None:
    async with serve_kind(config.replace(outbox_max_bytes=64 * 1024)) as server:
        async with (
            client_of(server) as http,
            connect(doc_url(server, "gap")) as ws_editor,
        ):
            await ws_editor.wait_synced()
            peer = FallbackPeer(http, "gap")
            await peer.sync()
            text = ws_editor.doc.get("text", type=Text)
            for letter in "abc":  # 3 x 40 KiB: the first leaves the 64 KiB replay buffer
                text.insert(len(text), letter * 40 * 1024)
                await peer.wait_text(str(text))
            await peer.cut()
            # Say the client saw none of it: the events are gone, it cannot resume.
            answer = await peer.listen(last_event_id=2)
            assert answer.status_code == 404 and "cannot resume" in answer.json()["error"]
            asked = await peer.post(protocol.encode(QueryAwareness()))
            assert asked.status_code == 404  # that session is over

            fresh = FallbackPeer(http, "gap")
            fresh.doc.apply_update(peer.doc.get_update())  # same local doc, new session
            fresh.doc.get("text", type=Text).insert(0, "offline ")
            await fresh.sync()
            await ws_editor.wait_for(lambda: text_of(ws_editor).startswith("offline aaa"))
            assert len(text_of(ws_editor)) == len("offline ") + 3 * 40 * 1024
            await fresh.cut()


async def test_a_slow_event_stream_reader_is_dropped_and_slows_nobody(
    config: Config, serve_kind: ServeKind
) -> None:
    # Well above what one loop turn can queue for a stream (one read of frames, 256 KiB).
    limit = 1024 * 1024
    async with serve_kind(config.replace(outbox_max_bytes=limit)) as server:
        async with (
            client_of(server) as http,
            connect(doc_url(server, "firehose")) as writer,
            connect(doc_url(server, "firehose")) as reader,
        ):
            await writer.wait_synced()
            await reader.wait_synced()
            away = FallbackPeer(http, "firehose")  # never opens its stream
            await away.open()
            stuck = FallbackPeer(http, "firehose")  # opens it, and never reads
            await stuck.open()
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
            get = f"GET {stuck.path}?session={stuck.key} HTTP/1.1\r\nHost: x\r\n\r\n"
            await asyncio.get_running_loop().sock_sendall(sock, get.encode())
            head = b""
            while b"\r\n\r\n" not in head:  # the stream is open; from here on, nobody reads
                head += await asyncio.get_running_loop().sock_recv(sock, 1)
            assert head.startswith(b"HTTP/1.1 200 ")
            live = FallbackPeer(http, "firehose")  # a fallback editor that keeps up
            await live.sync()

            text = writer.doc.get("text", type=Text)
            chunk = "x" * 16 * 1024
            count = 480  # 7.9 MB in all (10.5 MB of base64), beyond kernel buffers and the bound
            for i in range(count):
                text.insert(0, chunk)
                if i % 25 == 24:  # bursts of 400 KiB, each read by those who keep up
                    await reader.wait_for(length_is(reader, (i + 1) * len(chunk)))
                    await live.wait_text(str(text), timeout=30)
            for slow in (away, stuck):
                answer = await slow.insert(0, "?")
                assert answer.status_code == 410 and answer.json()["code"] == 1013
            assert sessions(server) == 1
            sock.close()
            await live.cut()


async def test_shutdown_ends_event_streams_with_1001(config: Config) -> None:
    async with serve(config) as server:
        http = client_of(server)
        peer = FallbackPeer(http, "bye")
        await peer.sync()
    assert await peer.closed() == (1001, "server shutting down")
    await peer.cut()
    await http.aclose()


async def test_an_open_event_stream_does_not_hold_up_an_asgi_server_shutdown(
    config: Config,
) -> None:
    # uvicorn waits for open responses before the ASGI lifespan shutdown, so an event
    # stream is cut after its graceful timeout (docs/asgi.md); the session then ends.
    async with asyncio.timeout(30):
        async with servers.serve_asgi(config.replace(close_timeout=0.5)) as server:
            http = client_of(server, read=None)  # a reader that never gives up
            peer = FallbackPeer(http, "bye")
            await peer.sync()
        await peer.ended()
    await http.aclose()
