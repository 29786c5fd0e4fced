"""All of collab's settings, with their defaults, in one frozen value.

``Config`` is built once (by the CLI from ``COLLAB_*`` environment variables and
flags, by tests with ``Config(...)``) and passed down explicitly. No other
module reads ``os.environ``, and no layer takes twenty keyword arguments.

Every leaf of ``Config`` is a :class:`Setting`: a field, or a field of a nested
settings dataclass (``retention.keep_all_seconds``), named with ``_`` joins
(``retention_keep_all_seconds``). Each setting is the variable
``COLLAB_<NAME>`` and the flag ``--<name-with-dashes>`` (collab.flags), and both
are read by :meth:`Setting.parse`, so flags, variables and defaults cannot drift
apart. A field declared with :func:`setting` carries the help text that
``collab serve --help`` shows.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

MiB = 1024 * 1024

_T = TypeVar("_T")


def setting(default: _T, help: str) -> _T:
    """A dataclass field with ``default`` and the ``help`` its flag shows."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class Retention:
    """How history is thinned as it ages.

    Everything is kept for ``keep_all_seconds``; older than that, one version per
    ``hourly_seconds`` window is kept until ``daily_after_seconds``; older still,
    one per day. ``None`` for ``keep_all_seconds`` keeps everything forever.
    """

    keep_all_seconds: float | None = setting(
        7 * 24 * 3600, "history younger than this is kept whole (none: forever)"
    )
    hourly_seconds: float = setting(3600, "older history keeps one version per window this long")
    daily_after_seconds: float = setting(30 * 24 * 3600, "history older than this keeps one a day")


