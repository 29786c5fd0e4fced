"""Fan-out benchmark: collab side by side with Yjs's own server and pycrdt-websocket.

Usage (from the repository root)::

    python scripts/bench/fanout.py                 # full run, about 8 minutes
    python scripts/bench/fanout.py --quick         # smoke run, about 2 minutes
    python scripts/bench/fanout.py --only collab --duration 10 --phases A,PB
    python scripts/bench/fanout.py --phases A --rounds 3   # each server 3 times, in turn

Phases, each on a freshly started server (pycrdt-websocket, then @y/websocket-server,
then collab):

A. 10 documents x 10 editors, each typing 2 edits/s for ``--duration`` seconds;
B. 1 document x 50 editors at the same rate;
PA, PB. the same shapes, each editor moving its cursor 5 times a second (one
   awareness update each) beside typing 1 edit/s;
idle. 1,000 synced, idle connections over 10 documents: RSS growth per connection;
mem. one document built from 100,000 edits: RSS holding it;
sat, satpair. the typing rate raised until p99 passes 100 ms, on phase A's shape and on
   documents of two editors, typed by the Node generator (yjs-server/typist.mjs);
redis. phase A's load on one collab process, then split over two joined by Redis.

Every server runs in its own subprocess; this process is the load generator
(see load.py for how latency is measured). Printed per server: p50/p99 latency
from an edit (or cursor move) to each other editor of its document having it,
deliveries per second, missing deliveries, server CPU seconds (user + system over
the typing window and drain) and per delivery, server peak RSS, and collab's
ratios to each peer of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launch
import load
from launch import (
    ALL_SERVERS,
    LABELS,
    SERVERS,
    RedisServer,
    RssSampler,
    ServerProcess,
    start_server,
)
from load import (
    BigDocResult,
    PhaseResult,
    big_document,
    idle_connections,
    run_phase,
    run_typists,
)

from collab.policy.tokens import mint

T = TypeVar("T")
#: A round of any phase: a load phase's PhaseResult, the mem phase's BigDocResult.
_Run = TypeVar("_Run", PhaseResult, BigDocResult)
MiB = 1024 * 1024
#: Store URL for collab (``--collab-db``); None means a fresh SQLite file per server.
COLLAB_DB: str | None = None
#: Issue 11's targets for durable collab: p99 by phase, CPU per delivery against each peer.
TARGET_P99_MS = {"A": 5.0, "B": 10.0}
TARGET_CPU_RATIO = {"yjs": 0.8, "pycrdt": 1 / 3}
SHORT = {"yjs": "yjs", "pycrdt": "pycrdt"}
TARGET_IDLE_KIB = 32.0
PHASE_NAMES = ("A", "B", "PA", "PB", "idle", "mem", "sat", "satpair", "redis")
#: Saturation: the p99 a load must stay under to count as held.
SATURATION_P99_MS = 100.0


@dataclass(frozen=True)
class Plan:
    """The load of one run."""

    duration: float
    phase_a: tuple[int, int]  # documents, editors per document
    phase_b: tuple[int, int]
    idle_connections: int
    idle_docs: int
    rate: float = 2.0
    #: Memory phase: one document built from this many edits of 10 characters.
    big_edits: int = 100_000
    #: Saturation phase ``sat``: edits/s per editor, tried in order on phase A's shape.
    saturation_rates: tuple[float, ...] = (4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192)
    saturation_step: float = 8.0
    #: Saturation phase ``satpair``: documents of two editors each (one delivery per
    #: edit), so that the generator, whose cost is mostly per delivery, outlasts the server.
    pair_docs: int = 20
    pair_rates: tuple[float, ...] = (25, 50, 100, 150, 200, 300, 400, 600, 800)
    #: Presence phases: cursor moves per second per editor, beside ``presence_typing`` edits/s.
    presence_rate: float = 5.0
    presence_typing: float = 1.0


FULL = Plan(duration=30, phase_a=(10, 10), phase_b=(1, 50), idle_connections=1000, idle_docs=10)
QUICK = Plan(
    duration=5,
    phase_a=(4, 5),
    phase_b=(1, 20),
    idle_connections=200,
    idle_docs=10,
    big_edits=10_000,
    saturation_rates=(2, 8, 32),
    saturation_step=3.0,
    pair_docs=5,
    pair_rates=(25, 100),
)


@dataclass(frozen=True)
class Phase:
    """One load phase: its name on the command line, its shape and its rates."""

    name: str
    title: str
    shape: tuple[int, int]
    rate: float
    presence_rate: float = 0.0


def load_phases(plan: Plan) -> list[Phase]:
    """Typing at 10 x 10 (A) and 1 x 50 (B); the same shapes with cursors moving (PA, PB)."""
    a, b = plan.phase_a, plan.phase_b
    typing = f"{plan.rate:g} edits/s each"
    presence = f"{plan.presence_rate:g} cursor moves/s + {plan.presence_typing:g} edit/s each"
    return [
        Phase("A", f"Phase A: {a[0]} document(s) x {a[1]} editors, {typing}", a, plan.rate),
        Phase("B", f"Phase B: {b[0]} document(s) x {b[1]} editors, {typing}", b, plan.rate),
        Phase(
            "PA",
            f"Presence PA: {a[0]} document(s) x {a[1]} editors, {presence}",
            a,
            plan.presence_typing,
            plan.presence_rate,
        ),
        Phase(
            "PB",
            f"Presence PB: {b[0]} document(s) x {b[1]} editors, {presence}",
            b,
            plan.presence_typing,
            plan.presence_rate,
        ),
    ]


@dataclass
class IdleResult:
    connections: int
    rss_before: int
    rss_after: int

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / self.connections / 1024


def raise_fd_limit() -> None:
    """Let this process (and the servers it starts, which inherit it) hold many sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def load_phase(server: ServerProcess, plan: Plan, phase: Phase, seed: int) -> PhaseResult:
    docs, editors = phase.shape
    sampler = RssSampler(server)
    sampler.start()
    cpu: dict[str, float] = {}

    def start() -> None:
        cpu["start"] = server.cpu_seconds()

    def stop() -> None:
        cpu["stop"] = server.cpu_seconds()

    result = await run_phase(
        server.url,
        docs=docs,
        editors_per_doc=editors,
        duration=plan.duration,
        rate=phase.rate,
        presence_rate=phase.presence_rate,
        seed=seed,
        on_start=start,
        on_stop=stop,
    )
    result.server_cpu_seconds = cpu["stop"] - cpu["start"]
    result.server_peak_rss = max(await sampler.stop(), server.peak_rss())
    return result


