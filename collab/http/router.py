"""The one HTTP router: pages, the API and (through routes added at assembly) the
HTTP fallback transport and operators' endpoints, whichever server carries them.

A :class:`Route` owns a set of paths and the methods it answers there. For a
request, the first route whose paths hold the request's path and that answers
its method decides (so two routes may share paths, one reading, one writing):

- no route holds the path: 404;
- the security policy (:class:`~collab.policy.access.Access`), except on
  ``public`` routes (pages and static files, which any site may load): an
  ``Origin`` that is not allowed gets 403; a route that ``needs`` something gets
  the caller's token checked (``Authorization: Bearer`` or ``?token=``; 401 when
  auth is on and it is missing, bad or expired) against the document the route's
  ``document`` reads from the path (403 when it does not cover it or its mode is
  too weak), and the handler sees the grant as ``request.grant``;
- ``OPTIONS``: 204 with ``Allow``, every method the routes there answer; a CORS
  preflight from a listed origin also gets the ``Access-Control-Allow-*`` headers,
  and every answer to a listed origin carries ``Access-Control-Allow-Origin``;
- routes hold the path but none answers the method: 405 with ``Allow``
  (``HEAD`` is answered wherever ``GET`` is, without the body);
- otherwise the route's handler answers.

A route says what a caller must be allowed to do with the document its path names
(``needs``: ``"read"``, ``"write"`` or ``"admin"``; empty for routes that check for
themselves, such as the HTTP fallback, whose sessions pass the gate). This is
enforced here, once, before any handler runs.

Errors are translated here, once: a :class:`~collab.errors.CollabError` becomes
``{"error": reason}`` with its ``http_status``; anything else is a bug, logged with
its traceback and answered 500 without details.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from collab.errors import CollabError, StoreError
from collab.http.messages import HttpRequest, HttpResponse, json_error
from collab.policy.access import Access
from collab.policy.tokens import MODES

__all__ = ["Handler", "Route", "Router", "exact", "prefix"]

log = logging.getLogger("collab.http")

Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """``handler`` answers ``methods`` on every path for which ``matches`` holds."""

    matches: Callable[[str], bool]
    methods: frozenset[str]
    handler: Handler
    #: What the caller must hold on the document the path names: "read", "write",
    #: "admin", or "" (no token checked here).
    needs: str = ""
    #: The document a path names (raising CollabError for a bad one), or ``None`` for a
    #: path that names none (a list, which the handler filters by ``request.grant``).
    #: Required when ``needs`` is set.
    document: Callable[[str], str | None] | None = None
    #: Files any site may load (pages, static): no Origin check, no token, no CORS.
    public: bool = False

    def __post_init__(self) -> None:
        if self.needs and self.needs not in MODES:
            raise ValueError(f"needs must be one of {', '.join(MODES)} or empty")
        if self.needs and self.document is None:
            raise ValueError("a route that needs a mode must say which document a path names")

    def allow(self) -> str:
        """The ``Allow`` header of this route's paths."""
        return _allow(self.methods)


def _allow(methods: Iterable[str]) -> str:
    allowed = set(methods) | {"OPTIONS"}
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed))


def _preflight(methods: Iterable[str]) -> dict[str, str]:
    return {
        "Access-Control-Allow-Methods": _allow(methods),
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID",
        "Access-Control-Max-Age": "600",
    }


def prefix(start: str) -> Callable[[str], bool]:
    """Paths that begin with ``start``."""
    return lambda path: path.startswith(start)


def exact(*paths: str) -> Callable[[str], bool]:
    """Exactly these paths."""
    wanted = frozenset(paths)
    return lambda path: path in wanted


class Router:
    """Answers every :class:`HttpRequest`; never raises.

    ``access`` is the security policy (none: everything is open, as in unit tests).
    """

    def __init__(self, routes: Iterable[Route] = (), access: Access | None = None) -> None:
        self._routes = list(routes)
        self.access = access

    def add(self, route: Route) -> None:
        """Add ``route`` after the existing ones (earlier routes win)."""
        self._routes.append(route)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """The response to ``request``."""
        here = [r for r in self._routes if r.matches(request.path)]
        if not here:
            return json_error(404, f"nothing here: {request.path}")
        methods = {method for r in here for method in r.methods}
        guarded = self.access is not None and not all(r.public for r in here)
        cors = self._cors(request) if guarded else {}
        if guarded and self.access is not None:
            try:
                self.access.check_origin(request.headers)
            except CollabError as exc:
                return json_error(exc.http_status, exc.reason)
        if request.method == "OPTIONS":
            headers = {"Allow": _allow(methods), **cors}
            if cors and "access-control-request-method" in request.headers:
                headers.update(_preflight(methods))
            return HttpResponse(204, headers=headers)
        method = "GET" if request.method == "HEAD" else request.method
        route = next((r for r in here if method in r.methods), None)
        if route is None:
            response = json_error(405, f"{request.method} is not allowed here")
            response.headers["Allow"] = _allow(methods)
            response.headers.update(cors)
            return response
        response = await self._answer(route, request)
        response.headers.update(cors)
        return response

    def _cors(self, request: HttpRequest) -> dict[str, str]:
        """The CORS headers of an answer to ``request``: only for a listed origin."""
        origin = request.headers.get("origin")
        if self.access is None or not self.access.origins.listed(origin):
            return {}
        return {"Access-Control-Allow-Origin": str(origin), "Vary": "Origin"}

    async def _answer(self, route: Route, request: HttpRequest) -> HttpResponse:
        try:
            if route.needs and self.access is not None:
                grant = self.access.admit(request.query, request.headers, time.time())
                doc = route.document(request.path) if route.document is not None else None
                self.access.require(grant, doc, route.needs)
                request = replace(request, grant=grant)
            response = await route.handler(request)
        except StoreError as exc:
            log.error("%s %s: %s", request.method, request.path, exc.reason)
            return json_error(exc.http_status, "the store is unavailable")
        except CollabError as exc:
            return json_error(exc.http_status, exc.reason)
        except Exception:
            log.exception("%s %s: internal error", request.method, request.path)
            return json_error(500, "internal error")
        if request.method == "HEAD" and response.stream is None:
            length = str(len(response.body))
            return replace(
                response, body=b"", headers={**response.headers, "Content-Length": length}
            )
        return response
