"""What joins several collab processes: Redis pub/sub (:mod:`collab.fanout.redis`).

Imported only when ``Config.redis_url`` is set, so ``pip install collab`` without
the ``redis`` extra works as long as nobody asks for it.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from collab.config import Config

__all__ = ["check_processes"]


def check_processes(config: Config) -> None:
    """Refuse settings under which several processes would not serve one document.

    - ``workers > 1`` needs ``redis_url``: each worker holds its own copy of a
      document, and only Redis tells one worker what another's editors typed.
    - ``redis_url`` with a SQLite store is accepted only when Redis is on this
      machine (a loopback address or a unix socket): a SQLite file can be shared by
      processes of one machine only, and a Redis on this machine is how collab
      tells that every process is here. Use PostgreSQL across machines.

    Raises:
        ValueError: with a message saying what to change.
    """
    if config.workers > 1 and not config.redis_url:
        raise ValueError(
            f"--workers {config.workers} needs --redis-url: each worker holds its own copy "
            "of a document, and without Redis the editors of one worker would never see "
            "what those of another typed"
        )
    if config.redis_url and config.db_url.startswith("sqlite") and not _local(config.redis_url):
        raise ValueError(
            "a SQLite store with a Redis on another machine: a SQLite file can only be "
            "shared by processes on one machine, so with a remote Redis use PostgreSQL "
            "(--db postgresql://...), or a Redis on this machine (redis://127.0.0.1...)"
        )


def _local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return True
    host = parts.hostname or "localhost"
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
