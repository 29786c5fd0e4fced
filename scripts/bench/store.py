"""Store benchmark: committed updates/s through the Journal, and cold-load time.

Run from the repository root::

    .venv/bin/python scripts/bench/store.py            # full run (a few minutes)
    .venv/bin/python scripts/bench/store.py --quick    # short run

Throughput: N editors (asyncio tasks) type into one document. Each editor owns a
pycrdt Doc; its keystrokes are real Yjs updates (generated before the clock
starts). For every keystroke the editor applies the update to the server's Doc
(as a room does), hands it to the journal and yields; every ``--flush-every``
keystrokes it awaits ``flush()``. The rate is updates / time until the last one
is durable. The same updates, with the same concurrency, go through
pycrdt-store's ``SQLiteYStore.write()`` (what pycrdt-websocket does: one
transaction per update, awaited). pycrdt-store has no PostgreSQL store, so the
PostgreSQL rows have no comparison.

Cold load: a document with ``--load-updates`` logged updates (one editor typing),
loaded with ``store.load()`` and applied to a fresh Doc, without a snapshot and
with a snapshot 500 entries before the end; the median of ``--repeat`` runs.
pycrdt-store reads the same rows through ``apply_updates()`` (its checkpoint
playing the snapshot's role).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from collab.config import Config
from collab.core.journal import Journal
from collab.store import NewEntry, store_from_url
from collab.store.replay import replay
from collab.store.sql import SqlStore

PG_URL = os.environ.get("COLLAB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WORDS = "the quick brown fox jumps over the lazy dog while collab commits in groups ".split()


def typing(count: int, seed: int = 0) -> list[bytes]:
    """The updates of one editor typing ``count`` keystrokes.

    Words with a space, a typo fixed now and then (a backspace), and after each
    word the cursor moves to a random place, as when editing. (Typing 100,000
    characters without ever moving the cursor is pycrdt's worst case: applying
    each update then costs time proportional to the run's length; see
    docs/performance.md.)
    """
    rnd = random.Random(seed)
    doc: Doc[Any] = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    length = 0  # ASCII only: UTF-8 offsets == characters
    while len(updates) < count:
        cursor = rnd.randint(0, length)
        for char in rnd.choice(WORDS) + " ":
            if len(updates) >= count:
                break
            text.insert(cursor, char)
            cursor += 1
            length += 1
            if rnd.random() < 0.02:  # a typo, fixed at once
                del text[cursor - 1 : cursor]
                cursor -= 1
                length -= 1
    return updates[:count]


async def ours(url: str, editors: list[list[bytes]], flush_every: int, config: Config) -> float:
    store = store_from_url(url)
    await store.open()
    server: Doc[Any] = Doc()
    name = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        async with Journal(store, config) as journal:
            log = journal.open(name, server.get_update, 0)

            async def editor(client: str, updates: list[bytes]) -> None:
                for k, update in enumerate(updates, 1):
                    server.apply_update(update)
                    log.append(update, client)
                    if k % flush_every == 0:
                        await log.flush()
                    else:
                        await asyncio.sleep(0)
                await log.flush()

            start = time.perf_counter()
            await asyncio.gather(*(editor(f"c{i}", u) for i, u in enumerate(editors)))
            elapsed = time.perf_counter() - start
        total = sum(map(len, editors))
        assert (await store.document(name)) is not None
        return total / elapsed
    finally:
        await store.delete(name)
        await store.close()


def pycrdt_store_class(path: Path) -> type:
    from pycrdt.store import SQLiteYStore

    return type("BenchYStore", (SQLiteYStore,), {"db_path": str(path)})


async def theirs(path: Path, editors: list[list[bytes]]) -> float:
    server: Doc[Any] = Doc()
    async with pycrdt_store_class(path)(f"bench-{uuid.uuid4().hex[:8]}") as ystore:

        async def editor(updates: list[bytes]) -> None:
            for update in updates:
                server.apply_update(update)
                await ystore.write(update)

        start = time.perf_counter()
        await asyncio.gather(*(editor(u) for u in editors))
        elapsed = time.perf_counter() - start
    return sum(map(len, editors)) / elapsed


async def median_ms(repeat: int, run: Callable[[], Awaitable[None]]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def state_after(updates: list[bytes]) -> bytes:
    doc: Doc[Any] = Doc()
    for update in updates:
        doc.apply_update(update)
    return doc.get_update()


async def cold_load_ours(
    url: str, updates: list[bytes], snapshot: bytes | None, repeat: int
) -> tuple[float, float]:
    """(median ms of store.load alone, median ms of load + apply) for one document."""
    store = store_from_url(url)
    await store.open()
    name = f"bench-load-{uuid.uuid4().hex[:8]}"
    cut = len(updates) - 500
    try:
        for start in range(0, len(updates), 10_000):
            chunk = updates[start : start + 10_000]
            entries = [NewEntry(name, u, time.time(), "c1") for u in chunk]
            if snapshot is not None and start < cut <= start + len(chunk):
                await store.append(entries[: cut - start], snapshots={name: snapshot})
                await store.append(entries[cut - start :])
            else:
                await store.append(entries)

        async def load() -> None:
            await store.load(name)

        async def load_and_apply() -> None:
            loaded = await store.load(name)
            replay(loaded.snapshot, loaded.entries)  # exactly what Rooms does

        return await median_ms(repeat, load), await median_ms(repeat, load_and_apply)
    finally:
        await store.delete(name)
        await store.close()


async def cold_load_theirs(
    path: Path, updates: list[bytes], snapshot: bytes | None, repeat: int
) -> float:
    name = f"bench-load-{uuid.uuid4().hex[:8]}"
    cls = pycrdt_store_class(path)
    async with cls(name) as ystore:
        await ystore.write(b"\x00\x00")  # an empty update: makes sure the schema exists
    # Its write() is one transaction per update; fill its table directly with the same rows.
    base = time.time() - len(updates)
    cut = len(updates) - 500
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM yupdates WHERE path = ?", (name,))
        raw.executemany(
            "INSERT INTO yupdates VALUES (?, ?, ?, ?)",
            [(name, u, b"", base + i) for i, u in enumerate(updates)],
        )
        if snapshot is not None:
            raw.execute(
                "INSERT OR REPLACE INTO ycheckpoints (path, checkpoint, timestamp) "
                "VALUES (?, ?, ?)",
                (name, snapshot, base + cut),
            )
    async with cls(name) as ystore:

        async def load_and_apply() -> None:
            await ystore.apply_updates(Doc())

        return await median_ms(repeat, load_and_apply)


async def postgres_available() -> bool:
    store = SqlStore(PG_URL)
    try:
        await store.open()
    except Exception:
        return False
    await store.close()
    return True


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (fewer updates)")
    parser.add_argument("--flush-every", type=int, default=50)
    parser.add_argument("--load-updates", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--dir", type=Path, default=None, help="where SQLite files go")
    args = parser.parse_args()
    total = 2_000 if args.quick else 20_000  # per concurrency level, ours
    theirs_total = 500 if args.quick else 2_000  # pycrdt-store is ~100x slower per update
    load_updates = args.load_updates or (10_000 if args.quick else 100_000)
    repeat = args.repeat or (3 if args.quick else 5)
    config = Config()
    workdir = Path(tempfile.mkdtemp(prefix="collab-bench-", dir=args.dir))
    pg = await postgres_available()

    print(f"# collab store benchmark{' (--quick)' if args.quick else ''}")
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
        f", SQLite {sqlite3.sqlite_version}, files in {workdir}"
    )
    print(
        f"journal: commit_interval={config.commit_interval}s "
        f"commit_max_updates={config.commit_max_updates} "
        f"snapshot_every_updates={config.snapshot_every_updates}; "
        f"editors flush every {args.flush_every} keystrokes"
    )
    print()
    print("## Committed updates/s (higher is better)")
    print()
    print("| editors | collab SQLite | collab PostgreSQL | pycrdt-store SQLite | ratio (SQLite) |")
    print("|---:|---:|---:|---:|---:|")
    for count in (1, 10, 100):
        editors = [typing(total // count, seed) for seed in range(count)]
        few = [u[: max(1, theirs_total // count)] for u in editors]
        sqlite_rate = await ours(
            f"sqlite:///{workdir / 'collab.db'}", editors, args.flush_every, config
        )
        pg_rate = await ours(PG_URL, editors, args.flush_every, config) if pg else None
        their_rate = await theirs(workdir / f"ystore-{count}.db", few)
        pg_cell = f"{pg_rate:,.0f}" if pg_rate is not None else "unreachable"
        print(
            f"| {count} | {sqlite_rate:,.0f} | {pg_cell} | {their_rate:,.0f} "
            f"| {sqlite_rate / their_rate:,.1f}x |",
            flush=True,
        )
    print()
    print(
        f"## Cold load of a document with {load_updates:,} logged updates (ms, median of {repeat})"
    )
    print()
    updates = typing(load_updates)
    snapshot = state_after(updates[: load_updates - 500])
    print(
        "| snapshot | collab SQLite load / +apply | collab PostgreSQL load / +apply "
        "| pycrdt-store SQLite load+apply | ratio (SQLite, load+apply) |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, snap in (("none", None), ("500 entries before the end", snapshot)):
        s_load, s_total = await cold_load_ours(
            f"sqlite:///{workdir / 'collab.db'}", updates, snap, repeat
        )
        pg_cell = "unreachable"
        if pg:
            p_load, p_total = await cold_load_ours(PG_URL, updates, snap, repeat)
            pg_cell = f"{p_load:,.0f} / {p_total:,.0f}"
        t_total = await cold_load_theirs(workdir / "ystore-load.db", updates, snap, repeat)
        print(
            f"| {label} | {s_load:,.0f} / {s_total:,.0f} | {pg_cell} | {t_total:,.0f} "
            f"| {t_total / s_total:,.2f}x |",
            flush=True,
        )
    shutil.rmtree(workdir)


if __name__ == "__main__":
    asyncio.run(main())
