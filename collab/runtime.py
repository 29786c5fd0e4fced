"""The pieces every transport shares, started and stopped together.

A :class:`Runtime` holds one store, one journal, the rooms, the HTTP router, the
WebSocket gate and the HTTP fallback's sessions (whose route it adds to the
router), the webhooks when ``webhook_url`` names any, plus the background tasks
(presence expiry, history retention). The native server (:mod:`collab.server`)
and the ASGI app (:mod:`collab.asgi`) each open one and put their transport in
front of it, so both serve the same documents through the same machinery.

Shutting down (leaving :func:`open_runtime`) commits every accepted update and
snapshots every loaded document; transports close their editors first (the
listener's WebSockets, then :meth:`Runtime.close_sessions` for the fallback's).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from collab.config import Config
from collab.core import deletion, metrics
from collab.core.gate import Gate
from collab.core.journal import Journal
from collab.core.observer import DocumentObserver
from collab.core.relay import RoomRelay
from collab.core.rooms import Rooms
from collab.errors import CollabError
from collab.fanout import check_processes
from collab.http import api, edits, health, pages
from collab.http import metrics as metrics_http
from collab.http.router import Router
from collab.policy.access import Access
from collab.store import Store, store_from_url
from collab.store.replay import replay
from collab.transports.fallback import Fallback

if TYPE_CHECKING:
    from collab.integrations.webhooks import Webhooks

__all__ = ["Runtime", "open_runtime"]

log = logging.getLogger("collab.runtime")

#: The name ``Runtime.store_ready`` looks up: any name will do, a row is not needed.
_READINESS_PROBE = "collab-readiness-probe"


@dataclass(eq=False)
class Runtime:
    """A running collab core. Build it with :func:`open_runtime`."""

    config: Config
    store: Store
    journal: Journal
    rooms: Rooms
    router: Router
    gate: Gate
    fallback: Fallback
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: Told of durable commits and deletions (the webhooks), if anyone listens.
    observer: DocumentObserver | None = None
    #: What joins this process to the others (``--redis-url``), if anything.
    relay: RoomRelay | None = None
    #: What ``GET /readyz`` checks, by name (the store; the fan-out adds Redis). Each
    #: is awaited with ``readiness_timeout`` and raises when its dependency fails.
    readiness: list[health.Check] = field(default_factory=list)
    #: This process's metrics and, with ``metrics_dir``, its sibling workers'.
    shared_metrics: metrics_http.SharedMetrics = field(default_factory=metrics_http.SharedMetrics)

    async def store_ready(self) -> None:
        """A cheap query (one indexed lookup); raises StoreError when the store fails."""
        await self.store.document(_READINESS_PROBE)

    async def delete_document(self, doc: str) -> bool:
        """Delete ``doc`` (``DELETE /api/docs/{doc}``): its editors are closed with 4404,
        the store keeps only its tombstone, and watchers are told once that is durable.
        ``False`` when there was no such document."""
        if not await deletion.delete_document(self.rooms, self.store, doc):
            return False
        self.document_deleted(doc)
        return True

    def document_deleted(self, doc: str) -> None:
        """Tell whoever watches documents (webhooks: ``document.deleted``) that ``doc``
        was deleted. The DELETE path calls it once the deletion is durable."""
        if self.observer is not None:
            self.observer.deleted(doc)

    async def text_of(self, doc: str) -> str:
        """The current text of ``doc``: the live room's if loaded, else the store's."""
        from collab.history import formats

        room = self.rooms.get(doc)
        if room is not None:
            return formats.text_of(room.doc, self.config)
        loaded = await self.store.load(doc)
        return formats.text_of(replay(loaded.snapshot, loaded.entries), self.config)

    def close_sessions(self) -> None:
        """Close the HTTP fallback's sessions (1001), before the server stops its listener:
        their event streams end with a close event, so no response is left open."""
        self.fallback.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.config.awareness_renewal_interval)
            self.rooms.tick()

    async def _share_metrics(self) -> None:
        """Write this process's metrics into ``metrics_dir`` every ``metrics_interval``."""
        while True:
            self.shared_metrics.write()
            await asyncio.sleep(self.config.metrics_interval)

    async def _thin_history(self) -> None:
        """Apply the retention policy to every document, once per ``retention_interval``."""
        while True:
            await asyncio.sleep(self.config.retention_interval)
            from collab.history.versions import apply_retention  # not before it is needed

            try:
                for info in await self.store.documents():
                    removed = await apply_retention(self.store, self.config, info.name, time.time())
                    if removed:
                        log.info("retention merged %d entries of %r", removed, info.name)
            except CollabError as exc:
                log.error("retention failed: %s", exc.reason)