async def memory_phase(server: ServerProcess, plan: Plan, seed: int) -> BigDocResult:
    return await big_document(server.url, server.rss, edits=plan.big_edits, seed=seed)


@dataclass(frozen=True)
class Saturation:
    """A saturation phase: a shape and the rates per editor it climbs through."""

    name: str
    shape: tuple[int, int]  # documents, editors per document
    rates: tuple[float, ...]


def saturations(plan: Plan) -> list[Saturation]:
    """``sat`` on phase A's shape; ``satpair`` on documents of two editors."""
    return [
        Saturation("sat", plan.phase_a, plan.saturation_rates),
        Saturation("satpair", (plan.pair_docs, 2), plan.pair_rates),
    ]


@dataclass
class Step:
    """One rate of the saturation phase."""

    rate: float
    result: PhaseResult

    @property
    def held(self) -> bool:
        r = self.result
        return r.p99_ms < SATURATION_P99_MS and not r.missing


async def saturation_phase(
    server: ServerProcess, plan: Plan, sat: Saturation, seed: int
) -> list[Step]:
    """Raise the typing rate on ``sat``'s shape until p99 passes 100 ms (or edits go missing).

    Each step is a fresh set of editors on fresh documents of the same server, typed
    by the Node generator (:func:`load.run_typists`): stock Yjs editors that only look
    for tokens in what they receive, several times lighter per delivery than the Python
    generator, which saturated before the servers did. Its busy share is reported.
    """
    docs, editors = sat.shape
    steps: list[Step] = []
    cpu: dict[str, float] = {}
    for rate in sat.rates:
        cpu.clear()
        result = await run_typists(
            server.url,
            docs=docs,
            editors_per_doc=editors,
            duration=plan.saturation_step,
            rate=rate,
            seed=seed,
            doc_prefix=f"{sat.name}{rate:g}",
            drain_timeout=5.0,
            on_start=lambda: cpu.__setitem__("start", server.cpu_seconds()),
            on_stop=lambda: cpu.__setitem__("stop", server.cpu_seconds()),
        )
        result.server_cpu_seconds = cpu["stop"] - cpu["start"]
        steps.append(Step(rate, result))
        print(
            f"  {rate:g} edits/s per editor: p99 {result.p99_ms:.1f} ms, missing {result.missing}",
            file=sys.stderr,
            flush=True,
        )
        if not steps[-1].held:
            break
    return steps


