"""Server-side edits over HTTP on both servers: updates, text edits, state for bots, restores.

Each POST is applied to the live room (loaded for it when nobody has it open),
reaches connected editors at once, is logged with the caller as author and is
answered once durable. Bad requests are 400 and change nothing. A document
edited while nobody has it open is right after the server is killed and restarted.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Text, XmlElement, XmlFragment

from collab import client
from collab.client import EditFailed, connect
from collab.config import Config
from collab.history import versions as history
from collab.store import LogEntry
from tests.conftest import doc_url, eventually
from tests.serverproc import server_process
from tests.servers import KINDS, RunningServer


def http(server: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}")


async def state(server: RunningServer, doc: str) -> bytes:
    async with http(server) as h:
        reply = await h.get(f"/api/docs/{doc}/update")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    return reply.content


def text_of(update: bytes, root: str = "text") -> str:
    doc: Doc[Any] = Doc()
    doc.apply_update(update)
    return str(doc.get(root, type=Text))


async def test_binary_update_reaches_editors_and_is_logged(server: RunningServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    async with connect(doc_url(server, "bin")) as editor:
        await editor.wait_synced()
        bot: Doc[Any] = Doc()
        bot.get("text", type=Text).insert(0, "from a bot")
        seq = await client.edit(url, "bin", update=bot.get_update(), author="bot")
        text = editor.doc.get("text", type=Text)
        await editor.wait_for(lambda: str(text) == "from a bot")
    assert seq == 1
    [entry] = await server.store.entries("bin")
    assert (entry.client, entry.user) == ("http:bot", "bot")
    # The same update again changes nothing and logs nothing: the seq it is durable at.
    assert await client.edit(url, "bin", update=bot.get_update()) == 1
    assert len(await server.store.entries("bin")) == 1


async def test_garbage_update_is_400_and_changes_nothing(server: RunningServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    await client.edit(url, "safe", insert=(0, "intact"))
    before = await state(server, "safe")
    async with http(server) as h:
        for garbage in (b"garbage", b"\x01\x02\x03\xff\xff", b"\x00"):
            reply = await h.post("/api/docs/safe/update", content=garbage)
            assert reply.status_code == 400, garbage
            assert "invalid update" in reply.json()["error"]
        reply = await h.post("/api/docs/safe/update", content=b"")
        assert reply.status_code == 400 and "the body is empty" in reply.json()["error"]
    assert await state(server, "safe") == before
    assert text_of(before) == "intact"
    assert len(await server.store.entries("safe")) == 1


async def test_text_edits_count_code_points(server: RunningServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    assert await client.edit(url, "t", insert=(0, "héllo 😀 world"), author="ada") == 1
    assert await client.edit(url, "t", insert=(8, "big "), author="ada") == 2
    assert await client.edit(url, "t", delete=(0, 6), author="bob") == 3
    assert text_of(await state(server, "t")) == "😀 big world"
    assert await client.edit(url, "t", replace="😀 small world", author="cy") == 4
    assert text_of(await state(server, "t")) == "😀 small world"
    # Nothing to change: no entry, the seq the document is durable at.
    assert await client.edit(url, "t", replace="😀 small world") == 4
    entries = await server.store.entries("t")
    assert [(e.client, e.user) for e in entries] == [
        ("http:ada", "ada"),
        ("http:ada", "ada"),
        ("http:bob", "bob"),
        ("http:cy", "cy"),
    ]


async def test_replace_is_a_minimal_diff(server: RunningServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    await client.edit(url, "min", insert=(0, "alpha beta gamma delta"))
    await client.edit(url, "min", replace="alpha BETA gamma DELTA")
    first, second = await server.store.entries("min")
    # Only "beta" and "delta" went, "BETA" and "DELTA" came; " gamma " stayed.
    doc: Doc[Any] = Doc()
    doc.apply_update(first.update)
    deltas: list[Any] = []
    text = doc.get("text", type=Text)
    text.observe(lambda event: deltas.extend(getattr(event, "delta")))  # noqa: B009
    doc.apply_update(second.update)
    assert sum(op.get("delete", 0) for op in deltas) == len("betadelta")
    assert "".join(op.get("insert", "") for op in deltas) == "BETADELTA"


async def test_bad_text_requests_are_400(server: RunningServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    await client.edit(url, "bad", insert=(0, "abc"))
    async with http(server) as h:
        for body in (
            b"not json",
            b"[1]",
            b'{"insert": {"index": 9, "text": "x"}}',
            b'{"insert": {"index": -1, "text": "x"}}',
            b'{"insert": {"index": "0", "text": "x"}}',
            b'{"delete": {"index": 2, "length": 5}}',
            b'{"replace": 5}',
            b'{"replace": "x", "insert": {"index": 0, "text": "y"}}',
            b'{"replace": "x", "base": 99}',
            b"{}",
        ):
            reply = await h.post("/api/docs/bad/text", content=body)
            assert reply.status_code == 400, body
            assert reply.json()["error"]
        assert (await h.post("/api/docs/bad/versions")).status_code == 405
        options = await h.options("/api/docs/bad/update")
        # DELETE too: the path also names the document "bad/update", which DELETE removes.
        # An endpoint's path is not a document DELETE removes (collab.http.api.delete_route).
        assert options.headers["allow"] == "GET, HEAD, OPTIONS, POST"
        options = await h.options("/api/docs/bad")
        assert options.headers["allow"] == "DELETE, GET, HEAD, OPTIONS"
    assert text_of(await state(server, "bad")) == "abc"
    with pytest.raises(EditFailed) as failed:
        await client.edit(url, "bad", delete=(1, 10))
    assert failed.value.http_status == 400 and "outside the text" in failed.value.reason


async def test_text_edit_of_an_xml_document_is_refused(server: RunningServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    pm: Doc[Any] = Doc()
    pm.get("prosemirror", type=XmlFragment).children.append(XmlElement("paragraph"))
    await client.edit(url, "pm", update=pm.get_update())
    with pytest.raises(EditFailed) as failed:
        await client.edit(url, "pm", insert=(0, "x"))
    assert failed.value.http_status == 400 and "Y.XmlFragment" in failed.value.reason


async def test_state_for_a_state_vector(server: RunningServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    await client.edit(url, "sv", insert=(0, "first"))
    mine: Doc[Any] = Doc()
    mine.apply_update(await state(server, "sv"))
    await client.edit(url, "sv", insert=(5, " second"))
    vector = base64.b64encode(mine.get_state()).decode()
    async with http(server) as h:
        missing = await h.get("/api/docs/sv/update", params={"state_vector": vector})
        assert missing.status_code == 200
        assert len(missing.content) < len(await state(server, "sv"))
        mine.apply_update(missing.content)
        assert str(mine.get("text", type=Text)) == "first second"
        assert (await h.get("/api/docs/sv/update?state_vector=%%%")).status_code == 400
        bogus = base64.b64encode(b"\xff\xff\xff").decode()
        assert (await h.get("/api/docs/sv/update", params={"state_vector": bogus})).is_client_error
        assert (await h.get("/api/docs/nobody-here/update")).status_code == 404
    # Unloaded, it is read from the store: the same state.
    await eventually(lambda: "sv" not in server.rooms)
    assert text_of(await state(server, "sv")) == "first second"


async def test_a_closed_document_is_loaded_for_the_edit_then_unloaded(
    server: RunningServer,
) -> None:
    url = f"http://127.0.0.1:{server.port}"
    assert "idle" not in server.rooms
    await client.edit(url, "idle", insert=(0, "x"))
    await eventually(lambda: "idle" not in server.rooms)  # after unload_grace_seconds
    assert await client.edit(url, "idle", insert=(1, "y")) == 2
    text, _ = await history.text_at(server.store, server.config, "idle")
    assert text == "xy"


async def test_restore_errors(server: RunningServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    with pytest.raises(EditFailed) as failed:
        await client.restore(url, "never", 1)
    assert failed.value.http_status == 404
    await client.edit(url, "r", insert=(0, "x"))
    with pytest.raises(EditFailed) as failed:
        await client.restore(url, "r", 7)
    assert failed.value.http_status == 400 and "no version 7" in failed.value.reason
    async with http(server) as h:
        assert (await h.post("/api/docs/r/restore", json={})).status_code == 400
        reply = await h.post("/api/docs/r/restore", json={"at": "1"})
        assert reply.status_code == 200 and reply.json()["restored_from"] == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_an_edit_nobody_watches_survives_a_kill(tmp_path: Path, kind: str) -> None:
    db = f"sqlite:///{tmp_path / 'collab.db'}"
    async with server_process(db, tmp_path / "server.log", kind) as proc:
        url = f"http://127.0.0.1:{proc.port}"
        await client.edit(url, "notes/todo", insert=(0, "buy milk"), author="bot")
        seq = await client.edit(url, "notes/todo", insert=(8, ", eggs"), author="bot")
        proc.kill()  # no flush, no goodbye: what was answered is durable
        await proc.start()
        async with httpx.AsyncClient(base_url=url) as h:
            reply = await h.get("/api/docs/notes/todo/text")
        assert reply.json()["text"] == "buy milk, eggs"
        assert reply.json()["version"]["last_seq"] == seq == 2
        assert reply.json()["version"]["contributors"] == ["bot"]


async def test_concurrent_edits_each_get_their_own_seq(server: RunningServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    seqs = await asyncio.gather(
        *(client.edit(url, "many", insert=(0, str(i)), author=f"bot{i}") for i in range(6))
    )
    assert sorted(seqs) == [1, 2, 3, 4, 5, 6]
    entries = {e.seq: e.user for e in await server.store.entries("many")}
    assert {seq: f"bot{i}" for i, seq in enumerate(seqs)} == entries


def test_a_restore_is_a_version_of_its_own() -> None:
    config = Config(version_gap_seconds=60.0)
    entries = [
        LogEntry(1, b"", 100.0, "c"),
        LogEntry(2, b"", 101.0, "restore:1", "ada"),
        LogEntry(3, b"", 102.0, "c"),
        LogEntry(4, b"", 103.0, "c"),
    ]
    assert [[e.seq for e in group] for group in history.cut(entries, config)] == [[1], [2], [3, 4]]
    assert [history.restored_from(e) for e in entries] == [None, 1, None, None]
    merged = LogEntry(2, b"", 101.0, "restore:1,c")  # retention merged it with an edit
    assert history.restored_from(merged) is None
