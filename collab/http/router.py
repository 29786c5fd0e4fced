"""The one HTTP router: pages, the API and (through routes added at assembly) the
HTTP fallback transport and operators' endpoints, whichever server carries them.

A :class:`Route` owns a set of paths and the methods it answers there. For a
request, the first route whose paths hold the request's path and that answers
its method decides (so two routes may share paths, one reading, one writing):

- no route holds the path: 404;
- ``OPTIONS``: 204 with ``Allow``, every method the routes there answer (CORS
  preflights are answered here too, once the security policy exists);
- routes hold the path but none answers the method: 405 with ``Allow``
  (``HEAD`` is answered wherever ``GET`` is, without the body);
- otherwise the route's handler answers.

A route says what a caller must be allowed to do with the document its path names
(``needs``: ``"read"`` or ``"write"``; empty for pages and lists), for the security
policy to check before the handler runs.

Errors are translated here, once: a :class:`~collab.errors.CollabError` becomes
``{"error": reason}`` with its ``http_status``; anything else is a bug, logged with
its traceback and answered 500 without details.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from collab.errors import CollabError, StoreError
from collab.http.messages import HttpRequest, HttpResponse, json_error

__all__ = ["Handler", "Route", "Router", "exact", "prefix"]

log = logging.getLogger("collab.http")

Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """``handler`` answers ``methods`` on every path for which ``matches`` holds."""

    matches: Callable[[str], bool]
    methods: frozenset[str]
    handler: Handler
    #: What the caller must hold on the document the path names: "read", "write" or "".
    needs: str = ""

    def allow(self) -> str:
        """The ``Allow`` header of this route's paths."""
        return _allow(self.methods)


def _allow(methods: Iterable[str]) -> str:
    allowed = set(methods) | {"OPTIONS"}
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed))


def prefix(start: str) -> Callable[[str], bool]:
    """Paths that begin with ``start``."""
    return lambda path: path.startswith(start)


def exact(*paths: str) -> Callable[[str], bool]:
    """Exactly these paths."""
    wanted = frozenset(paths)
    return lambda path: path in wanted


class Router:
    """Answers every :class:`HttpRequest`; never raises."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._routes = list(routes)

    def add(self, route: Route) -> None:
        """Add ``route`` after the existing ones (earlier routes win)."""
        self._routes.append(route)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """The response to ``request``."""
        here = [r for r in self._routes if r.matches(request.path)]
        if not here:
            return json_error(404, f"nothing here: {request.path}")
        methods = {method for r in here for method in r.methods}
        if request.method == "OPTIONS":
            return HttpResponse(204, headers={"Allow": _allow(methods)})
        method = "GET" if request.method == "HEAD" else request.method
        route = next((r for r in here if method in r.methods), None)
        if route is None:
            response = json_error(405, f"{request.method} is not allowed here")
            response.headers["Allow"] = _allow(methods)
            return response
        try:
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
