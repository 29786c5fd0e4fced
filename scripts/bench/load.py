"""The load generator: editors that speak the y-websocket protocol, and the phases they run.

An ``Editor`` is a raw protocol client: a websockets connection and a pycrdt
``Doc``. It sends its sync step 1, answers the server's step 1 with a step 2,
applies whatever arrives (as a real editor would), and sends each local edit as
one sync *update* message.

Latency is measured without trusting the server to forward frames unchanged:
every edit inserts a unique token ``e<editor>.<n>;`` into the shared ``Y.Text``.
A Yjs update carries inserted strings verbatim, so a receiver finds the tokens
in the bytes it is sent, however the server re-encodes or merges them, and
stamps their arrival with ``time.monotonic_ns()``. The sender stamped the edit
with the same system-wide clock, so latency is receive stamp minus send stamp
for every (edit, other editor of that document) pair.

All editors of a run share one process and one event loop: with two cores and
a server on the other one, one generator process is the least intrusive. The
run reports how busy that process was and how late its event loop woke up, so
a reader can tell whether the generator, not the server, set the latency.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import websockets
from pycrdt import (
    Doc,
    Text,
    TransactionEvent,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

TOKEN = re.compile(rb"e\d+\.\d+;")
#: A cursor move's token, carried in the awareness state's JSON (verbatim on the wire).
PRESENCE_TOKEN = re.compile(rb"p\d+\.\d+;")
SYNC = 0
AWARENESS = 1
STEP1, STEP2, UPDATE = 0, 1, 2


#: Appended to every editor's URL: ``?token=...`` when the run has authentication on
#: (``fanout.py --auth``), else empty.
URL_QUERY = ""
#: The Node load generator of the saturation phases (stock yjs, y-protocols and ws).
TYPIST = Path(__file__).resolve().with_name("yjs-server") / "typist.mjs"


class StampedConnection(ClientConnection):
    """A client connection that stamps each complete data frame as the socket delivers it.

    The stamp is taken in ``process_event``, which websockets calls from
    ``data_received`` right when the bytes are read, so the measured latency does
    not include the time a message waits in this process for its reader to run.
    ``stamps`` holds one ``time.monotonic_ns()`` per message, in order.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stamps: deque[int] = deque()

    def process_event(self, event: Event) -> None:
        if self.response is not None and isinstance(event, Frame) and event.fin:
            if event.opcode in (Opcode.BINARY, Opcode.TEXT, Opcode.CONT):
                self.stamps.append(time.monotonic_ns())
        super().process_event(event)


class Tally:
    """Sent tokens and their arrivals, shared by the editors of one run."""

    def __init__(self) -> None:
        #: token -> (send time in ns, document index)
        self.sent: dict[bytes, tuple[int, int]] = {}
        self.expected = 0
        self.received = 0
        self.all_arrived = asyncio.Event()
        self.recording = False

    def note_sent(self, token: bytes, at: int, doc: int, receivers: int) -> None:
        self.sent[token] = (at, doc)
        self.expected += receivers
        self.all_arrived.clear()

    def note_received(self, count: int) -> None:
        self.received += count
        if self.received >= self.expected:
            self.all_arrived.set()


def var_uint(n: int) -> bytes:
    """lib0's variable-length unsigned integer."""
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def awareness_message(client_id: int, clock: int, state: str) -> bytes:
    """A y-protocols awareness message holding one client's state (what y-websocket sends)."""
    raw = state.encode()
    payload = var_uint(1) + var_uint(client_id) + var_uint(clock) + var_uint(len(raw)) + raw
    return bytes([AWARENESS]) + var_uint(len(payload)) + payload


