"""Which pages may connect: the ``Origin`` check (``Config.allow_origin``).

Browsers send ``Origin`` with every WebSocket handshake and cross-origin request;
scripts and other servers usually send none. A request is allowed when it has no
``Origin``, when its ``Origin`` is the server's own (its host and port equal the
request's ``Host`` header), or when the origin is listed. An empty list allows
every origin (the server's behaviour before the setting existed). ``*`` in the
list allows every origin too, but still only listed origins get CORS answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["Origins"]


def _normal(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class Origins:
    """The allowed origins (``https://a.example``; each item may hold ``a,b``)."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self._listed = frozenset(
            _normal(part) for item in allowed for part in item.split(",") if part.strip()
        )

    @property
    def restricted(self) -> bool:
        """True when some origins are refused."""
        return bool(self._listed) and "*" not in self._listed

    def listed(self, origin: str | None) -> bool:
        """Whether ``origin`` is named in the list (what CORS answers need)."""
        return origin is not None and _normal(origin) in self._listed

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether a request with these ``Origin`` and ``Host`` headers may proceed."""
        if origin is None or not self.restricted or self.listed(origin):
            return True
        return host is not None and _same_host(origin, host)


def _same_host(origin: str, host: str) -> bool:
    try:
        parts = urlsplit(_normal(origin))
        netloc = parts.netloc
    except ValueError:
        return False
    if not netloc or parts.scheme not in ("http", "https"):
        return False
    default = {"http": ":80", "https": ":443"}[parts.scheme]
    mine = host.strip().lower()
    return netloc == mine or netloc + default == mine or netloc == mine + default
