"""All of collab's settings, with their defaults, in one frozen value.

``Config`` is built once (by the CLI from flags and ``COLLAB_*`` environment
variables, by tests with ``Config(...)``) and passed down explicitly. No other
module reads ``os.environ``, and no layer takes twenty keyword arguments.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Retention:
    """How history is thinned as it ages.

    Everything is kept for ``keep_all_seconds``; older than that, one version per
    ``hourly_seconds`` window is kept until ``daily_after_seconds``; older still,
    one per day. ``None`` for ``keep_all_seconds`` keeps everything forever.
    """

    keep_all_seconds: float | None = 7 * 24 * 3600
    hourly_seconds: float = 3600
    daily_after_seconds: float = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Config:
    """collab's configuration. Every default lives here."""

    # Network
    host: str = "127.0.0.1"
    port: int = 8000
    #: Largest frame accepted. Admits a 2 MiB paste and the first sync of a 50 MB document.
    max_message_size: int = 128 * MiB
    #: Keepalive: a ping every ``ping_interval`` s; no pong within ``ping_timeout`` s drops it.
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    #: How long a closing handshake may take before the TCP connection is cut. A dead
    #: peer is dropped ping_interval + ping_timeout + close_timeout after it went silent.
    close_timeout: float = 5.0
    #: Longest accepted document name (the whole path; see collab.names for the alphabet).
    max_name_length: int = 128
    #: An idle keep-alive HTTP connection is closed after this many seconds.
    http_keepalive_timeout: float = 30.0

    #: Flow control: bytes buffered for one editor before it is closed with 1013. A single
    #: frame larger than this is admitted into an empty buffer, so a big first sync gets through.
    outbox_max_bytes: int = 32 * MiB

    # Awareness: a state not renewed for this long is removed (y-protocols uses 30 s).
    awareness_timeout: float = 30.0
    #: Pure renewals (same state, higher clock) are forwarded in one batch per interval.
    awareness_renewal_interval: float = 5.0

    # Store
    db_url: str = "sqlite:///collab.db"
    #: Group commit: wait at most this long to gather more updates into one transaction.
    commit_interval: float = 0.05
    commit_max_updates: int = 2000
    #: A failed commit is retried after 50 ms, then twice as long each time, up to this.
    commit_retry_max_delay: float = 5.0
    #: Shutting down, the journal keeps retrying a failing store this long before giving up.
    shutdown_flush_timeout: float = 30.0
    #: Snapshot a document after this many logged updates, or this many seconds.
    snapshot_every_updates: int = 1000
    snapshot_every_seconds: float = 300.0
    #: A document nobody edits stays loaded this long, then is flushed and unloaded.
    unload_grace_seconds: float = 30.0

    # History
    history_enabled: bool = True
    #: The root that holds a document's text, forced ("text", "prosemirror", ...). Empty:
    #: read from each document (collab.history.formats: a Y.Text or Y.XmlFragment root).
    text_root: str = ""
    #: A new version starts after this quiet gap, or after this many updates.
    version_gap_seconds: float = 60.0
    version_max_updates: int = 500
    retention: Retention = field(default_factory=Retention)
    #: How often the server thins every document's history by ``retention``.
    retention_interval: float = 3600.0

    # Server-side edits (HTTP POST of updates, text edits and restores)
    #: How long an edit request waits for its update to be durable before it answers 503
    #: (the update stays accepted and is committed when the store recovers).
    edit_durable_timeout: float = 30.0

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied (the value is frozen)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a Config from ``COLLAB_<FIELD>`` variables, then ``overrides``.

        ``COLLAB_PORT=9000`` sets ``port``; ``COLLAB_DB_URL`` sets ``db_url``.
        Overrides whose value is ``None`` are ignored, so CLI flags that were not
        given do not shadow the environment.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"COLLAB_{f.name.upper()}")
            if raw is None or f.name == "retention":
                continue
            values[f.name] = _parse(f.name, str(f.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _parse(name: str, type_name: str, raw: str) -> Any:
    if raw == "" and "None" in type_name:
        return None
    try:
        if type_name.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"COLLAB_{name.upper()}={raw!r} is not a valid {type_name}") from None
    return raw
