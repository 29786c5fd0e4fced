"""collab.pages: which paths it answers, with what, and what it refuses."""

from __future__ import annotations

import hashlib
import html
import re

from hypothesis import example, given
from hypothesis import strategies as st

from collab.http import pages


def test_home_page_is_html_and_loads_the_bundle() -> None:
    response = pages.respond("/", {})
    assert response is not None
    assert response.status == 200
    assert response.content_type == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    body = response.body.decode()
    assert 'data-collab-page="home"' in body
    digest = hashlib.sha256((pages.STATIC_DIR / "app.js").read_bytes()).hexdigest()[:12]
    assert f'src="/static/app.js?v={digest}"' in body
    assert "{{" not in body


def test_editor_and_history_pages_name_the_document() -> None:
    editor = pages.respond("/d/notes-1.v2", {})
    history = pages.respond("/history/notes-1.v2", {})
    assert editor is not None and history is not None
    assert editor.status == history.status == 200
    assert 'data-collab-page="editor"' in editor.body.decode()
    assert "<title>notes-1.v2 · collab</title>" in editor.body.decode()
    assert 'href="/history/notes-1.v2"' in editor.body.decode()
    assert 'data-collab-page="history"' in history.body.decode()
    assert 'href="/d/notes-1.v2"' in history.body.decode()


def test_names_with_slashes_have_pages_and_the_kind_is_in_the_prefix() -> None:
    editor = pages.respond("/d/team-a/json:notebook:1234", {})
    history = pages.respond("/history/team-a/json:notebook:1234", {})
    assert editor is not None and history is not None
    assert editor.status == history.status == 200
    assert "<title>team-a/json:notebook:1234 · collab</title>" in editor.body.decode()
    # Links keep '/' between segments (never %2F) and ':' as it is.
    assert 'href="/history/team-a/json:notebook:1234"' in editor.body.decode()
    assert 'href="/d/team-a/json:notebook:1234"' in history.body.decode()
    assert "<title>History of team-a/json:notebook:1234 · collab</title>" in history.body.decode()
    # A document may be named x/history: /d/x/history is its editor, not x's history.
    named_history = pages.respond("/d/x/history", {})
    assert named_history is not None and named_history.status == 200
    assert 'data-collab-page="editor"' in named_history.body.decode()
    assert "<title>x/history · collab</title>" in named_history.body.decode()
    # Escapes are decoded per segment: %3A is ':' and %40 is '@'.
    escaped = pages.respond("/d/team-a/a%40b%3Ac", {})
    assert escaped is not None and "<title>team-a/a@b:c · collab</title>" in escaped.body.decode()


def test_a_trailing_slash_redirects_to_the_page_without_it() -> None:
    for path, location in (
        ("/d/notes/", "/d/notes"),
        ("/history/team-a/notes/", "/history/team-a/notes"),
        ("/d/a%40b/", "/d/a%40b"),
    ):
        response = pages.respond(path, {})
        assert response is not None, path
        assert (response.status, response.headers.get("Location")) == (308, location), path
    # Only a valid name is redirected to.
    for path in ("/d/a//", "/d/bad%09/", "/d//"):
        response = pages.respond(path, {})
        assert response is not None and response.status == 400, path


def test_bad_document_names_get_a_400_page() -> None:
    for path in (
        "/d/..",
        "/d/.",
        "/d/a/../b",
        "/d/a//b",
        "/d/a%20b",
        "/d/a%2Fb",
        "/history/a%0Ab",
        "/history/a%00b",
        "/d/a\tb",
        "/d/%3Cscript%3E",
        "/d/" + "x" * 129,
    ):
        response = pages.respond(path, {})
        assert response is not None, path
        assert response.status == 400, path
        assert response.content_type.startswith("text/html")
        assert b"<script>" not in response.body
        assert b"joined by &#x27;/&#x27;" in response.body  # the rule, readable


def test_doc_path_encodes_each_segment_and_keeps_the_slashes() -> None:
    assert pages.doc_path("team-a/notes") == "team-a/notes"
    assert pages.doc_path("json:notebook:1234") == "json:notebook:1234"
    assert pages.doc_path("a@b/x+y=z,w~1") == "a@b/x+y=z,w~1"
    assert pages.doc_path("a b/é") == "a%20b/%C3%A9"