class Editor:
    """One connection editing one document. ``arrivals`` holds (token, ns) pairs."""

    def __init__(self, index: int, doc_index: int, url: str, tally: Tally) -> None:
        self.index = index
        self.doc_index = doc_index
        self.url = url
        self.tally = tally
        self.doc: Doc[Text] = Doc()
        self.text = self.doc.get("text", type=Text)
        self.synced = asyncio.Event()
        self.arrivals: list[tuple[bytes, int]] = []
        #: Cursor moves of other editors received: (token, ns).
        self.presence_arrivals: list[tuple[bytes, int]] = []
        self.sent = 0
        self.moves = 0
        self.client_id = 1 + index  # awareness client id, distinct per editor
        self._clock = 0
        #: Apply what others typed to this editor's Doc (a real editor does). Off in the
        #: saturation phase, where the generator must stay lighter than the server.
        self.apply_updates = True
        self.rng = random.Random(index)
        self.own_prefix = b"e%d." % index
        self.own_moves = b"p%d." % index
        self._local = False
        self._outgoing: list[bytes] = []
        self._ws: StampedConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.doc.observe(self._on_transaction)

    def _on_transaction(self, event: TransactionEvent) -> None:
        if self._local:
            self._outgoing.append(event.update)

    async def open(self) -> None:
        """Connect and start the sync handshake; ``synced`` is set on the server's step 2."""
        # No compression: neither server should spend CPU on deflate in this comparison,
        # and the generator must stay light. Pings from the server are still answered.
        ws = await connect(
            self.url + URL_QUERY,
            compression=None,
            max_size=None,
            ping_interval=None,
            open_timeout=60,
            create_connection=StampedConnection,
        )
        assert isinstance(ws, StampedConnection)
        self._ws = ws
        await self._ws.send(create_sync_message(self.doc))
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        ws = self._ws
        tally = self.tally
        try:
            async for message in ws:
                now = ws.stamps.popleft()
                if not isinstance(message, bytes) or len(message) < 2:
                    continue
                if message[0] == AWARENESS:
                    if tally.recording:
                        tokens = PRESENCE_TOKEN.findall(message)
                        if tokens:
                            self.presence_arrivals.extend((token, now) for token in tokens)
                            others = sum(not token.startswith(self.own_moves) for token in tokens)
                            tally.note_received(others)
                    continue
                if message[0] != SYNC:
                    continue  # anything else: not part of this benchmark
                kind = message[1]
                if kind != STEP1 and tally.recording:
                    tokens = TOKEN.findall(message)
                    if tokens:
                        self.arrivals.extend((token, now) for token in tokens)
                        # Own tokens sent back (pycrdt-websocket echoes to the sender)
                        # are tallied apart when scoring, and don't count as arrivals.
                        others = sum(not token.startswith(self.own_prefix) for token in tokens)
                        tally.note_received(others)
                if kind == UPDATE and not self.apply_updates:
                    continue
                reply = handle_sync_message(message[1:], self.doc)
                if reply is not None:
                    await ws.send(reply)
                if kind == STEP2:
                    self.synced.set()
        except websockets.ConnectionClosed:
            pass

    async def edit(self, token: bytes, receivers: int) -> None:
        """Insert ``token`` at a random spot and send the update."""
        assert self._ws is not None
        position = self.rng.randint(0, len(self.text))
        at = time.monotonic_ns()
        self._local = True
        try:
            self.text.insert(position, token.decode())
        finally:
            self._local = False
        self.tally.note_sent(token, at, self.doc_index, receivers)
        self.sent += 1
        for update in self._outgoing:
            await self._ws.send(create_update_message(update))
        self._outgoing.clear()

    async def insert(self, position: int, text: str) -> None:
        """Insert ``text`` at ``position`` and send the update (no latency bookkeeping)."""
        assert self._ws is not None
        self._local = True
        try:
            self.text.insert(position, text)
        finally:
            self._local = False
        for update in self._outgoing:
            await self._ws.send(create_update_message(update))
        self._outgoing.clear()

    async def drain(self) -> None:
        """Wait until the server answered a ping: everything sent before it has been read."""
        assert self._ws is not None
        pong = await self._ws.ping()
        await asyncio.wait_for(pong, 600)

    async def move_cursor(self, token: bytes, receivers: int) -> None:
        """Send a new awareness state (a cursor at a random spot) carrying ``token``."""
        assert self._ws is not None
        position = self.rng.randint(0, len(self.text))
        state = (
            f'{{"user":{{"name":"editor {self.index}","color":"#30bced"}},'
            f'"cursor":{{"anchor":{position},"head":{position}}},"move":"{token.decode()}"}}'
        )
        self._clock += 1
        at = time.monotonic_ns()
        self.tally.note_sent(token, at, self.doc_index, receivers)
        self.moves += 1
        await self._ws.send(awareness_message(self.client_id, self._clock, state))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader


