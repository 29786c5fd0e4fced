"""The read-only HTTP history API, served on the WebSocket port under ``/api/``.

Every answer is JSON (exports excepted: they are files, sent as attachments);
every error is ``{"error": message}`` from :func:`~collab.http.json_error`:
400 for a bad name or parameter, 404 for an unknown document or endpoint, 503
when the store fails. The routes (docs/history.md has examples)::

    GET /api/docs
    GET /api/docs/{doc}/versions
    GET /api/docs/{doc}/text?at=VERSION|TIME
    GET /api/docs/{doc}/diff?from=VERSION|TIME[&to=VERSION|TIME]
    GET /api/docs/{doc}/export?format=txt|md|json[&at=...][&all_history=1]
    GET /api/docs/{doc}/attribution[?at=...]

``TIME`` is ISO-8601 (UTC when it has no zone); ``to`` and ``at`` default to now.
The module knows the :class:`~collab.store.Store` protocol, never a live room.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from collab import history
from collab.config import Config
from collab.errors import InvalidRequest, StoreError, UnknownDocument
from collab.export import export
from collab.http import HttpResponse, json_error, json_response
from collab.names import valid_name
from collab.store import Store

__all__ = ["respond"]

_PREFIX = "/api/"

_Route = Callable[[Store, Config, str, dict[str, str]], Awaitable[HttpResponse]]


def _at(query: dict[str, str], key: str) -> history.At | None:
    value = query.get(key)
    if value is None or value == "":
        return None
    return history.parse_at(value)


def _version(version: history.Version | None) -> dict[str, Any] | None:
    return version.to_json() if version else None


async def _versions(store: Store, config: Config, doc: str, query: dict[str, str]) -> HttpResponse:
    found = await history.versions(store, config, doc)
    return json_response(
        {
            "doc": doc,
            "history_enabled": config.history_enabled,
            "versions": [v.to_json() for v in found],
        }
    )


async def _text(store: Store, config: Config, doc: str, query: dict[str, str]) -> HttpResponse:
    text, version = await history.text_at(store, config, doc, _at(query, "at"))
    return json_response({"doc": doc, "version": _version(version), "text": text})


async def _diff(store: Store, config: Config, doc: str, query: dict[str, str]) -> HttpResponse:
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
    all_history = query.get("all_history", "").lower() in ("1", "true", "yes")
    result = await export(
        store, config, doc, query.get("format", "txt"), _at(query, "at"), all_history=all_history
    )
    disposition = f'attachment; filename="{result.filename}"'  # names need no escaping
    return HttpResponse(200, result.body, result.content_type, {"Content-Disposition": disposition})


async def _attribution(
    store: Store, config: Config, doc: str, query: dict[str, str]
) -> HttpResponse:
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


async def respond(
    store: Store, config: Config, path: str, query: dict[str, str]
) -> HttpResponse | None:
    """Answer a GET under ``/api/``; ``None`` for any other path (not ours).

    Never raises for a caller's mistake or a store failure: those become JSON
    errors. Anything else is a bug and propagates to the server.
    """
    if not path.startswith(_PREFIX):
        return None
    parts = path[len(_PREFIX) :].strip("/").split("/")
    try:
        if parts == ["docs"]:
            docs = await store.documents()
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
        if len(parts) != 3 or parts[0] != "docs" or parts[2] not in _ROUTES:
            return json_error(404, f"no API endpoint {path}")
        doc = parts[1]
        if not valid_name(doc, config):
            return json_error(400, f"invalid document name {doc!r}")
        return await _ROUTES[parts[2]](store, config, doc, query)
    except UnknownDocument as exc:
        return json_error(404, exc.reason)
    except InvalidRequest as exc:
        return json_error(400, exc.reason)
    except StoreError:
        return json_error(503, "the store is unavailable")
