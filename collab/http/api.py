"""The read-only HTTP history API, served on the WebSocket port under ``/api/``.

Every answer is JSON (exports excepted: they are files, sent as attachments);
errors are raised as :class:`~collab.errors.CollabError` and answered by the
router as ``{"error": message}``: 400 for a bad name or parameter, 404 for an
unknown document or endpoint, 503 when the store fails. ``{doc}`` is a whole
document name and may hold ``/`` (``/api/docs/team-a/notes/text``). The routes
(docs/history.md has examples)::

    GET /api/docs
    GET /api/docs/{doc}/versions
    GET /api/docs/{doc}/text?at=VERSION|TIME
    GET /api/docs/{doc}/diff?from=VERSION|TIME[&to=VERSION|TIME]
    GET /api/docs/{doc}/export?format=txt|md|json[&at=...][&all_history=1]
    GET /api/docs/{doc}/attribution[?at=...]
    DELETE /api/docs/{doc}          (needs admin; see :func:`delete_route`)

``TIME`` is ISO-8601 (UTC when it has no zone); ``to`` and ``at`` default to now.
Each needs a ``read`` token for ``{doc}`` while authentication is on (the router
checks it); ``GET /api/docs`` lists only the documents the caller's token covers.
The module knows the :class:`~collab.store.Store` protocol, never a live room.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from collab.config import Config
from collab.errors import InvalidRequest, NotFound, UnknownDocument
from collab.http.messages import HttpRequest, HttpResponse, json_response
from collab.http.router import Route, prefix
from collab.names import parse_path
from collab.policy.tokens import Grant
from collab.store import Store

if TYPE_CHECKING:  # imported by the handlers, on the first request (collab.history)
    from collab.history import versions as history

__all__ = ["attachment", "delete_route", "document_of", "respond", "route"]

_PREFIX = "/api/"

_Route = Callable[[Store, Config, str, dict[str, str]], Awaitable[HttpResponse]]


def _at(query: dict[str, str], key: str) -> history.At | None:
    from collab.history.versions import parse_at

    value = query.get(key)
    if value is None or value == "":
        return None
    return parse_at(value)


def _version(version: history.Version | None) -> dict[str, Any] | None:
    return version.to_json() if version else None


async def _versions(store: Store, config: Config, doc: str, query: dict[str, str]) -> HttpResponse:
    from collab.history import versions as history

    found = await history.versions(store, config, doc)
    return json_response(
        {
            "doc": doc,
            "history_enabled": config.history_enabled,
            "versions": [v.to_json() for v in found],
        }
    )


async def _text(store: Store, config: Config, doc: str, query: dict[str, str]) -> HttpResponse:
    from collab.history import versions as history

    text, version = await history.text_at(store, config, doc, _at(query, "at"))
    return json_response({"doc": doc, "version": _version(version), "text": text})


async def _diff(store: Store, config: Config, doc: str, query: dict[str, str]) -> HttpResponse:
    from collab.history import versions as history

    if not query.get("from"):
        raise InvalidRequest("'from' is required (a version id or an ISO-8601 time)")
    text, (old, new) = await history.diff(store, config, doc, _at(query, "from"), _at(query, "to"))
    return json_response(
        {
            "doc": doc,
            "from": old.id if old else None,
            "to": new.id if new else None,
            "diff": text,
        }
    )


async def _export(store: Store, config: Config, doc: str, query: dict[str, str]) -> HttpResponse:
    from collab.history.export import export

    all_history = query.get("all_history", "").lower() in ("1", "true", "yes")
    result = await export(
        store, config, doc, query.get("format", "txt"), _at(query, "at"), all_history=all_history
    )
    headers = {"Content-Disposition": attachment(result.filename)}
    return HttpResponse(200, result.body, result.content_type, headers)


def attachment(filename: str) -> str:
    """The ``Content-Disposition`` of a download named ``filename`` (RFC 6266).

    Export file names hold ``%`` (``team-a%2Fnotes.txt``), which browsers may
    percent-decode in a plain ``filename`` (back into a ``/``), so the name is
    also given as ``filename*`` (RFC 8187), whose decoding is defined and which
    every current browser prefers. The plain ``filename`` stays for older agents;
    export names never hold ``"`` or ``\\``, so quoting them needs no escapes.
    """
    return f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def _attribution(
    store: Store, config: Config, doc: str, query: dict[str, str]
) -> HttpResponse:
    from collab.history import versions as history

    spans, version = await history.attribution(store, config, doc, _at(query, "at"))
    return json_response(
        {"doc": doc, "version": _version(version), "spans": [s.to_json() for s in spans]}
    )


_ROUTES: dict[str, _Route] = {
    "versions": _versions,
    "text": _text,
    "diff": _diff,
    "export": _export,
    "attribution": _attribution,
}


def _parts(path: str) -> list[str]:
    return path[len(_PREFIX) :].strip("/").split("/")


def document_of(path: str, config: Config) -> str | None:
    """The document an API ``path`` names; ``None`` for the list (``/api/docs``).

    Raises:
        NotFound: not an API endpoint. InvalidName: a bad document name.
    """
    parts = _parts(path)
    if parts == ["docs"]:
        return None
    if len(parts) < 3 or parts[0] != "docs" or parts[-1] not in _ROUTES:
        raise NotFound(f"no API endpoint {path}")
    return parse_path("/" + "/".join(parts[1:-1]), config)


async def respond(
    store: Store,
    config: Config,
    path: str,
    query: dict[str, str],
    grant: Grant | None = None,
) -> HttpResponse:
    """Answer a GET of ``path`` (below ``/api/``, still percent-encoded). The list
    holds only the documents ``grant`` covers (all without one).

    Raises:
        CollabError: a bad name or parameter (400), an unknown document (404), a
            failing store (503); the router turns them into JSON errors.
    """
    doc = document_of(path, config)
    if doc is None:
        docs = [d for d in await store.documents() if grant is None or grant.covers(d.name)]
        return json_response(
            {
                "docs": [
                    {
                        "name": info.name,
                        "created_at": info.created_at,
                        "updated_at": info.updated_at,
                        "last_seq": info.last_seq,
                    }
                    for info in docs
                ]
            }
        )
    return await _ROUTES[_parts(path)[-1]](store, config, doc, query)


def delete_route(config: Config, delete: Callable[[str], Awaitable[bool]]) -> Route:
    """``DELETE /api/docs/{doc}``: ``delete(doc)`` (the runtime's: editors closed with 4404,
    the document and its history gone, a tombstone kept), answered ``200 {"deleted": doc}``,
    or 404 when there is no such document. The route needs ``admin``.

    Paths whose last segment names an endpoint (``/api/docs/x/text``) are that
    endpoint's, not a document's: a document whose name ends in such a segment is
    deleted with ``collab delete``."""

    def matches(path: str) -> bool:
        rest = path[len(_DOCS) :].strip("/") if path.startswith(_DOCS) else ""
        return bool(rest) and rest.rsplit("/", 1)[-1] not in _ENDPOINTS

    def document(path: str) -> str:
        rest = path[len(_DOCS) :].strip("/")
        if not rest:
            raise NotFound("DELETE needs a document: /api/docs/{doc}")
        return parse_path("/" + rest, config)

    async def handler(request: HttpRequest) -> HttpResponse:
        doc = document(request.path)
        if not await delete(doc):
            raise UnknownDocument(f"no document named {doc!r}")
        return json_response({"deleted": doc})

    return Route(matches, frozenset({"DELETE"}), handler, needs="admin", document=document)


_DOCS = "/api/docs/"
#: Last path segments that name an endpoint of a document (here and collab.http.edits).
_ENDPOINTS = frozenset({*_ROUTES, "update", "restore"})


def route(store: Store, config: Config) -> Route:
    """The API's route, for the router."""

    async def handler(request: HttpRequest) -> HttpResponse:
        return await respond(store, config, request.path, request.query, request.grant)

    return Route(
        prefix(_PREFIX),
        frozenset({"GET"}),
        handler,
        needs="read",
        document=lambda path: document_of(path, config),
    )