@dataclass(frozen=True, slots=True)
class Config:
    """collab's configuration. Every default lives here."""

    # Network
    host: str = setting("127.0.0.1", "interface to listen on (0.0.0.0 for all)")
    port: int = setting(8000, "TCP port for WebSockets and HTTP (0 picks a free one)")
    #: Admits a 2 MiB paste and the first sync of a 50 MB document.
    max_message_size: int = setting(128 * MiB, "largest frame accepted, in bytes (bigger: 1009)")
    #: Keepalive: a ping every ``ping_interval`` s; no pong within ``ping_timeout`` s drops it.
    ping_interval: float | None = setting(20.0, "seconds between keepalive pings (none: no pings)")
    ping_timeout: float | None = setting(20.0, "seconds a ping may go unanswered (none: forever)")
    #: A dead peer is dropped ping_interval + ping_timeout + close_timeout after it went silent.
    close_timeout: float = setting(5.0, "seconds a closing handshake may take before the cut")
    #: The whole path; see collab.names for the alphabet.
    max_name_length: int = setting(128, "longest document name, in characters")
    http_keepalive_timeout: float = setting(
        30.0, "seconds an idle keep-alive HTTP connection stays open"
    )
    #: TLS on the native listener (``collab serve``): https:// and wss:// on the same port.
    certfile: str = setting("", "PEM certificate (and chain) to serve https:// and wss:// with")
    keyfile: str = setting("", "PEM private key of certfile (empty: certfile holds it)")
    #: uvloop costs less CPU per frame, asyncio (the stdlib's) less memory (docs/performance.md).
    loop: Literal["auto", "uvloop", "asyncio"] = setting(
        "auto", "event loop of collab serve: auto is uvloop where it is installed, else asyncio"
    )

    #: A single frame larger than this is admitted into an empty buffer, so a big first
    #: sync gets through.
    outbox_max_bytes: int = setting(
        32 * MiB, "bytes buffered for one editor before it is closed with 1013"
    )

    # Security (collab.policy; docs/security.md)
    #: Empty (and no auth_public_key): authentication is off, every document is open.
    auth_secret: str = setting(
        "", "HS256 secret of the JWTs that editors and API callers present (empty: auth off)"
    )
    #: ES256 tokens are then accepted too (minted elsewhere with the private key).
    auth_public_key: str = setting(
        "", "PEM file of an ES256 public key whose signed tokens are accepted (auth on)"
    )
    #: Same-origin requests (Origin equal to the Host header) are always allowed.
    allow_origin: tuple[str, ...] = setting(
        (), "origins allowed to connect and call the API (repeatable or a,b; empty: any)"
    )

    # Limits (collab.policy.limits; docs/security.md). ``none`` turns one off.
    #: Every connection counts: editors, HTTP fallback sessions, signaling peers.
    max_connections: int | None = setting(
        10_000, "connections open at once, in all (more: 503 at the handshake)"
    )
    max_connections_per_doc: int | None = setting(
        1_000, "editors of one document at once (more: 503 at the handshake)"
    )
    #: An office behind one NAT address shares it; the bench and tests from 127.0.0.1 too.
    max_connections_per_ip: int | None = setting(
        200, "connections from one client IP at once (more: 429 at the handshake)"
    )
    #: A fast typist sends ~15 keystrokes/s, key repeat ~30/s, each an update plus an
    #: awareness (cursor) message: ~60 messages/s; a paste is one message.
    messages_per_second: float = setting(
        200.0, "messages per second one editor may send, sustained (faster: 1008)"
    )
    #: A reconnect (step 1, step 2, awareness) or a script's burst of small transactions.
    message_burst: int = setting(1_000, "burst of messages one editor may send above the rate")
    #: Measured as the document's state plus the incoming update's length (an upper
    #: bound of the state after it), so checking costs an addition per update.
    max_doc_bytes: int | None = setting(
        64 * MiB, "largest document state, in bytes (an update that would pass it: 4413)"
    )
    #: Like uvicorn's --forwarded-allow-ips; empty trusts no header.
    forwarded_allow_ips: tuple[str, ...] = setting(
        (),
        "proxy addresses or networks (or *) whose X-Forwarded-For names the client IP "
        "(repeatable; as a variable: comma-separated)",
    )

    # HTTP fallback (server-sent events + POST, for networks that refuse WebSocket upgrades)
    fallback_session_idle_seconds: float = setting(
        30.0, "seconds an HTTP fallback session lives with no event stream and no request"
    )
    #: Proxies close streams that stay quiet; clients take two missed keepalives as a cut.
    fallback_keepalive_seconds: float = setting(
        15.0, "seconds between keepalive comments on an idle HTTP fallback event stream"
    )

    # WebRTC signaling (``/signal``, y-webrtc's JSON protocol), bounds per connection.
    signal_max_topics: int = setting(
        100, "topics one signaling connection may subscribe to at once (more: 1008)"
    )
    #: An SDP offer is a few KiB.
    signal_max_message_size: int = setting(64 * 1024, "largest signaling frame (bigger: 1009)")
    #: A token bucket: sustained rate, with bursts of up to ``signal_burst``.
    signal_messages_per_second: float = setting(
        50.0, "messages per second one signaling connection may send (faster: 1008)"
    )
    signal_burst: int = setting(200, "burst of signaling messages admitted above the rate")

    # Awareness (y-protocols uses 30 s).
    awareness_timeout: float = setting(30.0, "seconds before a presence not renewed is removed")
    awareness_renewal_interval: float = setting(
        5.0, "seconds between batches of forwarded presence renewals"
    )

    # Store
    db_url: str = setting(
        "sqlite:///collab.db",
        "store URL: sqlite:///path.db, postgresql://user@host/db or memory://",
    )
    #: Never rebuilt: an older store is upgraded in place or refused.
    auto_migrate: bool = setting(
        True, "upgrade an older store's schema at start (off: refuse, run `collab migrate`)"
    )
    commit_interval: float = setting(
        0.05, "group commit: seconds to gather updates into one transaction"
    )
    commit_max_updates: int = setting(2000, "a batch this big commits without waiting")
    #: A failed commit is retried after 50 ms, then twice as long each time, up to this.
    commit_retry_max_delay: float = setting(5.0, "longest wait, in seconds, between commit retries")
    shutdown_flush_timeout: float = setting(
        30.0, "seconds to keep retrying a failing store when shutting down"
    )
    snapshot_every_updates: int = setting(
        1000, "snapshot a document after this many logged updates"
    )
    snapshot_every_seconds: float = setting(
        300.0, "... or this long after its last snapshot, if it changed"
    )
    unload_grace_seconds: float = setting(
        30.0, "seconds a document nobody edits stays loaded before it is flushed and unloaded"
    )
    deletion_poll_interval: float = setting(
        2.0, "seconds between looks for documents deleted by another process (0: never look)"
    )

    # Several processes (docs/deployment.md): Redis joins the processes that hold a document.
    redis_url: str | None = setting(
        None, "Redis joining processes that serve the same documents (none: one process)"
    )
    redis_channel_prefix: str = setting(
        "collab:doc:", "Redis channel of a document: this prefix and the document's name"
    )
    #: Bounds how long the first editor of a document on this process may wait.
    redis_sync_timeout: float = setting(
        1.0, "seconds a process loading a document waits for the others' state"
    )
    #: A connection that dies without a FIN or an RST (a dropped NAT entry, a failover
    #: to another host) is found by this, not by TCP, which takes hours.
    redis_heartbeat: float = setting(
        5.0,
        "seconds between PINGs to Redis; silent for twice as long: reconnect and resync (0: never)",
    )
    workers: int = setting(1, "processes serving one port (more than 1 needs --redis-url)")
    #: Set by `collab serve --workers N` in each worker (0..N-1); none in a lone process.
    worker_index: int | None = setting(None, "this worker's index (set by --workers)")

    # History
    history_enabled: bool = setting(True, "keep history (off: only what the current text needs)")
    #: Empty: read from each document (collab.history.formats: a Y.Text or Y.XmlFragment).
    text_root: str = setting(
        "", "force the root that holds a document's text (empty: read it from the document)"
    )
    version_gap_seconds: float = setting(60.0, "a quiet gap this long starts a new version")
    version_max_updates: int = setting(500, "a version also ends after this many updates")
    retention: Retention = field(default_factory=Retention)
    retention_interval: float = setting(
        3600.0, "seconds between two thinnings of every document's history"
    )

    # Server-side edits (HTTP POST of updates, text edits and restores)
    #: The edit stays applied and is committed when the store recovers.
    edit_durable_timeout: float = setting(
        30.0, "seconds an HTTP edit waits to be durable before it answers 503"
    )

    # Typed room events (?events=1; collab.core.events), bounds per connection.
    #: A "typing" or chat event is a few hundred bytes.
    event_max_bytes: int = setting(64 * 1024, "largest room event, in bytes (bigger: 1009)")
    event_messages_per_second: float = setting(
        20.0, "room events per second one connection may send (faster: 1008)"
    )
    event_burst: int = setting(50, "burst of room events admitted above the rate")

    # Webhooks (collab.integrations.webhooks; docs/webhooks.md)
    webhook_url: tuple[str, ...] = setting(
        (), "POST document events to this URL (repeatable; as a variable: comma-separated)"
    )
    #: Empty: deliveries are not signed.
    webhook_secret: str = setting("", "HMAC-SHA256 key of the X-Collab-Signature header")
    webhook_include_text: bool = setting(False, "document.changed carries the document's text")
    webhook_debounce_seconds: float = setting(
        2.0, "document.changed goes out this long after the last change..."
    )
    webhook_max_wait_seconds: float = setting(
        10.0, "... or this long after the first one, while editing goes on"
    )
    webhook_timeout: float = setting(10.0, "seconds one delivery attempt may take")
    #: Doubles after each failure (with jitter), up to a minute.
    webhook_retry_delay: float = setting(1.0, "seconds before the first retry of a delivery")
    webhook_retry_for_seconds: float = setting(
        600.0, "a delivery still failing this long after its first attempt is dropped"
    )
    webhook_queue_size: int = setting(
        1000, "deliveries waiting per URL; when full the oldest is dropped"
    )

    # Operations: /metrics, /healthz, /readyz, logs (docs/operations.md)
    log_format: Literal["text", "json"] = setting(
        "text", "log lines as text for people, or one JSON object per line"
    )
    #: Each check (the store, Redis) gets this long; a slower answer counts as a failure.
    readiness_timeout: float = setting(2.0, "seconds one /readyz check may take before it fails")
    #: Set by `collab serve --workers N` for its workers; empty: this process reports alone.
    metrics_dir: str = setting(
        "", "directory where worker processes share their metrics (empty: one process)"
    )
    metrics_interval: float = setting(
        1.0, "seconds between two writes of this process's metrics into metrics_dir"
    )

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied (the value is frozen)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a Config from ``COLLAB_<NAME>`` variables, then ``overrides``.

        ``COLLAB_PORT=9000`` sets ``port``; ``COLLAB_RETENTION_HOURLY_SECONDS`` sets
        ``retention.hourly_seconds``. ``overrides`` are parsed values by setting
        name; those whose value is ``None`` are ignored.

        Raises:
            ValueError: a variable holds a bad value (the message names it).
        """
        values = read_env(os.environ if environ is None else environ)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Config:
        """The defaults with ``values`` (parsed, by setting name) put in.

        Raises:
            KeyError: a name is not a setting.
        """
        known = {s.name: s for s in settings()}
        nested: dict[tuple[str, ...], dict[str, Any]] = {(): {}}
        for name, value in values.items():
            path = known[name].path
            nested.setdefault(path[:-1], {})[path[-1]] = value
        top = nested.pop(())
        for path, changes in nested.items():
            # One level deep is all Config has; Setting discovery enforces it.
            top[path[0]] = dataclasses.replace(getattr(_DEFAULT, path[0]), **changes)
        return cls(**top)


@dataclass(frozen=True, slots=True)
class Setting:
    """One leaf of :class:`Config`, as a variable and a flag see it."""

    #: Field names from Config down: ``("port",)``, ``("retention", "hourly_seconds")``.
    path: tuple[str, ...]
    #: ``str``, ``int``, ``float`` or ``bool`` (of each item, for a ``tuple`` setting).
    kind: type
    #: ``None`` is a valid value (written ``none``, or empty in a variable).
    optional: bool
    #: The allowed values of a ``Literal[...]`` field, else empty.
    choices: tuple[str, ...]
    default: Any
    help: str
    #: A ``tuple[str, ...]`` field: a flag given many times, a variable comma-separated.
    many: bool = False

    @property
    def name(self) -> str:
        return "_".join(self.path)

    @property
    def env(self) -> str:
        return f"COLLAB_{self.name.upper()}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: str) -> Any:
        """The value ``raw`` (a variable's or a flag's text) stands for.

        Booleans are ``1/true/yes/on`` or ``0/false/no/off``; numbers are finite
        and not negative; ``none`` (or an empty string) is ``None`` where allowed.

        Raises:
            ValueError: ``raw`` is not such a value; the message quotes it but does
                not name the setting (the caller knows whether it was a flag).
        """
        if self.many:
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        text = raw.strip()
        if self.optional and text.lower() in ("", "none"):
            return None
        if self.kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{raw!r} is not a boolean (on/off, true/false, yes/no, 1/0)")
        if self.kind is int or self.kind is float:
            try:
                number = int(text) if self.kind is int else float(text)
            except ValueError:
                number = math.nan
            if not math.isfinite(number) or number < 0:
                what = "an integer" if self.kind is int else "a number"
                raise ValueError(f"{raw!r} is not {what} >= 0{self._or_none()}")
            return number
        if self.choices and raw not in self.choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(self.choices)}")
        return raw

    def show(self, value: Any) -> str:
        """``value`` written as :meth:`parse` reads it back."""
        if value is None:
            return "none"
        if self.many:
            return ",".join(value)
        if self.kind is bool:
            return "on" if value else "off"
        return str(value)

    def _or_none(self) -> str:
        return " or none" if self.optional else ""


def settings() -> list[Setting]:
    """Every setting of :class:`Config`, in declaration order (nested ones in place).

    They are found when this module is imported, which raises ``TypeError`` if a
    field has a type no variable or flag can hold (give it str, int, float or bool,
    optionally ``| None``, a ``Literal`` of strings, ``tuple[str, ...]``, or a frozen
    dataclass of those)
    or if two settings would have the same name.
    """
    return list(_SETTINGS)


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Parsed values, by setting name, of the ``COLLAB_*`` variables in ``environ``.

    Raises:
        ValueError: a variable holds a bad value (the message names the variable).
    """
    values: dict[str, Any] = {}
    for s in settings():
        raw = environ.get(s.env)
        if raw is None:
            continue
        try:
            values[s.name] = s.parse(raw)
        except ValueError as exc:
            raise ValueError(f"{s.env}: {exc}") from None
    return values