def held_rate(steps: list[Step]) -> float:
    """The highest rate held with every lower rate held too (0 if none)."""
    best = 0.0
    for step in steps:
        if not step.held:
            break
        best = step.rate
    return best


@dataclass
class RedisResult:
    """Two collab processes joined by Redis against one, at phase A's load."""

    one: PhaseResult
    two: PhaseResult
    redis_cpu_seconds: float


async def _phase_on(
    servers: list[ServerProcess], plan: Plan, seed: int, prefix: str
) -> PhaseResult:
    docs, editors = plan.phase_a
    cpu: dict[str, float] = {}
    result = await run_phase(
        servers[0].url,
        urls=[s.url for s in servers],
        docs=docs,
        editors_per_doc=editors,
        duration=plan.duration,
        rate=plan.rate,
        seed=seed,
        doc_prefix=prefix,
        on_start=lambda: cpu.__setitem__("start", sum(s.cpu_seconds() for s in servers)),
        on_stop=lambda: cpu.__setitem__("stop", sum(s.cpu_seconds() for s in servers)),
    )
    result.server_cpu_seconds = cpu["stop"] - cpu["start"]
    return result


def redis_phase(workdir: Path, plan: Plan, seed: int, profile: Path | None = None) -> RedisResult:
    """Phase A on one collab process, then on two joined by a Redis of our own.

    Both processes log to one SQLite file (the same machine and file, which collab
    allows with Redis); each document's editors alternate between them. With
    ``profile`` (a folder), py-spy records each collab process there
    (collab-redis-one.txt, collab-redis-p1.txt, collab-redis-p2.txt).
    """
    one = start_server("collab", workdir / "one")
    spies = [_spy(one, profile / "collab-redis-one.txt")] if profile is not None else []
    try:
        single = run(_phase_on([one], plan, seed, "solo"))
    finally:
        _stop_spies(spies)
        one.stop()
    redis = RedisServer(workdir / "redis")
    db = f"sqlite:///{workdir / 'shared.db'}"
    flags = ("--redis-url", redis.url)
    servers: list[ServerProcess] = []
    spies = []
    try:
        servers.append(start_server("collab", workdir / "p1", collab_db=db, extra_args=flags))
        servers.append(start_server("collab", workdir / "p2", collab_db=db, extra_args=flags))
        if profile is not None:
            spies = [_spy(s, profile / f"collab-redis-p{i}.txt") for i, s in enumerate(servers, 1)]
        redis_cpu = redis.cpu_seconds()
        joined = run(_phase_on(servers, plan, seed, "split"))
        redis_cpu = redis.cpu_seconds() - redis_cpu
    finally:
        _stop_spies(spies)
        for server in servers:
            server.stop()
        redis.stop()
    return RedisResult(single, joined, redis_cpu)


async def idle_phase(server: ServerProcess, plan: Plan) -> IdleResult:
    before, after = await idle_connections(
        server.url, plan.idle_connections, plan.idle_docs, server.rss
    )
    return IdleResult(plan.idle_connections, before, after)


#: The generator's event loop (``--generator-loop``): uvloop keeps it lighter than the servers
#: in the saturation phases for longer.
GENERATOR_LOOP = "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run one phase of the generator on its event loop (``GENERATOR_LOOP``)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if GENERATOR_LOOP == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def on_fresh_server(
    kind: str,
    workdir: Path,
    pycrdt_store: str,
    body: Callable[[ServerProcess], Coroutine[Any, Any, T]],
    profile: Path | None = None,
) -> T:
    """Start ``kind``, run ``body`` against it, stop it.

    With ``profile``, py-spy samples the server for the whole run and writes
    collapsed stacks there (py-spy's own CPU is not charged to the server, but it
    competes for the same two cores, so don't compare timings of profiled runs).
    """
    server = start_server(kind, workdir, pycrdt_store, COLLAB_DB)
    spies = [_spy(server, profile)] if profile is not None else []
    try:
        return run(body(server))
    finally:
        _stop_spies(spies)
        server.stop()


