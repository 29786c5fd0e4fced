"""``GET /healthz`` and ``GET /readyz``: is the process up, and can it serve?

- ``/healthz`` answers 200 ``{"status": "ok"}`` while the process runs and its
  event loop turns; it checks nothing else, so a load balancer or an orchestrator
  restarts only a process that is really stuck.
- ``/readyz`` runs every readiness check (the store, Redis when configured: the
  list the runtime keeps, to which anyone may add), all at once, each bounded by
  ``timeout`` seconds. All passed: 200 ``{"status": "ready", "checks": {name:
  "ok", ...}}``. Any failed or too slow: 503 ``{"status": "unready", "failed":
  [names], "checks": {name: "ok" | reason}}``, so a load balancer sends editors
  elsewhere until it passes again.

A check is a name and an async function that returns when the dependency answered
and raises (anything) when it did not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from collab.errors import CollabError
from collab.http.messages import HttpRequest, HttpResponse, json_response
from collab.http.router import Route, exact

__all__ = ["HEALTH_PATH", "READY_PATH", "Check", "routes"]

log = logging.getLogger("collab.health")

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"

#: A readiness check: its name, and what to await (raises when the dependency fails).
Check = tuple[str, Callable[[], Awaitable[object]]]

_NO_STORE = {"Cache-Control": "no-store"}


def routes(checks: Sequence[Check], timeout: float) -> list[Route]:
    """The two routes. ``checks`` is read at each request (a list the caller may extend)."""

    async def health(request: HttpRequest) -> HttpResponse:
        return _no_store(json_response({"status": "ok"}))

    async def ready(request: HttpRequest) -> HttpResponse:
        current = list(checks)
        results = await asyncio.gather(*(_run(n, check, timeout) for n, check in current))
        answers = {name: result for (name, _), result in zip(current, results, strict=True)}
        failed = [name for name, result in answers.items() if result != "ok"]
        if failed:
            body = {"status": "unready", "failed": failed, "checks": answers}
            return _no_store(json_response(body, 503))
        return _no_store(json_response({"status": "ready", "checks": answers}))

    get = frozenset({"GET"})
    return [Route(exact(HEALTH_PATH), get, health), Route(exact(READY_PATH), get, ready)]


async def _run(name: str, check: Callable[[], Awaitable[object]], timeout: float) -> str:
    """``"ok"``, or what failed, in words safe to show anyone (no addresses, no
    driver messages: those go to the log, at WARNING)."""
    try:
        async with asyncio.timeout(timeout):
            await check()
    except TimeoutError:
        log.warning("not ready: %s did not answer within %g s", name, timeout)
        return f"no answer within {timeout:g} s"
    except CollabError as exc:
        log.warning("not ready: %s: %s", name, exc.reason)
        return "failed"
    except Exception as exc:
        log.warning("not ready: %s: %s: %s", name, type(exc).__name__, exc)
        return "failed"
    return "ok"


def _no_store(response: HttpResponse) -> HttpResponse:
    response.headers.update(_NO_STORE)
    return response
