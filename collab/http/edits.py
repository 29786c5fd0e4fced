"""Server-side edits over HTTP: binary updates, text edits, restores, and state for bots.

A bot or a backend changes a document without holding a WebSocket. Each edit is
applied to the live room (loaded for it when nobody has it open), broadcast to the
document's editors, logged with the caller as author, and answered once it is
durable. ``{doc}`` is a whole document name (it may hold ``/``). The routes
(docs/history.md has examples)::

    POST /api/docs/{doc}/update    body: a Yjs update (application/octet-stream)
    GET  /api/docs/{doc}/update[?state_vector=BASE64]  -> the update that state lacks
    POST /api/docs/{doc}/text      {"insert": {"index": I, "text": S}}
                                   {"delete": {"index": I, "length": N}}
                                   {"replace": S[, "base": SEQ]}
    POST /api/docs/{doc}/restore   {"version": N} or {"at": VERSION|TIME}

POSTs answer ``{"seq": N}`` (restores add ``"restored_from"``): the log seq of the
edit, durable. A bad update or request is 400 and changes nothing; a restore of an
unknown document or version is 404 / 400; an edit the store did not commit within
``Config.edit_durable_timeout`` is 503 (it stays applied and is committed later).

Text indices count Unicode code points of the text ``GET /api/docs/{doc}/text``
returns; the text root is the document's (see :mod:`collab.history.formats`), or
``text`` for a new document. ``replace`` changes only what differs (a character
diff); with ``base`` (the ``last_seq`` of the version the caller read, or the seq an
earlier edit returned), the diff is taken against the text at that seq, so what
others typed since is kept rather than overwritten.

Authors: the user of the caller's token (its ``sub``) when it names one; else the
caller names itself with ``author`` (a query parameter, or a field of a JSON body).
The log records it as the entry's user, and the entry's client is ``http:<author>``
(``http`` when anonymous), or ``restore:<N>`` for a restore. Each route declares
``needs`` ("read" or "write" on the document its path names), which the router
enforces.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pycrdt import Doc

from collab.config import Config
from collab.core import edits
from collab.core.rooms import Rooms
from collab.errors import InvalidPayload, InvalidRequest
from collab.http.messages import HttpRequest, HttpResponse, json_response
from collab.http.router import Route
from collab.names import parse_path
from collab.store import Store

__all__ = ["document_of", "routes"]

_PREFIX = "/api/docs/"
#: The text root of a document that has none yet.
_NEW_TEXT_ROOT = "text"
#: Longest accepted ``author``.
_MAX_AUTHOR = 128


def _under(action: str) -> Callable[[str], bool]:
    suffix = "/" + action
    return lambda path: (
        path.startswith(_PREFIX) and path.endswith(suffix) and len(path) > len(_PREFIX + suffix)
    )


def document_of(path: str, config: Config) -> str:
    """The document an edit route's raw ``path`` names (for the routes and the policy)."""
    inner = path[len(_PREFIX) - 1 : path.rindex("/")]
    return parse_path(inner, config)


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        value = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequest("the body is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the body is not a JSON object")
    return value


def _author(request: HttpRequest, body: Mapping[str, Any] | None = None) -> str | None:
    if request.grant is not None and request.grant.user:
        return request.grant.user
    value = (body or {}).get("author", request.query.get("author"))
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _MAX_AUTHOR or "," in value:
        raise InvalidRequest(f"'author' must be a name of at most {_MAX_AUTHOR} characters")
    return value


def _client(author: str | None) -> str:
    return f"http:{author}" if author else "http"


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{what} must be an integer")
    return value


def _text_root(doc: Doc[Any], config: Config) -> str:
    from collab.history import formats  # history loads on the first request that needs it

    reading = formats.read(doc, config)
    if reading.root is None:
        if reading.format == "json":
            raise InvalidRequest("this document has no text root (maps and arrays only)")
        return _NEW_TEXT_ROOT
    if reading.kind == "xml":
        raise InvalidRequest(
            f"the text of this document is a Y.XmlFragment ({reading.root!r}): "
            "send a binary update instead"
        )
    return reading.root


