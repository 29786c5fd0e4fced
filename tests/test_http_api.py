"""The HTTP history API, through the router, with a real SQLite store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from collab.config import Config
from collab.history import versions as history
from collab.http.api import route
from collab.http.messages import HttpRequest, HttpResponse
from collab.http.router import Router
from collab.store.sqlite import SqliteStore
from tests.history_fixtures import Editors

CONFIG = Config(version_gap_seconds=60.0)


@pytest.fixture(name="api_store")
async def api_store_fixture(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(f"sqlite:///{tmp_path / 'api.db'}")
    await store.open()
    editors = Editors(store, "notes", 2, ["alice", None])
    await editors.insert(0, 0, "hello\n")
    editors.sync(1)
    await editors.insert(1, 6, "wörld 😀", gap=120)
    await editors.set_meta(0, "title", "Notes", gap=1)
    try:
        yield store
    finally:
        await store.close()


async def get(store: SqliteStore, path: str, **query: str) -> HttpResponse:
    return await answer(store, path, query)


async def answer(store: SqliteStore, path: str, query: dict[str, str]) -> HttpResponse:
    router = Router([route(store, CONFIG)])
    return await router.handle(HttpRequest("GET", path, urlencode(query)))


def body(response: HttpResponse) -> Any:
    assert response.content_type.startswith("application/json")
    return json.loads(response.body)


async def test_not_ours(tmp_path: Path) -> None:
    # Never opened: these paths must not touch it.
    store = SqliteStore(f"sqlite:///{tmp_path / 'never.db'}")
    for path in ("/", "/notes", "/apix/docs"):
        response = await answer(store, path, {})
        assert response.status == 404 and body(response)["error"].startswith("nothing here")


async def test_docs_and_versions(api_store: SqliteStore) -> None:
    response = await get(api_store, "/api/docs")
    assert response.status == 200
    [doc] = body(response)["docs"]
    assert doc["name"] == "notes" and doc["last_seq"] == 3
    assert set(doc) == {"name", "created_at", "updated_at", "last_seq"}

    value = body(await get(api_store, "/api/docs/notes/versions"))
    assert value["doc"] == "notes" and value["history_enabled"] is True
    assert [(v["id"], v["size"], v["contributors"]) for v in value["versions"]] == [
        (1, 6, ["alice"]),
        (3, 13, ["client1", "alice"]),
    ]
    assert value["versions"][0]["at_iso"].endswith("Z")
    assert set(value["versions"][0]) == {
        "id",
        "at",
        "at_iso",
        "size",
        "contributors",
        "first_seq",
        "last_seq",
        "restored_from",
    }


async def test_text_diff_attribution(api_store: SqliteStore) -> None:
    now = body(await get(api_store, "/api/docs/notes/text"))
    assert now["text"] == "hello\nwörld 😀" and now["version"]["id"] == 3
    old = body(await get(api_store, "/api/docs/notes/text", at="1"))
    assert old["text"] == "hello\n" and old["version"]["size"] == 6
    found = await history.versions(api_store, CONFIG, "notes")
    by_time = body(await get(api_store, "/api/docs/notes/text", at=history.iso(found[0].at)))
    assert by_time["version"]["id"] == 1

    diff = body(await get(api_store, "/api/docs/notes/diff", **{"from": "1", "to": "3"}))
    assert (diff["from"], diff["to"]) == (1, 3)
    assert "+wörld 😀\n" in diff["diff"]
    assert body(await get(api_store, "/api/docs/notes/diff", **{"from": "1"}))["to"] == 3

    spans = body(await get(api_store, "/api/docs/notes/attribution"))
    assert spans["spans"] == [
        {"author": "alice", "text": "hello\n"},
        {"author": "client1", "text": "wörld 😀"},
    ]
    assert spans["version"]["id"] == 3
    early = body(await get(api_store, "/api/docs/notes/attribution", at="1"))
    assert early["spans"] == [{"author": "alice", "text": "hello\n"}]


async def test_exports_are_attachments(api_store: SqliteStore) -> None:
    txt = await get(api_store, "/api/docs/notes/export", format="txt")
    assert txt.status == 200 and txt.body == "hello\nwörld 😀".encode()
    assert txt.content_type == "text/plain; charset=utf-8"
    assert txt.headers["Content-Disposition"] == (
        "attachment; filename=\"notes.txt\"; filename*=UTF-8''notes.txt"
    )
    old = await get(api_store, "/api/docs/notes/export", format="md", at="1")
    assert old.body.decode().endswith("---\nhello\n")
    assert old.headers["Content-Disposition"] == (
        "attachment; filename=\"notes@1.md\"; filename*=UTF-8''notes%401.md"
    )
    value = body(await get(api_store, "/api/docs/notes/export", format="json"))
    assert value["roots"] == {"text": "hello\nwörld 😀", "meta": {"title": "Notes"}}
    archive = body(await get(api_store, "/api/docs/notes/export", format="json", all_history="1"))
    assert archive["format"] == "collab.archive" and len(archive["entries"]) == 3
    assert (await get(api_store, "/api/docs/notes/export")).body == txt.body  # txt by default


async def test_documents_that_differ_only_in_a_prefix_stay_separate(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 'prefixes.db'}")
    await store.open()
    try:
        for team in ("team-a", "team-b"):
            await Editors(store, f"{team}/notes", 1, [team]).insert(0, 0, f"{team} only")
        await Editors(store, "notes", 1, [None]).insert(0, 0, "the root notes")
        listed = body(await get(store, "/api/docs"))["docs"]
        assert sorted(d["name"] for d in listed) == ["notes", "team-a/notes", "team-b/notes"]
        for team in ("team-a", "team-b"):
            text = body(await get(store, f"/api/docs/{team}/notes/text"))
            assert (text["doc"], text["text"]) == (f"{team}/notes", f"{team} only")
            versions = body(await get(store, f"/api/docs/{team}/notes/versions"))
            assert [v["contributors"] for v in versions["versions"]] == [[team]]
            exported = await get(store, f"/api/docs/{team}/notes/export", format="txt")
            assert exported.body == f"{team} only".encode()
            assert exported.headers["Content-Disposition"] == (
                f'attachment; filename="{team}%2Fnotes.txt"; '
                f"filename*=UTF-8''{team}%252Fnotes.txt"
            )
        # Escapes decode per segment; the endpoint is always the last segment.
        escaped = body(await get(store, "/api/docs/team%2Da/notes/text"))
        assert escaped["text"] == "team-a only"
        assert (await get(store, "/api/docs/team-c/notes/text")).status == 404
    finally:
        await store.close()


async def test_room_names_with_colons_and_at_signs_are_accepted(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 'rooms.db'}")
    await store.open()
    try:
        for name in ("json:notebook:1234", "a@b"):
            await Editors(store, name, 1, [None]).insert(0, 0, f"in {name}")
            text = body(await get(store, f"/api/docs/{name}/text"))
            assert (text["doc"], text["text"]) == (name, f"in {name}")
        exported = await get(store, "/api/docs/json:notebook:1234/export", format="md", at="1")
        assert exported.headers["Content-Disposition"] == (
            'attachment; filename="json%3Anotebook%3A1234@1.md"; '
            "filename*=UTF-8''json%253Anotebook%253A1234%401.md"
        )
    finally:
        await store.close()


@pytest.mark.parametrize(
    "path",
    [
        "/api/docs/bad\tname/text",
        "/api/docs/bad%09name/text",
        "/api/docs/bad%0Aname/text",
        "/api/docs/bad%00name/text",
        "/api/docs/team-a%2Fnotes/text",
        "/api/docs/team-a//notes/text",
        "/api/docs/team-a/../notes/text",
        "/api/docs/./notes/text",
    ],
)
async def test_bad_characters_in_the_raw_path_are_400(api_store: SqliteStore, path: str) -> None:
    response = await answer(api_store, path, {})
    assert response.status == 400
    assert body(response)["error"].startswith("invalid document name")


@pytest.mark.parametrize(
    ("path", "query", "status", "message"),
    [
        ("/api/docs/missing/versions", {}, 404, "no document named 'missing'"),
        ("/api/docs/missing/text", {}, 404, "no document named 'missing'"),
        ("/api/docs/missing/export", {"format": "md"}, 404, "no document named 'missing'"),
        ("/api/docs/missing/attribution", {}, 404, "no document named 'missing'"),
        ("/api/docs/notes/nothing", {}, 404, "no API endpoint /api/docs/notes/nothing"),
        ("/api/nothing", {}, 404, "no API endpoint /api/nothing"),
        ("/api/docs/a%2Fb/text", {}, 400, "invalid document name"),
        ("/api/docs/" + "x" * 200 + "/text", {}, 400, "invalid document name"),
        ("/api/docs/notes/text", {"at": "99"}, 400, "no version 99"),
        ("/api/docs/notes/text", {"at": "soon"}, 400, "ISO-8601"),
        ("/api/docs/notes/text", {"at": "1970-01-01T00:00:00Z"}, 400, "no version at or before"),
        ("/api/docs/notes/diff", {}, 400, "'from' is required"),
        ("/api/docs/notes/export", {"format": "pdf"}, 400, "unknown format 'pdf'"),
        ("/api/docs/notes/export", {"all_history": "1"}, 400, "JSON only"),
    ],
)
async def test_errors(
    api_store: SqliteStore, path: str, query: dict[str, str], status: int, message: str
) -> None:
    response = await answer(api_store, path, query)
    assert response.status == status
    assert message in body(response)["error"]


async def test_store_failure_is_503(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 'closed.db'}")
    await store.open()
    await store.close()
    response = await answer(store, "/api/docs/notes/versions", {})
    assert response.status == 503
    assert body(response) == {"error": "the store is unavailable"}
