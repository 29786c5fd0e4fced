"""Which document names collab accepts, and how a URL path becomes one.

A document is named by the whole URL path below the server's root (or below an
ASGI mount), as Yjs's own server does: ``ws://host:8000/team-a/notes`` edits
``team-a/notes``, and ``ws://host:8000/team-b/notes`` another document. A name is
one or more *segments* joined by ``/``; each segment is 1 or more characters from

    A-Z a-z 0-9 . _ - ~ : @ + = ,

and is never ``.`` or ``..``. The whole name is at most ``max_name_length``
characters. ``:`` and ``@`` admit real room names (Jupyter's are
``json:notebook:<id>``).

:func:`parse_path` reads the *raw* request path, before anyone decoded or
normalized it: a character the rules do not allow, raw or percent-encoded (a tab,
a newline, ``%00``, ``%2F`` inside a segment) refuses the path with
:class:`~collab.errors.InvalidName`; it is never cleaned up into another
document's name.
"""

from __future__ import annotations

import re

from collab.config import Config
from collab.errors import InvalidName

__all__ = ["NAME_RULE", "parse_path", "valid_name"]

_SEGMENT = re.compile(r"[A-Za-z0-9._~:@+=,-]+")
# What may appear in a raw path: the segment alphabet, '/' and percent escapes.
_RAW_PATH = re.compile(r"(?:[A-Za-z0-9._~:@+=,/-]|%[0-9A-Fa-f]{2})*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")

#: The rule in words, for error messages.
NAME_RULE = (
    "invalid document name: 1 to {max} characters: segments of A-Z a-z 0-9 . _ - ~ : @ + = , "
    "joined by '/', none empty, '.' or '..'"
)


def valid_name(name: str, config: Config) -> bool:
    """True if ``name`` (already decoded) may name a document."""
    if not 0 < len(name) <= config.max_name_length:
        return False
    return all(
        segment not in (".", "..") and _SEGMENT.fullmatch(segment) is not None
        for segment in name.split("/")
    )


def parse_path(raw_path: str, config: Config, root: str = "") -> str:
    """The document named by ``raw_path`` (no query string), below ``root``.

    ``root`` is the mount prefix an ASGI server put in front (``/collab``); the
    path must start with it. Percent escapes are decoded after the raw path was
    checked, so ``notes%3A1`` names ``notes:1`` and ``bad%09name`` is refused.

    Raises:
        InvalidName: the path holds a character the rules do not allow, an empty,
            ``.`` or ``..`` segment, or a name that is too long.
    """
    path = raw_path
    if root:
        root = root.rstrip("/")
        if not (path == root or path.startswith(root + "/")):
            raise InvalidName(f"the path is not below {root}")
        path = path[len(root) :]
    if not path.startswith("/") or _RAW_PATH.fullmatch(path) is None:
        raise InvalidName(_rule(config))
    segments = [_ESCAPE.sub(_unescape, raw) for raw in path[1:].split("/")]
    name = "/".join(segments)
    # Checked segment by segment: a decoded '/' (%2F) never splits a segment.
    if not (0 < len(name) <= config.max_name_length) or not all(
        segment not in (".", "..") and _SEGMENT.fullmatch(segment) for segment in segments
    ):
        raise InvalidName(_rule(config))
    return name


def _unescape(match: re.Match[str]) -> str:
    return chr(int(match.group(1), 16))


def _rule(config: Config) -> str:
    return NAME_RULE.format(max=config.max_name_length)
