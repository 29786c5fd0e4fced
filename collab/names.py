"""Which document names collab accepts.

Names travel in URL paths and file names (exports), so they are kept to a safe
alphabet: letters, digits, ``.``, ``_`` and ``-``, at most ``max_name_length``
characters, and never ``.`` or ``..``.
"""

from __future__ import annotations

import re

from collab.config import Config

_NAME = re.compile(r"[A-Za-z0-9._-]+")


def valid_name(name: str, config: Config) -> bool:
    """True if ``name`` may name a document."""
    return (
        0 < len(name) <= config.max_name_length
        and name not in (".", "..")
        and _NAME.fullmatch(name) is not None
    )