def test_other_paths_are_not_ours() -> None:
    for path in ("/api/docs", "/api/docs/x/versions", "/d", "/d/", "/history", "/history/"):
        assert pages.respond(path, {}) is None, path
    for path in ("/favicon.ico", "/notes", "/team-a/notes", "/dx/notes", "/historyx/notes"):
        assert pages.respond(path, {}) is None, path


def test_static_files_have_their_content_types() -> None:
    expected = {
        "app.js": "text/javascript; charset=utf-8",
        "style.css": "text/css; charset=utf-8",
        "icon.svg": "image/svg+xml",
    }
    for name, content_type in expected.items():
        response = pages.respond(f"/static/{name}", {})
        assert response is not None and response.status == 200, name
        assert response.content_type == content_type
        assert response.body == (pages.STATIC_DIR / name).read_bytes()
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_static_cache_control_follows_the_content_hash() -> None:
    page = pages.respond("/d/x", {})
    assert page is not None
    version = re.search(r"/static/app\.js\?v=(\w+)", page.body.decode())
    assert version is not None
    fresh = pages.respond("/static/app.js", {"v": version.group(1)})
    stale = pages.respond("/static/app.js", {"v": "0123456789ab"})
    bare = pages.respond("/static/app.js", {})
    assert fresh is not None and stale is not None and bare is not None
    assert "immutable" in fresh.headers["Cache-Control"]
    assert stale.headers["Cache-Control"] == "no-cache"
    assert bare.headers["Cache-Control"] == "no-cache"


def test_templates_and_traversal_are_refused() -> None:
    for name in (
        "editor.html",
        "index.html",
        "../pages.py",
        "..%2Fpages.py",
        "%2e%2e/pages.py",
        "/etc/passwd",
        "sub/app.js",
        "",
        ".js",
        "missing.js",
        "app.js/",
    ):
        response = pages.respond(f"/static/{name}", {})
        assert response is not None
        assert response.status == 404, name


@given(st.text(max_size=40))
@example("d/team-a/notes/")  # a redirect
@example("history/a\tb")
def test_respond_never_raises_and_never_leaves_static(tail: str) -> None:
    response = pages.respond("/static/" + tail, {})
    assert response is not None
    if response.status == 200:
        assert (pages.STATIC_DIR / tail).resolve().parent == pages.STATIC_DIR
    any_path = pages.respond("/" + tail, {})
    assert any_path is None or any_path.status in (200, 308, 400, 404)


@given(st.text())
@example("<script>alert('x') & \"y\"</script>")
def test_escape_is_what_html_escape_does(text: str) -> None:
    assert pages.escape(text) == html.escape(text, quote=True)


def test_under_a_mount_point_every_link_keeps_the_prefix() -> None:
    """An ASGI app mounted at /collab: the pages' files, links, redirects and the base the
    bundle reads (data-collab-base) are all below /collab; nothing points at the root."""
    for path in ("/", "/d/team-a/notes", "/history/team-a/notes"):
        response = pages.respond(path, {}, "/collab")
        assert response is not None and response.status == 200
        body = response.body.decode()
        assert 'data-collab-base="/collab"' in body
        assert re.findall(r'(?:href|src)="(/[^"]*)"', body)  # there are links, and ...
        assert all(
            link.startswith("/collab/") for link in re.findall(r'(?:href|src)="(/[^"]*)"', body)
        ), body
    editor = pages.respond("/d/team-a/notes", {}, "/collab")
    assert editor is not None and 'href="/collab/history/team-a/notes"' in editor.body.decode()
    moved = pages.respond("/d/notes/", {}, "/collab")
    assert moved is not None and moved.headers["Location"] == "/collab/d/notes"
    refused = pages.respond("/d/a//b", {}, "/collab")
    assert refused is not None and refused.status == 400
    assert 'href="/collab/"' in refused.body.decode()
    assert 'href="/"' not in refused.body.decode()


def test_at_the_root_the_base_is_empty() -> None:
    response = pages.respond("/d/notes", {})
    assert response is not None
    assert 'data-collab-base=""' in response.body.decode()
    assert 'src="/static/app.js?v=' in response.body.decode()