@dataclass
class PhaseResult:
    """What one load phase measured. Times in ms, memory in bytes."""

    docs: int
    editors_per_doc: int
    duration: float
    edits: int = 0
    expected: int = 0
    delivered: int = 0
    duplicates: int = 0
    #: A sender's own edits sent back to it (not counted as deliveries).
    echoes: int = 0
    missing: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    #: Cursor moves (awareness updates) sent, delivered to other editors, and so on.
    moves: int = 0
    presence_expected: int = 0
    presence_delivered: int = 0
    presence_duplicates: int = 0
    presence_echoes: int = 0
    presence_missing: int = 0
    presence_latencies_ms: list[float] = field(default_factory=list, repr=False)
    wall_seconds: float = 0.0
    server_cpu_seconds: float | None = None
    server_peak_rss: int | None = None
    generator_busy: float = 0.0
    #: Cores busy machine-wide over the window (server, generator and anything else).
    machine_busy: float = 0.0
    loop_lag_p99_ms: float = 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def presence_p50_ms(self) -> float:
        return percentile(self.presence_latencies_ms, 50)

    @property
    def presence_p99_ms(self) -> float:
        return percentile(self.presence_latencies_ms, 99)

    @property
    def deliveries_per_second(self) -> float:
        return self.delivered / self.duration if self.duration else 0.0


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


class LoopLag:
    """How late the event loop wakes a 5 ms sleeper: the generator's own queueing delay."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            self.lags_ms.append((time.monotonic() - before - 0.005) * 1000)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> float:
        """Stop and return the p99 lag in ms."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        return percentile(self.lags_ms, 99)