class _Api:
    def __init__(self, rooms: Rooms, store: Store, config: Config) -> None:
        self.rooms = rooms
        self.store = store
        self.config = config

    async def _apply(
        self, doc: str, change: Callable[[Doc[Any]], bytes], client: str, user: str | None
    ) -> int:
        return await edits.apply(
            self.rooms,
            doc,
            change,
            client=client,
            user=user,
            timeout=self.config.edit_durable_timeout,
        )

    async def post_update(self, request: HttpRequest) -> HttpResponse:
        doc = document_of(request.path, self.config)
        if not request.body:
            raise InvalidPayload("the body is empty: send a Yjs update")
        author = _author(request)
        seq = await self._apply(doc, lambda _: request.body, _client(author), author)
        return json_response({"seq": seq})

    async def get_update(self, request: HttpRequest) -> HttpResponse:
        doc = document_of(request.path, self.config)
        raw = request.query.get("state_vector", "")
        try:
            vector = base64.b64decode(raw, validate=True) if raw else b""
        except (binascii.Error, ValueError):
            raise InvalidRequest("state_vector is not base64") from None
        room = self.rooms.get(doc)
        if room is not None:
            live = room.doc
        else:
            from collab.history import versions as history

            await history.check_document(self.store, doc)
            live = await history.doc_at(self.store, doc, None)
        try:
            update = live.get_update(vector) if vector else live.get_update()
        except ValueError:
            raise InvalidPayload("invalid state vector") from None
        return HttpResponse(200, update, "application/octet-stream")

    async def post_text(self, request: HttpRequest) -> HttpResponse:
        from collab.history import patch

        doc = document_of(request.path, self.config)
        body = _json_body(request)
        author = _author(request, body)
        actions = [key for key in ("insert", "delete", "replace") if key in body]
        if len(actions) != 1:
            raise InvalidRequest("give exactly one of 'insert', 'delete' or 'replace'")
        change: Callable[[Doc[Any]], bytes]
        if "insert" in body:
            spec = body["insert"]
            if not isinstance(spec, dict) or not isinstance(spec.get("text"), str):
                raise InvalidRequest('\'insert\' is {"index": I, "text": S}')
            index, value = _int(spec.get("index"), "insert.index"), spec["text"]

            def change(live: Doc[Any]) -> bytes:
                return patch.insert_text(live, _text_root(live, self.config), index, value)

        elif "delete" in body:
            spec = body["delete"]
            if not isinstance(spec, dict):
                raise InvalidRequest('\'delete\' is {"index": I, "length": N}')
            index = _int(spec.get("index"), "delete.index")
            length = _int(spec.get("length"), "delete.length")

            def change(live: Doc[Any]) -> bytes:
                return patch.delete_text(live, _text_root(live, self.config), index, length)

        else:
            value = body["replace"]
            if not isinstance(value, str):
                raise InvalidRequest("'replace' is the whole new text (a string)")
            base = await self._base(doc, body.get("base"))

            def change(live: Doc[Any]) -> bytes:
                root = _text_root(base if base is not None else live, self.config)
                return patch.replace_text(live, root, value, base)

        seq = await self._apply(doc, change, _client(author), author)
        return json_response({"seq": seq})

    async def _base(self, doc: str, value: Any) -> Doc[Any] | None:
        """The document as of log seq ``value`` (``None``: no base given)."""
        from collab.history import versions as history

        if value is None:
            return None
        seq = _int(value, "base")
        info = await self.store.document(doc)
        if info is None or not 1 <= seq <= info.last_seq:
            raise InvalidRequest(f"base {seq} is not a durable seq of this document")
        return await history.doc_at(self.store, doc, seq)

    async def post_restore(self, request: HttpRequest) -> HttpResponse:
        from collab.history import patch
        from collab.history import versions as history

        doc = document_of(request.path, self.config)
        body = _json_body(request)
        author = _author(request, body)
        if "version" in body:
            at = history.At(version=_int(body["version"], "version"))
        elif isinstance(body.get("at"), str | int) and not isinstance(body["at"], bool):
            at = history.parse_at(str(body["at"]))
        else:
            raise InvalidRequest("give 'version' (an id) or 'at' (a version id or ISO-8601 time)")
        target, version = await history.state_at(self.store, self.config, doc, at)
        if version is None:
            raise InvalidRequest("this document has no versions to restore")
        seq = await self._apply(
            doc,
            lambda live: patch.converge(live, target),
            f"{history.RESTORE_CLIENT}{version.id}",
            author,
        )
        return json_response({"seq": seq, "restored_from": version.id})


def routes(rooms: Rooms, store: Store, config: Config) -> list[Route]:
    """The edit routes, for the router (before the read-only API's catch-all)."""
    api = _Api(rooms, store, config)
    post = frozenset({"POST"})
    handlers: list[tuple[str, frozenset[str], Callable[[HttpRequest], Awaitable[HttpResponse]]]]
    handlers = [
        ("update", post, api.post_update),
        ("update", frozenset({"GET"}), api.get_update),
        ("text", post, api.post_text),
        ("restore", post, api.post_restore),
    ]
    return [
        Route(
            _under(action),
            methods,
            handler,
            needs="read" if "GET" in methods else "write",
            document=lambda path: document_of(path, config),
        )
        for action, methods, handler in handlers
    ]