def build_router(
    config: Config, store: Store, rooms: Rooms, access: Access | None = None
) -> Router:
    """The router of pages, server-side edits and the history API (transports may add
    routes), enforcing ``access``. The edit routes come before the API's, whose prefix
    would hold their paths."""
    return Router(
        [pages.route(), *edits.routes(rooms, store, config), api.route(store, config)], access
    )


@contextlib.asynccontextmanager
async def _open_webhooks(config: Config) -> AsyncIterator[Webhooks | None]:
    """The webhooks when ``webhook_url`` is set (imported only then: urllib.request and
    http.client are ~2 MiB of a server's memory)."""
    if not config.webhook_url:
        yield None
        return
    from collab.integrations.webhooks import Webhooks

    async with Webhooks(config) as webhooks:
        yield webhooks


@contextlib.asynccontextmanager
async def _open_relay(config: Config) -> AsyncIterator[RoomRelay | None]:
    """The Redis relay when ``redis_url`` is set (imported only then: redis is an extra)."""
    if not config.redis_url:
        yield None
        return
    try:
        from collab.fanout.redis import RedisRelay
    except ImportError as exc:
        raise ValueError(
            "--redis-url needs the redis package: pip install 'collab[redis]'"
        ) from exc
    # Down until it connects (the relay sets it from then on): /metrics shows
    # collab_redis_up from the start whenever Redis is configured.
    metrics.REDIS_UP.set(0)
    async with RedisRelay(config) as relay:
        yield relay


@typing.runtime_checkable
class _Pinged(Protocol):
    """A relay that can tell whether its broker answers (the Redis one)."""

    async def ping(self) -> bool: ...


async def _redis_ready(relay: _Pinged) -> None:
    if not await relay.ping():
        raise ConnectionError("Redis does not answer")


@contextlib.asynccontextmanager
async def open_runtime(config: Config, store: Store | None = None) -> AsyncIterator[Runtime]:
    """Open the store (unless one is passed in, which the caller opens and closes),
    the journal, the relay (with ``redis_url``) and the rooms; on exit, unload every
    room (flush and snapshot).

    Raises:
        ValueError: settings under which processes cannot share documents
            (:func:`collab.fanout.check_processes`).
    """
    check_processes(config)
    own_store = store is None
    the_store = (
        store_from_url(
            config.db_url, auto_migrate=config.auto_migrate, several_writers=bool(config.redis_url)
        )
        if store is None
        else store
    )
    if own_store:
        await the_store.open()
    shared_metrics = metrics_http.SharedMetrics(config.metrics_dir)
    try:
        # Webhooks outlive the journal: its last commits at shutdown are reported too.
        async with (
            _open_webhooks(config) as webhooks,
            Journal(the_store, config, observer=webhooks) as journal,
            _open_relay(config) as relay,
        ):
            rooms = Rooms(config, the_store, journal, relay=relay)
            access = Access.from_config(config)
            if not access.enabled:
                log.warning(
                    "authentication is off: anyone who reaches this port reads and writes "
                    "every document (set --auth-secret or COLLAB_AUTH_SECRET; docs/security.md)"
                )
            gate = Gate(rooms, config, access=access)
            fallback = Fallback(gate, config)
            router = build_router(config, the_store, rooms, access)
            router.add(fallback.route())
            runtime = Runtime(
                config,
                the_store,
                journal,
                rooms,
                router,
                gate,
                fallback,
                observer=webhooks,
                relay=relay,
                shared_metrics=shared_metrics,
            )
            runtime.readiness.append(("store", runtime.store_ready))
            if isinstance(relay, _Pinged):
                runtime.readiness.append(("redis", functools.partial(_redis_ready, relay)))
            for route in health.routes(runtime.readiness, config.readiness_timeout):
                router.add(route)
            router.add(metrics_http.route(runtime.shared_metrics))
            if webhooks is not None:
                webhooks.text_of = runtime.text_of
            router.add(api.delete_route(config, runtime.delete_document))
            watcher = deletion.DeletionWatcher(rooms, the_store, config)
            await watcher.start()
            runtime.tasks = [
                asyncio.create_task(watcher.run(), name="collab deletions"),
                asyncio.create_task(runtime._tick(), name="collab tick"),
                asyncio.create_task(runtime._thin_history(), name="collab retention"),
            ]
            if config.metrics_dir:
                runtime.tasks.append(
                    asyncio.create_task(runtime._share_metrics(), name="collab metrics")
                )
            try:
                yield runtime
            finally:
                for task in runtime.tasks:
                    task.cancel()
                # Wait for them while the store is still open: a task cancelled inside a
                # query (the deletion watcher polls every few seconds) must finish its
                # driver's cleanup before the engine is disposed, or that cleanup waits forever.
                await asyncio.gather(*runtime.tasks, return_exceptions=True)
                runtime.close_sessions()  # idempotent: a transport may have done it already
                await rooms.close()
    finally:
        shared_metrics.write(final=True)  # the journal's last commits counted too
        if own_store:
            await the_store.close()