def _discover(cls: type, prefix: tuple[str, ...], default: Any) -> list[Setting]:
    found: list[Setting] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = (*prefix, f.name)
        kind: Any = hints[f.name]
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(kind) and isinstance(kind, type):
            if prefix:
                raise TypeError(f"{'.'.join(path)}: settings nest one level deep at most")
            found += _discover(kind, path, value)
            continue
        optional = False
        args = typing.get_args(kind)
        if isinstance(kind, types.UnionType) and type(None) in args and len(args) == 2:
            optional = True
            kind = next(a for a in args if a is not type(None))
        many = kind == tuple[str, ...]
        if many:
            kind = str
        choices: tuple[str, ...] = ()
        if typing.get_origin(kind) is Literal and all(isinstance(a, str) for a in args):
            choices, kind = typing.get_args(kind), str
        if kind not in (str, int, float, bool):
            raise TypeError(f"{'.'.join(path)}: a flag cannot hold {hints[f.name]}")
        help_text = f.metadata.get("help", "")
        found.append(Setting(path, kind, optional, choices, value, help_text, many))
    return found


def _unique(found: list[Setting]) -> list[Setting]:
    names = [s.name for s in found]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise TypeError(f"settings named alike: {', '.join(clashes)}")
    return found


_DEFAULT = Config()
_SETTINGS = _unique(_discover(Config, (), _DEFAULT))
