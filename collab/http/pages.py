"""The browser client's pages and static files, served on the WebSocket port.

``respond(path, query)`` answers the GETs that belong to the browser client and
returns ``None`` for every other path, so the server can try the HTTP API next:

- ``/``                  the start page (lists documents, creates one)
- ``/d/<doc>``           the editor
- ``/history/<doc>``     the history viewer
- ``/static/<file>``     the committed bundle (built from ``client/``), CSS, icon

``<doc>`` is the whole rest of the path, so it may hold ``/`` (``/d/team-a/notes``);
the kind of page is in the *prefix*, never in a suffix, because a document may be
named ``x/history``. A trailing ``/`` (``/d/notes/``) redirects to the page without
it, since names have no empty segment.

Pages are small templates in ``collab/static/`` whose only variables are the
(escaped) document name and content hashes of the static files: a page links
``/static/app.js?v=<hash>``, and a request carrying the current hash may be cached
for a year, because a new bundle has a new hash. Everything else is revalidated.
Only names made of ``[A-Za-z0-9_-]`` plus one extension we know are served from the
static folder, so no path can leave it.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path
from urllib.parse import quote

from collab.config import Config
from collab.errors import InvalidName, NotFound
from collab.http.messages import HttpRequest, HttpResponse
from collab.http.router import Route
from collab.names import NAME_RULE, parse_path

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}

#: Templates are rendered, never served raw.
_PAGES = {"home": "index.html", "editor": "editor.html", "history": "history.html"}
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)")
#: Page kind by path prefix; what follows the prefix is the document's raw path.
_DOC_PAGES = {"/d/": "editor", "/history/": "history"}
_DEFAULTS = Config()

_NO_CACHE = "no-cache"
_IMMUTABLE = "public, max-age=31536000, immutable"
_HTML_HEADERS = {
    "Cache-Control": _NO_CACHE,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # 'self' covers the page's own ws(s):// origin (CSP level 3).
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "style-src 'self'; base-uri 'none'; form-action 'self'"
    ),
}


def respond(path: str, query: dict[str, str], base: str = "") -> HttpResponse | None:
    """The response for ``path`` if it is a page or static file, else ``None``.

    ``path`` is the URL path without the query string (percent-encoding allowed),
    below ``base``: the mount point of an ASGI app (``/collab``; ``HttpRequest.root_path``),
    empty at the server's root. Pages link their files, each other and the API, and
    open their WebSocket, below ``base`` (``<body data-collab-base>`` tells the bundle).
    ``query`` holds its decoded parameters (only ``v`` is read, on static files).
    Never raises for any input string.
    """
    if path in ("/", "/index.html"):
        return _page("home", None, base)
    if path.startswith("/static/"):
        return _static(path[len("/static/") :], query.get("v"))
    prefix = next((p for p in _DOC_PAGES if path.startswith(p) and len(path) > len(p)), None)
    if prefix is None:
        return None
    raw = path[len(prefix) - 1 :]  # keeps the '/' that starts the document's path
    trailing = raw.endswith("/")
    try:
        # Pages see no Config: the default length bound applies here; the server
        # checks again, with the configured bound, when the editor's WebSocket connects.
        doc = parse_path(raw[:-1] if trailing else raw, _DEFAULTS)
    except InvalidName:
        return _error_page(400, "Not a document name", _name_rule(), base)
    if trailing:  # the raw path was checked (and the base is the server's), so it is safe
        return _redirect(base + prefix + raw[1:-1])
    return _page(_DOC_PAGES[prefix], doc, base)


#: What :func:`html.escape` replaces, with what it puts there.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


def escape(text: str) -> str:
    """``text`` safe inside an HTML element or a quoted attribute: ``html.escape(text)``.

    Written out because the ``html`` package brings its table of 2,231 named
    entities (~0.3 MiB of a server's memory) for five replacements.
    """
    return text.translate(_ESCAPES)


def doc_path(name: str) -> str:
    """``name`` as a URL path (no leading ``/``): each segment percent-encoded, ``/`` kept.

    The characters of a valid name other than letters and digits are all allowed
    in a path segment (RFC 3986 ``pchar``), so a valid name comes back readable.
    """
    return "/".join(quote(segment, safe=":@+=,~") for segment in name.split("/"))


def _name_rule() -> str:
    rule = NAME_RULE.format(max=_DEFAULTS.max_name_length)
    return rule[0].upper() + rule[1:] + "."


def _redirect(location: str) -> HttpResponse:
    headers = {"Location": location, "Cache-Control": _NO_CACHE}
    return HttpResponse(308, f"see {location}\n".encode(), headers=headers)


def _page(kind: str, doc: str | None, base: str) -> HttpResponse:
    template = _read_text(_PAGES[kind])
    values = {
        "base": escape(base),
        "doc": escape(doc or ""),
        "doc_url": escape(doc_path(doc or "")),
        "app_version": _version("app.js"),
        "css_version": _version("style.css"),
        "icon_version": _version("icon.svg"),
    }
    body = re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], template)
    return HttpResponse(200, body.encode("utf-8"), "text/html; charset=utf-8", dict(_HTML_HEADERS))


def _error_page(status: int, title: str, detail: str, base: str) -> HttpResponse:
    base = escape(base)
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · collab</title>"
        f'<link rel="stylesheet" href="{base}/static/style.css?v={_version("style.css")}">'
        f'<link rel="icon" href="{base}/static/icon.svg?v={_version("icon.svg")}"></head>'
        f'<body><header class="bar"><a class="brand" href="{base}/">collab</a></header>'
        f'<main class="page narrow"><div class="card"><h2>{escape(title)}</h2>'
        f'<p class="hint">{escape(detail)}</p><p><a href="{base}/">All documents</a></p>'
        "</div></main></body></html>"
    )
    return HttpResponse(
        status, body.encode("utf-8"), "text/html; charset=utf-8", dict(_HTML_HEADERS)
    )


def _static(name: str, version: str | None) -> HttpResponse:
    match = _STATIC_NAME.fullmatch(name)
    kind = CONTENT_TYPES.get(match.group(1)) if match else None
    if kind is None or not (STATIC_DIR / name).is_file():
        return HttpResponse(404, b"not found\n", headers={"Cache-Control": _NO_CACHE})
    cache_control = _IMMUTABLE if version == _version(name) else _NO_CACHE
    headers = {
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
        # Public files; lets other sites import the editor module (docs/browser-client.md).
        "Access-Control-Allow-Origin": "*",
    }
    return HttpResponse(200, _read_bytes(name), kind, headers)


# Static files change only with a new release, so they are read once per process.
@cache
def _read_bytes(name: str) -> bytes:
    return (STATIC_DIR / name).read_bytes()


def _read_text(name: str) -> str:
    return _read_bytes(name).decode("utf-8")


@cache
def _version(name: str) -> str:
    """A short content hash of a static file, for cache-busting URLs."""
    return hashlib.sha256(_read_bytes(name)).hexdigest()[:12]


def route() -> Route:
    """The pages' route, for the router: ``/``, ``/d/...``, ``/history/...``, ``/static/...``."""

    async def handler(request: HttpRequest) -> HttpResponse:
        answer = respond(request.path, request.query, request.root_path)
        if answer is None:
            raise NotFound(f"no page {request.path}")
        return answer

    def matches(path: str) -> bool:
        return path in ("/", "/index.html") or path.startswith(("/static/", *_DOC_PAGES))

    return Route(matches, frozenset({"GET"}), handler, public=True)
