"""Plain HTTP responses served on the WebSocket port (pages and the history API).

The server hands every non-upgrade GET to the page and API modules; they answer
with an :class:`HttpResponse` (or ``None`` when the path is not theirs) and know
nothing of websockets. ``server.py`` turns the value into a wire response.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(value: Any, status: int = 200) -> HttpResponse:
    """A JSON body; non-ASCII stays readable (UTF-8)."""
    body = json.dumps(value, ensure_ascii=False, indent=None).encode("utf-8")
    return HttpResponse(status, body, "application/json; charset=utf-8")


def json_error(status: int, message: str) -> HttpResponse:
    """The one shape of API errors: ``{"error": message}`` with an HTTP status."""
    return json_response({"error": message}, status)