def _spy(server: ServerProcess, output: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``server`` into ``output`` (collapsed stacks) until stopped."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
            *("record", "--pid", str(server.popen.pid), "--rate", "250"),
            *("--format", "raw", "--output", str(output), "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_spies(spies: list[subprocess.Popen[bytes]]) -> None:
    """Stop each py-spy (SIGINT: it writes its output) and wait for it."""
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        spy.wait(30)


# --- report -----------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


#: The servers collab is measured against, in the order their ratio columns appear.
PEERS = ("yjs", "pycrdt")


def _ratio(results: dict[str, float | None], kind: str, peer: str) -> str:
    a, b = results.get(kind), results.get(peer)
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}"


def cpu_per_delivery_us(r: PhaseResult) -> float | None:
    """Server CPU (user + system) per message delivered to an editor (document updates and,
    in presence phases, cursor moves), in microseconds."""
    delivered = r.delivered + r.presence_delivered
    if r.server_cpu_seconds is None or not delivered:
        return None
    return 1e6 * r.server_cpu_seconds / delivered


def median_round(runs: list[_Run], key: Callable[[_Run], float | None]) -> _Run:
    """The run whose ``key`` is the median (the lower middle one of an even count); runs
    without a figure sort last."""

    def order(r: _Run) -> tuple[bool, float]:
        value = key(r)
        return (value is None, value or 0.0)

    ordered = sorted(runs, key=order)
    return ordered[(len(ordered) - 1) // 2]


def round_ratios(
    name: str, runs: dict[str, list[PhaseResult]], key: Callable[[PhaseResult], float | None]
) -> list[str]:
    """A line per peer: collab's ``key`` over the peer's, round by round, and their median."""
    mine = runs.get("collab")
    if mine is None:
        return []
    lines = []
    for peer in ("yjs", "pycrdt"):
        theirs = runs.get(peer)
        if theirs is None:
            continue
        ratios = []
        for a, b in zip(mine, theirs, strict=True):
            x, y = key(a), key(b)
            if x is not None and y:
                ratios.append(x / y)
        if ratios:
            middle = sorted(ratios)[(len(ratios) - 1) // 2]
            each = ", ".join(f"{r:.2f}" for r in ratios)
            lines.append(
                f"phase {name}: collab / {LABELS[peer]}'s per round: {each}; median {middle:.2f}"
            )
    return lines


def cpu_per_presence_us(r: PhaseResult) -> float | None:
    """Server CPU per cursor move delivered to an editor, in microseconds: the whole
    phase's CPU (the edits typed beside the moves included) over presence deliveries."""
    if r.server_cpu_seconds is None or not r.presence_delivered:
        return None
    return 1e6 * r.server_cpu_seconds / r.presence_delivered


def _others(r: PhaseResult) -> float:
    """What the rest of the machine used meanwhile: noise this run could not exclude."""
    server = (r.server_cpu_seconds or 0) / r.wall_seconds
    return max(0.0, 100 * (r.machine_busy - r.generator_busy - server))


def phase_rows(results: dict[str, PhaseResult]) -> list[tuple[str, dict[str, float | None], int]]:
    def get(fn: Callable[[PhaseResult], float | None]) -> dict[str, float | None]:
        return {kind: fn(r) for kind, r in results.items()}

    return [
        ("edits sent", get(lambda r: r.edits), 0),
        ("p50 latency (ms)", get(lambda r: r.p50_ms), 2),
        ("p99 latency (ms)", get(lambda r: r.p99_ms), 2),
        ("max latency (ms)", get(lambda r: max(r.latencies_ms, default=math.nan)), 1),
        ("delivered updates/s", get(lambda r: r.deliveries_per_second), 0),
        ("missing deliveries", get(lambda r: r.missing), 0),
        ("duplicate deliveries", get(lambda r: r.duplicates), 0),
        ("edits echoed to their sender", get(lambda r: r.echoes), 0),
        ("server CPU (s)", get(lambda r: r.server_cpu_seconds), 2),
        ("server CPU per delivery (us)", get(cpu_per_delivery_us), 1),
        (
            "server CPU (% of a core)",
            get(lambda r: 100 * (r.server_cpu_seconds or 0) / r.wall_seconds),
            0,
        ),
        ("server peak RSS (MiB)", get(lambda r: (r.server_peak_rss or 0) / MiB), 1),
        ("generator busy (% of a core)", get(lambda r: 100 * r.generator_busy), 0),
        ("generator loop lag p99 (ms)", get(lambda r: r.loop_lag_p99_ms), 2),
        ("other processes (% of a core)", get(_others), 0),
    ]


def presence_rows(
    results: dict[str, PhaseResult],
) -> list[tuple[str, dict[str, float | None], int]]:
    def get(fn: Callable[[PhaseResult], float | None]) -> dict[str, float | None]:
        return {kind: fn(r) for kind, r in results.items()}

    rows = [
        ("cursor moves sent", get(lambda r: r.moves), 0),
        ("presence p50 latency (ms)", get(lambda r: r.presence_p50_ms), 2),
        ("presence p99 latency (ms)", get(lambda r: r.presence_p99_ms), 2),
        ("delivered presence updates/s", get(lambda r: r.presence_delivered / r.duration), 0),
        ("missing presence deliveries", get(lambda r: r.presence_missing), 0),
        ("duplicate presence deliveries", get(lambda r: r.presence_duplicates), 0),
        ("moves echoed to their sender", get(lambda r: r.presence_echoes), 0),
        ("server CPU per presence delivery (us)", get(cpu_per_presence_us), 1),
    ]
    return rows + phase_rows(results)


def render(
    title: str, rows: list[tuple[str, dict[str, float | None], int]], kinds: list[str]
) -> str:
    header = ["", *(LABELS[k] for k in kinds)]
    # One ratio column per (collab variant, peer) pair, both measured in this same run.
    compared = [(k, peer) for k in kinds if k not in PEERS for peer in PEERS if peer in kinds]
    header += [f"{LABELS[k]} / {SHORT[peer]}" for k, peer in compared]
    lines = [title, ""]
    body = []
    for name, values, digits in rows:
        row = [name, *(_fmt(values.get(k), digits) for k in kinds)]
        row += [_ratio(values, k, peer) for k, peer in compared]
        body.append(row)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    lines.append(
        "|"
        + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2) for i, w in enumerate(widths))
        + "|"
    )
    for row in body:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def render_saturation(
    plan: Plan, sat: Saturation, saturation: dict[str, list[Step]], kinds: list[str]
) -> str:
    docs, editors = sat.shape
    total = docs * editors
    shown = [k for k in kinds if k in saturation]
    header = "| edits/s per editor (total) | " + " | ".join(
        f"{LABELS[k]} p99 (ms) / missing / server CPU % / generator %" for k in shown
    )
    lines = [
        f"Saturation {sat.name}: {docs} document(s) x {editors} editors, "
        f"{plan.saturation_step:g} s per "
        f"rate, until p99 passes {SATURATION_P99_MS:g} ms",
        "",
        header + " |",
        "|---:|" + "---:|" * len(shown),
    ]
    for rate in sat.rates:
        cells = []
        for kind in shown:
            step = next((s for s in saturation[kind] if s.rate == rate), None)
            if step is None:
                cells.append("-")
                continue
            r = step.result
            share = 100 * (r.server_cpu_seconds or 0) / r.wall_seconds
            # The generator's busy share shows when it, not the server, set the limit.
            generator = 100 * r.generator_busy
            cells.append(f"{r.p99_ms:,.1f} / {r.missing} / {share:.0f} / {generator:.0f}")
        if all(c == "-" for c in cells):
            break
        lines.append(f"| {rate:g} ({rate * total:,.0f}) | " + " | ".join(cells) + " |")
    held = " | ".join(f"{held_rate(saturation[k]) * total:,.0f}" for k in shown)
    lines.append(f"| **held (edits/s)** | {held} |")
    return "\n".join(lines)


def render_redis(r: RedisResult) -> str:
    rows = [
        ("p50 latency (ms)", r.one.p50_ms, r.two.p50_ms, 2),
        ("p99 latency (ms)", r.one.p99_ms, r.two.p99_ms, 2),
        ("delivered updates/s", r.one.deliveries_per_second, r.two.deliveries_per_second, 0),
        ("missing deliveries", r.one.missing, r.two.missing, 0),
        ("duplicate deliveries", r.one.duplicates, r.two.duplicates, 0),
        ("server CPU, all processes (s)", r.one.server_cpu_seconds, r.two.server_cpu_seconds, 2),
        ("server CPU per delivery (us)", cpu_per_delivery_us(r.one), cpu_per_delivery_us(r.two), 1),
    ]
    lines = [
        "Redis: phase A's load on one collab process, then split over two joined by Redis",
        "",
        "| | one process | two processes + Redis | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, a, b, digits in rows:
        ratio = f"{b / a:.2f}" if a and b is not None else "-"
        lines.append(f"| {name} | {_fmt(a, digits)} | {_fmt(b, digits)} | {ratio} |")
    lines.append(f"| redis-server CPU (s, not in the above) | - | {r.redis_cpu_seconds:.2f} | - |")
    return "\n".join(lines)


def verdicts(
    phases: dict[str, dict[str, PhaseResult]],
    idle: dict[str, IdleResult],
    memory: dict[str, BigDocResult] | None = None,
    saturation: dict[str, dict[str, list[Step]]] | None = None,
    redis_result: RedisResult | None = None,
) -> list[str]:
    out = []
    memory = memory or {}
    for name, by_server in (saturation or {}).items():
        if "collab" not in by_server:
            continue
        mine_rate = held_rate(by_server["collab"])
        for peer, factor in (("pycrdt", 4.0), ("yjs", 1.0)):
            if peer not in by_server:
                continue
            theirs_rate = held_rate(by_server[peer])
            ok = mine_rate >= factor * theirs_rate and (peer != "yjs" or mine_rate > theirs_rate)
            relation = f">= {factor:g}x" if peer == "pycrdt" else ">"
            out.append(
                f"{name}: collab holds {mine_rate:g} edits/s per editor {relation} "
                f"{LABELS[peer]}'s {theirs_rate:g}: {_yes(ok)}"
                + (" (the generator may cap it: see its busy share)" if ok is False else "")
            )
    if redis_result is not None:
        a, b = cpu_per_delivery_us(redis_result.one), cpu_per_delivery_us(redis_result.two)
        if a and b:
            out.append(
                f"redis: two processes' CPU per delivery / one's = {b / a:.2f} <= 1.3: "
                f"{_yes(b / a <= 1.3)}"
            )
        p99 = redis_result.two.p99_ms
        out.append(f"redis: p99 {p99:.2f} ms < 10 ms: {_yes(p99 < 10)}")
        if redis_result.two.missing or redis_result.two.duplicates:
            out.append(
                f"redis: {redis_result.two.missing} missing, {redis_result.two.duplicates} "
                "duplicate deliveries: NO"
            )
    for kind in ("collab", "collab-asyncio"):
        if kind in memory and "pycrdt" in memory:
            held, peer_held = memory[kind].rss_after / MiB, memory["pycrdt"].rss_after / MiB
            out.append(
                f"memory: {LABELS[kind]} RSS {held:.1f} MiB <= pycrdt-websocket's "
                f"{peer_held:.1f} MiB: {_yes(held <= peer_held)}"
            )
    for name, phase in phases.items():
        collab = phase.get("collab")
        if collab is None:
            continue
        presence = name.startswith("P")
        if not presence:
            limit = TARGET_P99_MS[name]
            ok = collab.p99_ms < limit
            out.append(
                f"phase {name}: collab p99 {collab.p99_ms:.2f} ms < {limit:g} ms: {_yes(ok)}"
            )
        if collab.missing or collab.presence_missing:
            missed = collab.missing + collab.presence_missing
            out.append(f"phase {name}: collab missed {missed} deliveries: NO")
        cost = cpu_per_presence_us if presence else cpu_per_delivery_us
        mine: float | None = cost(collab)
        for peer in PEERS:
            theirs: float | None = cost(phase[peer]) if peer in phase else None
            if mine is None or not theirs or (presence and peer != "yjs"):
                continue
            ratio, target = mine / theirs, TARGET_CPU_RATIO[peer]
            what = "presence delivery" if presence else "delivery"
            verdict = _yes(ratio <= target)
            out.append(
                f"phase {name}: collab CPU per {what} / {LABELS[peer]}'s "
                f"{mine:.1f} / {theirs:.1f} us = {ratio:.2f} <= {target:.2f}: {verdict}"
            )
    if "collab" in idle:
        kib = idle["collab"].kib_per_connection
        ok = kib < TARGET_IDLE_KIB
        out.append(f"idle: collab {kib:.1f} KiB per idle connection < 32 KiB: {_yes(ok)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="collab vs pycrdt-websocket fan-out benchmark")
    parser.add_argument(
        "--duration", type=float, help="typing seconds per phase (default 30, 5 with --quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 5 s, fewer editors and idle connections"
    )
    parser.add_argument("--only", choices=ALL_SERVERS, help="run one server only")
    parser.add_argument(
        "--servers",
        help=f"comma-separated servers to run, in order (default {','.join(SERVERS)}; "
        f"known: {','.join(ALL_SERVERS)})",
    )
    parser.add_argument(
        "--baseline-repo",
        type=Path,
        metavar="DIR",
        help="a checkout of collab that the collab-base server runs from (e.g. a git worktree "
        "of the commit before a change)",
    )
    parser.add_argument(
        "--pycrdt-store",
        choices=("none", "sqlite"),
        default="none",
        help="pycrdt-websocket rooms without a store (default) or with pycrdt-store's SQLiteYStore",
    )
    parser.add_argument(
        "--idle-connections", type=int, help="idle connections (default 1000, 200 with --quick)"
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=PHASE_NAMES,
        help="skip a phase (repeatable)",
    )
    parser.add_argument(
        "--phases",
        help=f"comma-separated phases to run (default all: {','.join(PHASE_NAMES)})",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the load phases (A, B, PA, PB) and mem this many times, every server in "
        "turn each round; the tables show each server's median round (by CPU per delivery; "
        "by RSS holding the document), and every round's figures are printed after the verdicts",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="collab servers require tokens (COLLAB_AUTH_SECRET); every editor sends one",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record each collab server with py-spy (collapsed stacks in DIR)",
    )
    parser.add_argument(
        "--collab-db",
        metavar="URL",
        help="collab's store (default: a fresh SQLite file; memory:// isolates the store's cost)",
    )
    parser.add_argument(
        "--generator-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the load generator's event loop (default uvloop; asyncio: the stdlib's)",
    )
    args = parser.parse_args(argv)
    global COLLAB_DB, GENERATOR_LOOP
    COLLAB_DB = args.collab_db
    GENERATOR_LOOP = args.generator_loop
    if args.auth:
        # Servers inherit the environment (launch.start_server); the others ignore it.
        secret = secrets.token_urlsafe(48)
        os.environ["COLLAB_AUTH_SECRET"] = secret
        token = mint(secret, "*", "write", now=time.time(), ttl=None, user="bench")
        load.URL_QUERY = f"?token={token}"

    plan = QUICK if args.quick else FULL
    if args.duration is not None:
        plan = Plan(**{**plan.__dict__, "duration": args.duration})
    if args.idle_connections is not None:
        plan = Plan(**{**plan.__dict__, "idle_connections": args.idle_connections})
    launch.BASELINE_REPO = args.baseline_repo
    if args.only:
        kinds = [args.only]
    elif args.servers:
        kinds = args.servers.split(",")
        unknown = set(kinds) - set(ALL_SERVERS)
        if unknown:
            parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    else:
        kinds = list(SERVERS)
    raise_fd_limit()

    wanted = set(args.phases.split(",")) if args.phases else set(PHASE_NAMES)
    unknown = wanted - set(PHASE_NAMES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    wanted -= set(args.skip)
    phases = [p for p in load_phases(plan) if p.name in wanted]
    results: dict[str, dict[str, PhaseResult]] = {}
    idle: dict[str, IdleResult] = {}
    memory: dict[str, BigDocResult] = {}
    memory_rounds: dict[str, list[BigDocResult]] = {}  # by server
    saturation: dict[str, dict[str, list[Step]]] = {}  # by phase, then by server
    redis_result: RedisResult | None = None
    rounds: dict[str, dict[str, list[PhaseResult]]] = {}  # by phase, then by server
    with tempfile.TemporaryDirectory(prefix="collab-bench-") as tmp:
        for phase in phases:
            runs = rounds.setdefault(phase.name, {})
            for n in range(args.rounds):
                for kind in kinds:
                    of = f" (round {n + 1} of {args.rounds})" if args.rounds > 1 else ""
                    label = f"phase {phase.name} on {LABELS[kind]}{of}"
                    print(f"{label} ...", file=sys.stderr, flush=True)
                    workdir = Path(tmp) / f"{kind}-{phase.name}-{n}"
                    profile = None
                    if args.profile is not None and kind.startswith("collab"):
                        args.profile.mkdir(parents=True, exist_ok=True)
                        profile = args.profile / f"collab-{phase.name}-{n}.txt"
                    body = partial(load_phase, plan=plan, phase=phase, seed=args.seed)
                    result = on_fresh_server(kind, workdir, args.pycrdt_store, body, profile)
                    runs.setdefault(kind, []).append(result)
            key = cpu_per_presence_us if phase.presence_rate else cpu_per_delivery_us
            results[phase.name] = {k: median_round(rs, key) for k, rs in runs.items()}
        if "idle" in wanted:
            for kind in kinds:
                print(f"idle connections on {LABELS[kind]} ...", file=sys.stderr, flush=True)
                workdir = Path(tmp) / f"{kind}-idle"
                idle_body = partial(idle_phase, plan=plan)
                idle[kind] = on_fresh_server(kind, workdir, args.pycrdt_store, idle_body)

        if "mem" in wanted:
            for n in range(args.rounds):
                for kind in kinds:
                    of = f" (round {n + 1} of {args.rounds})" if args.rounds > 1 else ""
                    print(f"memory phase on {LABELS[kind]}{of} ...", file=sys.stderr, flush=True)
                    workdir = Path(tmp) / f"{kind}-mem-{n}"
                    mem_body = partial(memory_phase, plan=plan, seed=args.seed)
                    held = on_fresh_server(kind, workdir, args.pycrdt_store, mem_body)
                    memory_rounds.setdefault(kind, []).append(held)
            memory = {k: median_round(rs, lambda r: r.rss_after) for k, rs in memory_rounds.items()}

        for sat in saturations(plan):
            if sat.name not in wanted:
                continue
            for kind in kinds:
                print(f"{sat.name} on {LABELS[kind]} ...", file=sys.stderr, flush=True)
                workdir = Path(tmp) / f"{kind}-{sat.name}"
                sat_body = partial(saturation_phase, plan=plan, sat=sat, seed=args.seed)
                steps = on_fresh_server(kind, workdir, args.pycrdt_store, sat_body)
                saturation.setdefault(sat.name, {})[kind] = steps
        if "redis" in wanted and "collab" in kinds:
            print("two collab processes joined by Redis ...", file=sys.stderr, flush=True)
            redis_result = redis_phase(Path(tmp) / "redis-phase", plan, args.seed, args.profile)

    store = "no store" if args.pycrdt_store == "none" else "SQLiteYStore"
    collab_store = "SQLite store" if args.collab_db is None else f"store {args.collab_db}"
    print(
        f"\ncollab ({collab_store}) vs @y/websocket-server (in memory) and pycrdt-websocket "
        f"({store}); {plan.duration:g} s of typing per phase\n"
    )
    for phase in phases:
        if phase.name in results:
            rows_of = presence_rows if phase.presence_rate else phase_rows
            print(render(phase.title, rows_of(results[phase.name]), kinds) + "\n")
    if idle:
        rows: list[tuple[str, dict[str, float | None], int]] = [
            ("RSS before (MiB)", {k: r.rss_before / MiB for k, r in idle.items()}, 1),
            ("RSS after (MiB)", {k: r.rss_after / MiB for k, r in idle.items()}, 1),
            ("KiB per idle connection", {k: r.kib_per_connection for k, r in idle.items()}, 1),
        ]
        print(
            render(
                f"Idle: {plan.idle_connections} synced connections over {plan.idle_docs} documents",
                rows,
                kinds,
            )
            + "\n"
        )
    if memory:
        mem_rows: list[tuple[str, dict[str, float | None], int]] = [
            ("document (KiB of text)", {k: r.doc_bytes / 1024 for k, r in memory.items()}, 0),
            ("seconds to type it", {k: r.build_seconds for k, r in memory.items()}, 1),
            ("RSS before (MiB)", {k: r.rss_before / MiB for k, r in memory.items()}, 1),
            ("RSS holding it (MiB)", {k: r.rss_after / MiB for k, r in memory.items()}, 1),
        ]
        title = f"Memory: one document built from {plan.big_edits:,} edits of 10 characters"
        print(render(title, mem_rows, kinds) + "\n")
    for sat in saturations(plan):
        if sat.name in saturation:
            print(render_saturation(plan, sat, saturation[sat.name], kinds) + "\n")
    if redis_result is not None:
        print(render_redis(redis_result) + "\n")
    for line in verdicts(results, idle, memory, saturation, redis_result):
        print(line)
    if args.rounds > 1:
        for phase in phases:
            key = cpu_per_presence_us if phase.presence_rate else cpu_per_delivery_us
            for line in round_ratios(phase.name, rounds[phase.name], key):
                print(line)
        for kind, mem_runs in memory_rounds.items():
            each = ", ".join(f"{r.rss_after / MiB:.1f}" for r in mem_runs)
            print(f"memory: {LABELS[kind]} RSS holding the document per round (MiB): {each}")
    if args.json:
        data = {
            "plan": plan.__dict__,
            "pycrdt_store": args.pycrdt_store,
            "phases": {
                name: {
                    k: {key: v for key, v in r.__dict__.items() if not key.endswith("latencies_ms")}
                    | {
                        "p50_ms": r.p50_ms,
                        "p99_ms": r.p99_ms,
                        "presence_p99_ms": r.presence_p99_ms,
                        "cpu_per_delivery_us": cpu_per_delivery_us(r),
                        "cpu_per_presence_us": cpu_per_presence_us(r),
                    }
                    for k, r in phase.items()
                }
                for name, phase in results.items()
            },
            "memory": {k: r.__dict__ for k, r in memory.items()},
            "idle": {
                k: r.__dict__ | {"kib_per_connection": r.kib_per_connection}
                for k, r in idle.items()
            },
        }
        args.json.write_text(json.dumps(data, indent=2))
    worst_missing = max(
        (r.missing + r.presence_missing for phase in results.values() for r in phase.values()),
        default=0,
    )
    return 1 if worst_missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
