"""Start a server under test in its own process and watch its CPU and memory.

Each server runs alone in a subprocess so that its CPU time (user + system, from
psutil) and its resident memory belong to it and to nothing else; the load
generator lives in another process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
PEER_SCRIPT = Path(__file__).resolve().with_name("pycrdt_server.py")
#: Yjs's reference server, installed by ``npm ci`` in scripts/bench/yjs-server
#: (``make node-deps`` does it).
YJS_DIR = Path(__file__).resolve().with_name("yjs-server")
YJS_SERVER = YJS_DIR / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"

#: The servers compared, by the name used on the command line. ``yjs`` is Yjs's own
#: server, npm ``@y/websocket-server`` 0.1.1 on yjs 13 (in memory, persists nothing),
#: started the way its package's ``y-websocket-server`` bin is, with HOST/PORT. ``collab-asgi`` is
#: collab's ASGI app under uvicorn (httptools, websockets-sansio, uvloop);
#: ``collab-base`` is ``collab serve`` from another checkout (``--baseline-repo``),
#: to compare a change with what it replaces in one sitting.
SERVERS = ("pycrdt", "yjs", "collab")
#: ``collab-memory`` is ``collab serve --db memory://``: collab without its store's cost;
#: ``collab-asyncio`` is ``collab serve --loop asyncio``: durable, on the stdlib's loop.
ALL_SERVERS = (
    *("pycrdt", "yjs", "collab", "collab-memory", "collab-asyncio", "collab-asgi", "collab-base"),
)
LABELS = {
    "pycrdt": "pycrdt-websocket",
    "yjs": "@y/websocket-server",
    "collab": "collab",
    "collab-asgi": "collab ASGI",
    "collab-base": "collab baseline",
    "collab-memory": "collab memory://",
    "collab-asyncio": "collab asyncio",
}
#: The checkout ``collab-base`` runs from (set by fanout.py's --baseline-repo).
BASELINE_REPO: Path | None = None


def free_port() -> int:
    """A TCP port that was free a moment ago (the server binds it right after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(
    kind: str, port: int, workdir: Path, pycrdt_store: str, collab_db: str | None = None
) -> list[str]:
    """The argv that starts ``kind`` on 127.0.0.1:``port``, keeping its files in ``workdir``.

    collab stores into ``collab_db`` (a store URL), by default a fresh SQLite file.
    """
    db_url = collab_db or f"sqlite:///{workdir / 'bench.db'}"
    if kind == "collab-asgi":
        return [
            *(sys.executable, "-m", "uvicorn", "--factory", "collab.asgi:from_env"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            *("--http", "httptools", "--ws", "websockets-sansio", "--loop", "uvloop"),
            *("--ws-max-size", str(128 * 1024 * 1024), "--ws-per-message-deflate", "false"),
        ]
    if kind == "collab-memory":
        return [
            *(sys.executable, "-m", "collab", "serve", "--host", "127.0.0.1"),
            *("--port", str(port), "--db", "memory://"),
        ]
    if kind == "collab-asyncio":
        return [
            *(sys.executable, "-m", "collab", "serve", "--host", "127.0.0.1"),
            *("--port", str(port), "--db", db_url, "--loop", "asyncio"),
        ]
    if kind == "collab-base":
        return [
            *(sys.executable, "-m", "collab", "serve", "--host", "127.0.0.1"),
            *("--port", str(port), "--db", db_url),
        ]
    if kind == "collab":
        if (REPO / "collab" / "__main__.py").exists():
            return [
                *(sys.executable, "-m", "collab", "serve", "--host", "127.0.0.1"),
                *("--port", str(port), "--db", db_url),
            ]
        # Before the CLI existed: the same server through its Python entry point.
        code = (
            "from collab.config import Config; from collab.server import run; "
            f"run(Config(host='127.0.0.1', port={port}, db_url={db_url!r}))"
        )
        return [sys.executable, "-c", code]
    if kind == "yjs":
        if not YJS_SERVER.exists():
            raise RuntimeError(
                f"{YJS_SERVER} is missing: run `npm ci` in {YJS_DIR} (or `make bench-deps`)"
            )
        # The package's bin (src/server.js) run by node itself, so the pid is the server's.
        return [shutil.which("node") or "node", str(YJS_SERVER)]
    if kind == "pycrdt":
        return [
            sys.executable,
            str(PEER_SCRIPT),
            "--port",
            str(port),
            "--store",
            pycrdt_store,
            "--db",
            str(workdir / "pycrdt.db"),
        ]
    raise ValueError(f"unknown server {kind!r}")


@dataclass
class ServerProcess:
    """A running server: its pid, port and the log file its output goes to."""

    kind: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path
    process: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.process = psutil.Process(self.popen.pid)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server has used so far."""
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def peak_rss(self) -> int:
        """The kernel's high-water mark of resident memory (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return self.rss()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_server(
    kind: str,
    workdir: Path,
    pycrdt_store: str = "none",
    collab_db: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> ServerProcess:
    """Start ``kind`` and return once it accepts TCP connections.

    ``extra_args`` are appended to the server's command line (``collab serve`` flags).
    Raises RuntimeError (with the tail of the server's log) if it exits or is not
    listening within 20 s.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / f"{kind}-{port}.log"
    env = dict(os.environ)
    repo = REPO
    if kind == "collab-base":
        if BASELINE_REPO is None:
            raise ValueError("collab-base needs --baseline-repo")
        repo = BASELINE_REPO
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    # Every simulated editor connects from 127.0.0.1: the per-IP limit would refuse the
    # idle phase's thousand. (A variable, not a flag: an older checkout ignores it.)
    env["COLLAB_MAX_CONNECTIONS_PER_IP"] = "none"
    # The memory and saturation phases type faster than one person can: the per-editor
    # message rate limit (200/s, 1008 past it) is for people, not for this generator.
    env["COLLAB_MESSAGES_PER_SECOND"] = "1000000"
    if kind == "yjs":
        env["HOST"], env["PORT"] = "127.0.0.1", str(port)
    if kind == "collab-asgi":
        env["COLLAB_DB_URL"] = collab_db or f"sqlite:///{workdir / 'bench.db'}"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [*server_command(kind, port, workdir, pycrdt_store, collab_db), *extra_args],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(kind, port, popen, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{kind} server did not start on port {port}:\n{tail}")


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds from an asyncio task."""

    def __init__(self, server: ServerProcess, interval: float = 0.1) -> None:
        self._server = server
        self._interval = interval
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                self.peak = max(self.peak, self._server.rss())
            except psutil.Error:
                return
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> int:
        """Stop sampling and return the peak RSS seen, in bytes."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.peak = max(self.peak, self._server.rss())
        return self.peak


class RedisServer:
    """A redis-server of our own on a free port, in memory only (``--save ""``)."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.popen = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.popen.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(10)