async def open_editors(editors: list[Editor], concurrency: int = 50, limit: float = 60) -> None:
    """Connect and sync every editor, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(editor: Editor) -> None:
        async with gate:
            await editor.open()
            await asyncio.wait_for(editor.synced.wait(), limit)

    # The first editor of each document syncs alone: pycrdt-websocket leaves clients that
    # open a new room at the same instant unsynced (a race in its room start), and this
    # benchmark measures typing, not joining.
    firsts: dict[str, Editor] = {}
    for editor in editors:
        firsts.setdefault(editor.url.rsplit("/", 1)[-1], editor)
    await asyncio.gather(*(one(editor) for editor in firsts.values()))
    rest = [editor for editor in editors if editor not in firsts.values()]
    await asyncio.gather(*(one(editor) for editor in rest))


async def run_phase(
    base_url: str,
    *,
    docs: int,
    editors_per_doc: int,
    duration: float,
    rate: float = 2.0,
    presence_rate: float = 0.0,
    seed: int = 1,
    doc_prefix: str = "bench",
    drain_timeout: float = 10.0,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    urls: list[str] | None = None,
    apply_updates: bool = True,
) -> PhaseResult:
    """Run one phase: ``docs`` x ``editors_per_doc`` editors typing ``rate`` edits/s.

    Every editor is connected and synced before typing starts. Each editor types on
    a fixed period from a random start offset (seeded, so both servers get the same
    load), for ``duration`` seconds; then the run waits up to ``drain_timeout`` for
    every token to reach every other editor of its document. With ``presence_rate``,
    each editor also moves its cursor that many times a second (one awareness
    update each, on its own period and offset), beside typing. ``on_start`` and
    ``on_stop`` are called right before typing starts and right after the drain,
    to bracket server measurements. With ``urls`` (several servers of one
    deployment), editor ``e`` of each document connects to ``urls[e % len(urls)]``,
    so every document's editors are split across them. ``apply_updates=False``:
    editors only look for tokens in what they receive.
    """
    rng = random.Random(seed)
    tally = Tally()
    bases = urls or [base_url]
    editors = [
        Editor(d * editors_per_doc + e, d, f"{bases[e % len(bases)]}/{doc_prefix}-{d}", tally)
        for d in range(docs)
        for e in range(editors_per_doc)
    ]
    for editor in editors:
        editor.apply_updates = apply_updates
    result = PhaseResult(docs=docs, editors_per_doc=editors_per_doc, duration=duration)
    await open_editors(editors)
    period = 1.0 / rate
    offsets = [rng.uniform(0, period) for _ in editors]
    move_period = 1.0 / presence_rate if presence_rate else 0.0
    move_offsets = [rng.uniform(0, move_period) for _ in editors]
    receivers = editors_per_doc - 1

    loop = asyncio.get_running_loop()

    async def type_(editor: Editor, offset: float, t0: float) -> None:
        n = 0
        while True:
            due = t0 + offset + n * period
            if due >= t0 + duration:
                return
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await editor.edit(b"e%d.%d;" % (editor.index, n), receivers)
            n += 1

    async def move(editor: Editor, offset: float, t0: float) -> None:
        n = 0
        while True:
            due = t0 + offset + n * move_period
            if due >= t0 + duration:
                return
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await editor.move_cursor(b"p%d.%d;" % (editor.index, n), receivers)
            n += 1

    me = psutil.Process()
    lag = LoopLag()
    # The generator's own full collections would pause every editor at once, and they
    # grow with what earlier phases left behind: whichever server runs last would pay.
    # Collect now, and not while measuring (reference counting still frees the rest).
    gc.collect()
    gc.disable()
    if on_start is not None:
        on_start()
    tally.recording = True
    cpu0 = sum(me.cpu_times()[:2])
    machine0 = _machine_busy()
    wall0 = time.monotonic()
    lag.start()
    t0 = loop.time() + 0.05
    typing = [type_(e, o, t0) for e, o in zip(editors, offsets, strict=True)]
    if presence_rate:
        typing += [move(e, o, t0) for e, o in zip(editors, move_offsets, strict=True)]
    await asyncio.gather(*typing)
    try:
        await asyncio.wait_for(tally.all_arrived.wait(), drain_timeout)
    except TimeoutError:
        pass
    result.loop_lag_p99_ms = await lag.stop()
    result.wall_seconds = time.monotonic() - wall0
    result.generator_busy = (sum(me.cpu_times()[:2]) - cpu0) / result.wall_seconds
    result.machine_busy = (_machine_busy() - machine0) / result.wall_seconds
    if on_stop is not None:
        on_stop()
    gc.enable()
    tally.recording = False
    await asyncio.gather(*(editor.close() for editor in editors))
    _score(result, editors, tally)
    return result


def _machine_busy() -> float:
    """CPU seconds every process on the machine has used so far (all cores, not idle)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _score(result: PhaseResult, editors: list[Editor], tally: Tally) -> None:
    result.moves = sum(editor.moves for editor in editors)
    result.edits = len(tally.sent) - result.moves
    result.presence_expected = result.moves * (result.editors_per_doc - 1)
    result.expected = tally.expected - result.presence_expected
    moves: list[float] = []
    for editor in editors:
        seen_moves: set[bytes] = set()
        for token, at in editor.presence_arrivals:
            if token.startswith(editor.own_moves):
                result.presence_echoes += 1
                continue
            sent = tally.sent.get(token)
            if sent is None or sent[1] != editor.doc_index or token in seen_moves:
                result.presence_duplicates += 1
                continue
            seen_moves.add(token)
            moves.append((at - sent[0]) / 1e6)
    result.presence_delivered = len(moves)
    result.presence_missing = result.presence_expected - result.presence_delivered
    result.presence_latencies_ms = moves
    latencies: list[float] = []
    for editor in editors:
        seen: set[bytes] = set()
        for token, at in editor.arrivals:
            if token.startswith(editor.own_prefix):
                result.echoes += 1
                continue
            sent = tally.sent.get(token)
            if sent is None or sent[1] != editor.doc_index or token in seen:
                result.duplicates += 1
                continue
            seen.add(token)
            latencies.append((at - sent[0]) / 1e6)
    result.delivered = len(latencies)
    result.missing = result.expected - result.delivered
    result.latencies_ms = latencies


async def idle_connections(
    base_url: str, count: int, docs: int, rss: Callable[[], int], settle: float = 5.0
) -> tuple[int, int]:
    """Open ``count`` synced, idle editors over ``docs`` documents; return RSS (before, after).

    One editor per document connects first, so the documents themselves are not
    charged to the connections. RSS is read once it has stopped growing (two
    readings 0.5 s apart within 0.5 %) or after ``settle`` seconds.
    """
    tally = Tally()
    warm = [Editor(-1 - d, d, f"{base_url}/idle-{d}", tally) for d in range(docs)]
    await open_editors(warm)
    before = await _settled(rss, settle)
    crowd = [Editor(i, i % docs, f"{base_url}/idle-{i % docs}", tally) for i in range(count)]
    await open_editors(crowd)
    after = await _settled(rss, settle)
    await asyncio.gather(*(editor.close() for editor in warm + crowd))
    return before, after


