"""``collab serve``: the process, its signals, and the native listener in front of a runtime.

:func:`serve` runs one :class:`~collab.transports.listener.Listener` (HTTP/1.1 and
WebSocket upgrades on one port) over one :class:`~collab.runtime.Runtime`;
:func:`run` is the CLI's blocking entry point, which stops cleanly on SIGTERM or
SIGINT: editors are closed with 1001, every accepted update is committed and
every loaded document snapshotted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

from collab.config import Config
from collab.core.journal import Journal
from collab.core.rooms import Rooms
from collab.runtime import Runtime, open_runtime
from collab.store import Store
from collab.transports.listener import Listener

log = logging.getLogger("collab.server")

__all__ = ["Server", "run", "serve"]


class Server:
    """A running collab server. Build it with :func:`serve`."""

    def __init__(self, runtime: Runtime, listener: Listener) -> None:
        self.runtime = runtime
        self.listener = listener

    @property
    def config(self) -> Config:
        return self.runtime.config

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def journal(self) -> Journal:
        return self.runtime.journal

    @property
    def rooms(self) -> Rooms:
        return self.runtime.rooms

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with ``Config(port=0)``)."""
        return self.listener.port

    @property
    def connections(self) -> int:
        """How many editors are connected now."""
        return self.listener.websockets


@contextlib.asynccontextmanager
async def serve(config: Config, store: Store | None = None) -> AsyncIterator[Server]:
    """Run a collab server for the duration of the ``async with`` block.

    ``store`` defaults to the one ``config.db_url`` names; a store passed in is
    opened and closed by the caller. On exit, editors are closed with 1001, every
    accepted update is committed and every loaded document snapshotted.
    """
    async with open_runtime(config, store) as runtime:
        listener = Listener(config, runtime.router, runtime.gate)
        await listener.start()
        try:
            yield Server(runtime, listener)
        finally:
            runtime.close_sessions()  # fallback event streams end with 1001, then the listener
            await listener.close()


def run(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly (the CLI's ``serve``).

    With ``workers > 1`` (and no ``worker_index``: this is not a worker itself),
    run that many worker processes instead (:mod:`collab.workers`).
    """
    if config.workers > 1 and config.worker_index is None:
        from collab.workers import supervise

        status = supervise(config)
        if status:
            raise SystemExit(status)
        return
    fix_mmap_threshold()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with serve(config) as server:
            _freeze_startup_objects()
            log.info(
                "collab serving on %s://%s:%d (store %s, loop %s)",
                "https" if config.certfile else "http",
                config.host,
                server.port,
                _redact(config.db_url),
                "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio",
            )
            await stop.wait()
            log.info("stopping: closing %d connections", server.connections)
        log.info("stopped")

    with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
        runner.run(main())


def _freeze_startup_objects() -> None:
    """Exempt what exists once the server listens from the cyclic garbage collector.

    Modules, classes, the configuration and the store's machinery live as long as
    the process; scanning them again in every full collection only costs time,
    and a full collection pauses every editor at once (36 ms measured with the
    store's modules loaded, docs/performance.md). ``gc.freeze`` moves them to the
    permanent generation; what is allocated afterwards (documents, sessions) is
    collected as usual. Done by the ``collab serve`` process only, never by
    :func:`serve`, which an application may embed.
    """
    gc.collect()
    gc.freeze()


#: glibc's ``M_MMAP_THRESHOLD`` parameter of ``mallopt`` (malloc.h).
_M_MMAP_THRESHOLD = -3
#: Its default, which glibc raises up to 32 MiB as mmapped blocks are freed.
MMAP_THRESHOLD_BYTES = 128 * 1024


def fix_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold at its default, 128 KiB; return whether it was set.

    glibc serves an allocation of at least the threshold with its own ``mmap``
    and gives it back to the kernel when it is freed, but each such free raises
    the threshold to that block's size (up to 32 MiB). A server encodes a large
    document's state in one buffer (a snapshot, a sync reply), so after the
    first one, every later buffer of that size comes from the heap of the thread
    that made it, and the free space left behind stays in the process's RSS:
    3.7 MiB in the SQLite writer thread's arena once a 1 MB document has been
    snapshotted, 0.65 MiB with the threshold pinned (docs/performance.md,
    "Memory"). Setting it with ``mallopt`` also turns the adjustment off.

    Done once by the ``collab serve`` process (never by :func:`serve`, which an
    application may embed), and not at all where the C library is not glibc or
    the operator set the threshold already (``MALLOC_MMAP_THRESHOLD_`` or
    ``GLIBC_TUNABLES``).
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    try:
        libc_version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or no such name
        libc_version = ""
    if not libc_version.startswith("glibc"):
        return False
    import ctypes

    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the event loop ``choice`` names (``None``: asyncio's own).

    ``auto`` is uvloop where it is installed: the same asyncio API, less CPU per
    frame written; ``asyncio`` never imports uvloop, whose code and threads cost
    about 2.5 MiB of RSS. Raises ValueError (the CLI's usage error) for ``uvloop``
    when it is not installed.
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ValueError(
                "--loop uvloop, but uvloop is not installed (pip install uvloop)"
            ) from None
        return None
    return uvloop.new_event_loop


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
