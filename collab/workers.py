"""``collab serve --workers N``: N server processes on one port, joined through Redis.

The parent serves nothing itself. It starts N workers (``python -m collab serve``
with the parent's whole configuration in ``COLLAB_*`` variables, plus
``COLLAB_WORKER_INDEX``), each listening on the same port with ``SO_REUSEPORT``
so that the kernel spreads connections over them, and each joined to the others
through ``--redis-url`` like any set of collab processes (docs/deployment.md).

- SIGTERM or SIGINT to the parent is passed to every worker, which closes its
  editors with 1001, commits what is queued and snapshots its documents; the
  parent waits for them all (up to ``shutdown_flush_timeout`` and a margin, then
  kills what is left) and exits 0 when every worker did.
- A worker gets SIGTERM when the parent dies, even by SIGKILL (Linux), so none
  is left serving alone.
- A worker that dies on its own is logged and started again; one that dies
  within a few seconds of its start (a bad setting, a port in use) stops the
  whole server instead of looping.
- The workers share a fresh directory for their metrics (``metrics_dir``, unless
  one is set) so that ``/metrics`` on any of them reports the whole server.

Without ``redis_url``, ``workers > 1`` is refused (collab.fanout.check_processes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType

from collab.config import Config, settings
from collab.fanout import check_processes
from collab.http.metrics import prepare_dir

__all__ = ["supervise"]

log = logging.getLogger("collab.workers")

#: A worker that exits sooner than this after its start stops the server (no restart loop).
_EARLY_EXIT_SECONDS = 5.0
_POLL_SECONDS = 0.1


class _Worker:
    def __init__(self, index: int, env: dict[str, str]) -> None:
        self.index = index
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
        command = [sys.executable, "-m", "collab", "serve", "--log-level", level]
        self.proc = subprocess.Popen(command, env=self.env, preexec_fn=_die_with_parent)
        self.started = time.monotonic()
        log.info("worker %d started (pid %d)", self.index, self.proc.pid)


def supervise(config: Config) -> int:
    """Run ``config.workers`` workers until SIGTERM/SIGINT; return the exit status.

    Raises:
        ValueError: the settings cannot run several processes (no Redis, say).
    """
    check_processes(config)
    placeholder, port = _reserve_port(config)
    # The workers share a directory for their metrics (collab.http.metrics): the one
    # given, emptied of an earlier run's files (their counts are not this run's), or ours.
    if config.metrics_dir:
        prepare_dir(config.metrics_dir)
    own_dir = None if config.metrics_dir else tempfile.mkdtemp(prefix="collab-metrics-")
    config = config.replace(port=port)
    base = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    for s in settings():
        value = config
        for part in s.path:
            value = getattr(value, part)
        base[s.env] = s.show(value)
    if own_dir is not None:
        base["COLLAB_METRICS_DIR"] = own_dir
    workers = [_Worker(i, {**base, "COLLAB_WORKER_INDEX": str(i)}) for i in range(config.workers)]
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        log.info("collab serving on http://%s:%d with %d workers", config.host, port, len(workers))
        status = _watch(workers, lambda: stopping)
        return _stop(workers, config) or status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if placeholder is not None:
            placeholder.close()
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def _watch(workers: list[_Worker], stopping: object) -> int:
    """Restart workers that die, until asked to stop; 1 if one died at its start."""
    assert callable(stopping)
    while not stopping():
        time.sleep(_POLL_SECONDS)
        for worker in workers:
            assert worker.proc is not None
            code = worker.proc.poll()
            if code is None or stopping():
                continue
            if time.monotonic() - worker.started < _EARLY_EXIT_SECONDS:
                log.error("worker %d exited at its start (status %d): stopping", worker.index, code)
                return 1
            log.error("worker %d died (status %d): starting it again", worker.index, code)
            worker.start()
    return 0


def _stop(workers: list[_Worker], config: Config) -> int:
    """SIGTERM every worker, wait for all; 1 if any had to be killed or failed."""
    log.info("stopping %d workers", len(workers))
    running = [w for w in workers if w.proc is not None and w.proc.poll() is None]
    for worker in running:
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + config.shutdown_flush_timeout + 10
    status = 0
    for worker in workers:
        assert worker.proc is not None
        try:
            code = worker.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker %d did not stop in time: killed", worker.index)
            worker.proc.kill()
            worker.proc.wait()
            status = 1
            continue
        if code != 0:
            log.error("worker %d stopped with status %d", worker.index, code)
            status = 1
    log.info("stopped")
    return status


def _die_with_parent() -> None:
    """In a worker, before it runs: SIGTERM it when the parent dies, even by SIGKILL
    (Linux's PR_SET_PDEATHSIG), so no worker is left serving on its own."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _reserve_port(config: Config) -> tuple[socket.socket | None, int]:
    """The port the workers share. For port 0 one is picked and held (bound, never
    listening: the kernel gives connections to listening sockets only) while they run."""
    if config.port != 0:
        return None, config.port
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((config.host, 0))
    return sock, int(sock.getsockname()[1])
