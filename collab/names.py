"""Document names: the one rule the server, the HTTP API and the CLI share.

A name is 1 to ``config.max_name_length`` characters from ``[A-Za-z0-9._-]``, so
it is safe in a URL path segment, a file name and a log line without escaping.
``.`` and ``..`` are refused because they mean something else in a path.
"""

from __future__ import annotations

import re

from collab.config import Config

__all__ = ["valid_name"]

_NAME = re.compile(r"[A-Za-z0-9._-]+")


def valid_name(name: str, config: Config) -> bool:
    """Whether ``name`` may name a document under ``config``."""
    return (
        0 < len(name) <= config.max_name_length
        and _NAME.fullmatch(name) is not None
        and name not in (".", "..")
    )