async def _settled(rss: Callable[[], int], limit: float) -> int:
    deadline = time.monotonic() + limit
    last = rss()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = rss()
        if abs(now - last) <= 0.005 * last:
            return now
        last = now
    return last


@dataclass
class BigDocResult:
    """What the memory phase measured: one document built from many edits."""

    edits: int
    doc_bytes: int  # length of the text the late joiner received, in UTF-8 bytes
    build_seconds: float
    rss_before: int
    rss_after: int


async def big_document(
    base_url: str,
    rss: Callable[[], int],
    *,
    edits: int = 100_000,
    chunk: int = 10,
    seed: int = 1,
    settle: float = 10.0,
) -> BigDocResult:
    """Type ``edits`` edits of ``chunk`` characters into one document, then measure the server.

    One editor types words at its cursor and jumps to a random place every 20
    words (so the document is made of many items, as a typed one is), waiting for
    the server to have read every 1,000 edits before it sends more. Once it is
    done, a second editor joins and syncs the whole text (proving the server holds
    it all); the first leaves; RSS is read once it has settled, with the joiner
    still connected, so the server holds the document as it would with a reader.
    """
    tally = Tally()
    url = f"{base_url}/big-document"
    writer = Editor(0, 0, url, tally)
    await open_editors([writer])
    before = await _settled(rss, settle / 2)
    rng = random.Random(seed)
    cursor = 0
    started = time.monotonic()
    for n in range(edits):
        if n % 20 == 0:
            cursor = rng.randint(0, len(writer.text))
        word = f"w{n:0{chunk - 2}d} "[-chunk:]
        await writer.insert(cursor, word)
        cursor += chunk
        if n % 1000 == 999:
            await writer.drain()  # never let the server's backlog grow without bound
    await writer.drain()
    expected = edits * chunk
    for attempt in range(120):
        # A server that queues what it reads (pycrdt-websocket) may answer the ping
        # before it applied every update: join again until the whole text is there.
        reader = Editor(1 + attempt, 0, url, tally)
        await open_editors([reader], limit=120)
        received = len(str(reader.text).encode())
        if received >= expected:
            break
        await reader.close()
        await asyncio.sleep(1)
    build = time.monotonic() - started
    await writer.close()
    after = await _settled(rss, settle)
    await reader.close()
    return BigDocResult(edits, received, build, before, after)


async def run_typists(
    base_url: str,
    *,
    docs: int,
    editors_per_doc: int,
    duration: float,
    rate: float,
    seed: int = 1,
    doc_prefix: str = "bench",
    drain_timeout: float = 10.0,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> PhaseResult:
    """:func:`run_phase`'s typing load (without presence), generated by Node (``TYPIST``).

    The editors are stock Yjs documents on ``ws`` connections in one Node process,
    which costs several times less CPU per delivery than this Python generator, so
    that a saturation phase finds the server's limit rather than the generator's.
    They sync, type and only look for tokens in what they receive. ``on_start`` and
    ``on_stop`` bracket the typing and the drain, as in :func:`run_phase`.
    """
    options = {
        "url": base_url,
        "query": URL_QUERY,
        "docs": docs,
        "editorsPerDoc": editors_per_doc,
        "rate": rate,
        "duration": duration,
        "drainTimeout": drain_timeout,
        "prefix": doc_prefix,
        "seed": seed,
    }
    node = await asyncio.create_subprocess_exec(
        "node",
        str(TYPIST),
        json.dumps(options),
        cwd=TYPIST.parent,
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 30,
    )
    assert node.stdout is not None
    report: dict[str, Any] = {}
    async for raw in node.stdout:
        line = raw.decode().strip()
        if line == "typing" and on_start is not None:
            on_start()
        elif line == "drained" and on_stop is not None:
            on_stop()
        elif line.startswith("{"):
            report = json.loads(line)
    if await node.wait() != 0 or not report:
        raise RuntimeError(f"the Node typists failed (exit status {node.returncode})")
    return PhaseResult(
        docs=docs,
        editors_per_doc=editors_per_doc,
        duration=duration,
        edits=report["edits"],
        expected=report["expected"],
        delivered=report["delivered"],
        duplicates=report["duplicates"],
        echoes=report["echoes"],
        missing=report["missing"],
        latencies_ms=report["latenciesMs"],
        wall_seconds=report["wallSeconds"],
        generator_busy=report["generatorBusy"],
    )
