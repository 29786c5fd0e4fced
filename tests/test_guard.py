"""Deleting documents and the deleted-document guard, on real servers with stock Yjs clients.

A stock y-websocket client (tests/interop/peer.mjs) edits ``notes``; ``notes`` is
deleted (``DELETE /api/docs/notes`` or ``collab delete`` on the same store while
the server runs) and created anew with other text; when the old client comes
back it is closed with 4404 and the new text stays as it was, in memory and after
a restart. The rule itself (collab.core.guard) is tested as the pure code it is.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Text

from collab.config import Config
from collab.core.guard import Guard
from collab.errors import DocumentDeleted, InvalidPayload
from collab.history import versions as history
from collab.wire.vectors import decode_state_vector, encode_state_vector, update_ranges
from tests.conftest import ServeKind, eventually
from tests.interop.node_peer import NodePeer
from tests.servers import RunningServer
from tests.test_auth import SECRET, token
from tests.test_migrations import collab
from tests.webhook_receiver import receiver


def text_doc(content: str, client_id: int | None = None) -> Doc[Any]:
    doc: Doc[Any] = Doc() if client_id is None else Doc(client_id=client_id)
    doc.get("text", type=Text).insert(0, content)
    return doc


# -- the rule ---------------------------------------------------------------------------


def test_a_copy_of_a_deleted_incarnation_is_refused_and_a_new_one_is_not() -> None:
    old = text_doc("old text", client_id=7)
    guard = Guard.from_tombstones([old.get_state()])
    assert guard is not None
    new = text_doc("new text", client_id=9)
    # The stale copy: its step 1, its step 2 (what the new document lacks), an update.
    with pytest.raises(DocumentDeleted):
        guard.check_state_vector(old.get_state(), new.get_state())
    with pytest.raises(DocumentDeleted):
        guard.check_update(old.get_update(new.get_state()), new.get_state())
    before = old.get_state()
    old.get("text", type=Text).insert(0, "more ")
    with pytest.raises(DocumentDeleted):  # an offline copy pushed whole (y-indexeddb's way)
        guard.check_update(old.get_update(), new.get_state())
    with pytest.raises(DocumentDeleted):  # structs past the tombstone, made by its holder
        guard.check_update(old.get_update(before), new.get_state())
    # A client of the new incarnation, and a fresh one, pass.
    fresh: Doc[Any] = Doc(client_id=11)
    guard.check_state_vector(new.get_state(), new.get_state())
    guard.check_state_vector(fresh.get_state(), new.get_state())
    guard.check_update(new.get_update(), new.get_state())
    # The deleted document imported again holds its structs: its clients pass.
    reimported: Doc[Any] = Doc()
    reimported.apply_update(old.get_update())
    guard.check_state_vector(old.get_state(), reimported.get_state())


def test_update_ranges_are_the_clocks_each_client_s_structs_span() -> None:
    """Checked against Yrs: full updates end at the state vector, incremental ones start
    at the state they were made from; strings count UTF-16 code units, as clocks do."""
    doc: Doc[Any] = Doc(client_id=5)
    text = doc.get("text", type=Text)
    text.insert(0, "a🙂é")  # 1 + 2 + 1 code units
    assert update_ranges(doc.get_update()) == {5: (0, 4)}
    before = doc.get_state()
    text.insert(1, "漢字")
    other: Doc[Any] = Doc(client_id=6)
    other.apply_update(doc.get_update())
    other.get("text", type=Text).insert(0, "x")
    assert update_ranges(doc.get_update(before)) == {5: (4, 6)}
    assert update_ranges(other.get_update()) == {5: (0, 6), 6: (0, 1)}
    assert update_ranges(other.get_update(doc.get_state())) == {6: (0, 1)}
    with pytest.raises(InvalidPayload):
        update_ranges(doc.get_update()[:-3])


def test_tombstones_merge_and_empty_ones_need_no_guard() -> None:
    assert Guard.from_tombstones([]) is None
    assert Guard.from_tombstones([b"\x00"]) is None
    guard = Guard.from_tombstones([encode_state_vector({1: 5, 2: 3}), encode_state_vector({1: 2})])
    assert guard is not None and guard.deleted == {1: 5, 2: 3}
    assert guard.stale_clients({1: 1}, {}) == [1]
    assert guard.stale_clients({1: 5}, {1: 5}) == []  # the new document has all of it
    assert guard.stale_clients({3: 9}, {}) == []  # never deleted
    with pytest.raises(InvalidPayload):
        decode_state_vector(b"\xff\xff\xff\xff\xff\xff\x7f\x01")  # claims 2**48 clients


# -- live: stock clients, both servers ------------------------------------------------------


def api(server: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10)


async def stored_text(server: RunningServer, doc: str) -> str:
    text, _ = await history.text_at(server.store, server.config, doc, None)
    return text


async def delete_with(how: str, server: RunningServer, doc: str) -> None:
    if how == "api":
        async with api(server) as http:
            reply = await http.delete(f"/api/docs/{doc}")
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"deleted": doc}
    else:
        done = await asyncio.to_thread(collab, "delete", doc, "--yes", "--db", server.config.db_url)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("how", ["api", "cli"])
async def test_an_old_client_cannot_bring_a_deleted_document_back(
    how: str, config: Config, serve_kind: ServeKind, tmp_path: Path
) -> None:
    settings = config.replace(deletion_poll_interval=0.1, commit_interval=0.01)
    async with serve_kind(settings) as server:
        url = f"ws://127.0.0.1:{server.port}"
        async with NodePeer(url, "notes") as old:
            await old.wait_synced()
            await old.insert(0, "deleted text")
            await eventually(lambda: server.rooms.get("notes") is not None)
            await eventually_stored(server, "notes", "deleted text")
            await delete_with(how, server, "notes")
            # Open while it happened: closed with 4404 (and every reconnect too, below).
            await old.wait_close(4404, seconds=10)
            await old.disconnect()
            assert await server.store.document("notes") is None
            assert await server.store.entries("notes") == []
            async with NodePeer(url, "notes") as new:
                await new.wait_synced()
                assert await new.text() == ""
                await new.insert(0, "new text")
                await eventually_stored(server, "notes", "new text")
                closed = sum(1 for code, _ in await old.closes() if code == 4404)
                await old.connect()  # the stale tab comes back: step 1, then step 2
                await old.wait_close(4404, count=closed + 1, seconds=10)
                await old.disconnect()
                await asyncio.sleep(0.3)  # anything it might have sent would have landed
                assert await new.text() == "new text"
                room = server.rooms.get("notes")
                assert room is not None
                assert str(room.doc.get("text", type=Text)) == "new text"
                assert await stored_text(server, "notes") == "new text"
    async with serve_kind(settings) as again:
        assert await stored_text(again, "notes") == "new text"
        async with NodePeer(f"ws://127.0.0.1:{again.port}", "notes") as later:
            await later.wait_synced()
            assert await later.text() == "new text"


async def eventually_stored(server: RunningServer, doc: str, text: str) -> None:
    async with asyncio.timeout(10):
        while True:
            try:
                if await stored_text(server, doc) == text:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.05)


async def test_delete_closes_editors_removes_history_and_tells_the_webhooks(
    config: Config, serve_kind: ServeKind
) -> None:
    async with receiver() as hook:
        settings = config.replace(webhook_url=(hook.url,), webhook_secret="s", commit_interval=0.01)
        async with serve_kind(settings) as server:
            url = f"ws://127.0.0.1:{server.port}"
            async with NodePeer(url, "team/plan") as alice, NodePeer(url, "team/plan") as bob:
                await alice.wait_synced()
                await bob.wait_synced()
                await alice.insert(0, "plan")
                await bob.wait_text("plan")
                await eventually_stored(server, "team/plan", "plan")
                async with api(server) as http:
                    assert (await http.get("/api/docs/team/plan/versions")).status_code == 200
                    reply = await http.delete("/api/docs/team/plan")
                    assert reply.status_code == 200, reply.text
                    await alice.wait_close(4404)
                    await bob.wait_close(4404)
                    assert (await http.get("/api/docs/team/plan/versions")).status_code == 404
                    missing = await http.delete("/api/docs/team/plan")
                    assert missing.status_code == 404
                    assert "no document" in missing.json()["error"]
                    assert (await http.delete("/api/docs/never-was")).status_code == 404
                    listed = (await http.get("/api/docs")).json()["docs"]
                    assert "team/plan" not in [d["name"] for d in listed]
                await alice.disconnect()
                await bob.disconnect()
            assert await server.store.document("team/plan") is None
            assert await server.store.entries("team/plan") == []
            assert await server.store.snapshot_before("team/plan", 10**9) is None
            [tombstone] = [t for t in await server.store.tombstones() if t.doc == "team/plan"]
            assert decode_state_vector(tombstone.state_vector)
            await hook.wait_for(lambda: hook.events("document.deleted"))
    [deleted] = hook.events("document.deleted")
    assert deleted["doc"] == "team/plan"


async def test_delete_needs_an_admin_token_for_the_document(
    config: Config, serve_kind: ServeKind
) -> None:
    async with serve_kind(config.replace(auth_secret=SECRET, commit_interval=0.01)) as server:
        url = f"ws://127.0.0.1:{server.port}"
        async with NodePeer(url, "secret", params={"token": token("secret")}) as editor:
            await editor.wait_synced()
            await editor.insert(0, "keep me")
            await eventually_stored(server, "secret", "keep me")
            async with api(server) as http:
                refusals = {
                    "none": await http.delete("/api/docs/secret"),
                    "write": await http.delete(
                        "/api/docs/secret", headers=bearer(token("secret", "write"))
                    ),
                    "other": await http.delete(
                        "/api/docs/secret", headers=bearer(token("other", "admin"))
                    ),
                }
                assert {k: r.status_code for k, r in refusals.items()} == {
                    "none": 401,
                    "write": 403,
                    "other": 403,
                }
                assert await stored_text(server, "secret") == "keep me"
                assert not [c for c, _ in await editor.closes() if c == 4404]
                allowed = await http.delete(
                    "/api/docs/secret", headers=bearer(token("secret", "admin"))
                )
                assert allowed.status_code == 200, allowed.text
                await editor.wait_close(4404)
                await editor.disconnect()
                gone = await http.delete(
                    "/api/docs/secret", headers=bearer(token("team-*", "admin"))
                )
                assert gone.status_code == 403  # a prefix token covers only its prefix
                gone = await http.delete("/api/docs/secret", headers=bearer(token("*", "admin")))
                assert gone.status_code == 404


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}
