"""One request and one response type for every HTTP answer collab gives.

Whichever server carries a request (the native listener, an ASGI server), it is
turned into an :class:`HttpRequest` at that transport's edge, answered by the one
:class:`~collab.http.router.Router`, and the :class:`HttpResponse` is written back
by the same transport. Nothing in this package knows sockets or ASGI.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from collab.policy.tokens import Grant

__all__ = ["HttpRequest", "HttpResponse", "json_error", "json_response"]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A whole HTTP request, its body read (bounded by ``max_message_size``).

    ``path`` is the raw path, still percent-encoded, below the mount point
    ``root_path`` (an ASGI app's, percent-encoded, no trailing ``/``; empty at the root);
    ``headers`` has lower-case names (a repeated header keeps its last value).
    ``grant`` is what the caller's token allows, set by the router on routes that
    need one (``None`` elsewhere).
    """

    method: str
    path: str
    query_string: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    client: str = ""
    grant: Grant | None = None
    root_path: str = ""

    @property
    def query(self) -> dict[str, str]:
        """The decoded query parameters (the last of a repeated name wins)."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A response: a body, or a ``stream`` of chunks sent as they come (event streams).

    A streamed response has no Content-Length; the transport ends it when the
    iterator ends, and closes the iterator (``aclose``) if the client goes away.
    """

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None


def json_response(value: Any, status: int = 200) -> HttpResponse:
    """A JSON body; non-ASCII stays readable (UTF-8)."""
    body = json.dumps(value, ensure_ascii=False, indent=None).encode("utf-8")
    return HttpResponse(status, body, "application/json; charset=utf-8")


def json_error(status: int, message: str) -> HttpResponse:
    """The one shape of HTTP errors: ``{"error": message}`` with an HTTP status."""
    return json_response({"error": message}, status)
