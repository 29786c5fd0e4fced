"""Several `collab serve` processes, one Redis, one PostgreSQL database, stock Yjs clients.

Each process is a real ``python -m collab serve`` (tests/serverproc.py) with
``--redis-url`` pointing at the test's own Redis (tests/redis_fixtures.py) and
``--db`` at this run's PostgreSQL database. Editors are stock y-websocket
providers in Node (tests/interop/peer.mjs), each behind a TCP proxy of the test's
(tests/tcp_proxy.py) so that a test can count their connections (no reconnect)
and move them to another process (a load balancer after a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from collab.store import LogEntry
from collab.store.replay import replay
from collab.store.sql import SqlStore
from collab.wire import protocol
from collab.wire.protocol import SyncStep2, Update
from tests.interop.node_peer import NodePeer
from tests.redis_fixtures import RedisServer, redis_server
from tests.serverproc import ServerProcess, free_port
from tests.store_fixtures import PG_URL, prefix_fixture, require_postgres
from tests.tcp_proxy import TcpProxy, tcp_proxy
from tests.test_server import raw_synced

__all__ = ["prefix_fixture", "redis_server"]

pytestmark = [pytest.mark.postgres, pytest.mark.interop, pytest.mark.timeout(180)]


@contextlib.asynccontextmanager
async def collab_process(
    tmp_path: Path, redis: RedisServer, name: str, flags: tuple[str, ...] = ()
) -> AsyncIterator[ServerProcess]:
    require_postgres()
    server = ServerProcess(
        PG_URL,
        free_port(),
        tmp_path / f"{name}.log",
        flags=["--redis-url", redis.url, "--ping-interval", "1", "--ping-timeout", "2", *flags],
        env={"COLLAB_AWARENESS_RENEWAL_INTERVAL": "0.5"},
    )
    await server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()


@contextlib.asynccontextmanager
async def log_of(doc: str) -> AsyncIterator[Callable[[], Any]]:
    store = SqlStore(PG_URL)
    await store.open()

    async def entries() -> list[LogEntry]:
        return await store.entries(doc)

    try:
        yield entries
    finally:
        await store.close()


async def until(predicate: Callable[[], Any], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


def peer(proxy: TcpProxy, doc: str) -> NodePeer:
    return NodePeer(f"ws://127.0.0.1:{proxy.port}", doc)


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get("text", type=Text))


def typed(doc: Doc[Any], text: str) -> bytes:
    """Append ``text`` to ``doc``; the update that did it."""
    before = doc.get_state()
    doc.get("text", type=Text).insert(len(text_of(doc)), text)
    return doc.get_update(before)


async def read_until(ws: ClientConnection, doc: Doc[Any], text: str) -> None:
    """Apply what the server sends until ``doc`` holds ``text``."""
    async with asyncio.timeout(10):
        while text_of(doc) != text:
            message = protocol.decode(await ws.recv())  # type: ignore[arg-type]
            if isinstance(message, Update | SyncStep2):
                doc.apply_update(message.update)


async def test_stock_clients_on_two_processes_share_one_document(
    tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    doc = f"{prefix}-two"
    async with (
        collab_process(tmp_path, redis_server, "one") as one,
        collab_process(tmp_path, redis_server, "two") as two,
        tcp_proxy(one.port) as to_one,
        tcp_proxy(two.port) as to_two,
        peer(to_one, doc) as a,
        peer(to_two, doc) as b,
        log_of(doc) as entries,
    ):
        await a.wait_synced()
        await b.wait_synced()
        await a.type("hello ")
        await b.wait_contains("hello ")
        await b.type("world")
        assert await a.wait_text("hello world") == "hello world"
        await a.set_awareness({"name": "ada"})
        await b.wait_awareness("name", "ada")
        await b.set_awareness({"name": "bob"})
        await a.wait_awareness("name", "bob")
        # Late joiners on either process get the whole text.
        async with peer(to_one, doc) as late_one, peer(to_two, doc) as late_two:
            assert await late_one.wait_text("hello world") == "hello world"
            assert await late_two.wait_text("hello world") == "hello world"

        # Every keystroke is one update, logged once, by the process its editor is on.
        async def all_logged() -> bool:
            return len(await entries()) >= len("hello world")

        await until(all_logged)
        logged = await entries()
        assert len(logged) == len("hello world")
        assert str(replay(None, logged).get("text", type=Text)) == "hello world"
        assert to_one.accepted == 2 and to_two.accepted == 2  # nobody reconnected


async def test_redis_restarted_while_both_sides_type(
    tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    doc = f"{prefix}-outage"
    async with (
        collab_process(tmp_path, redis_server, "one") as one,
        collab_process(tmp_path, redis_server, "two") as two,
        tcp_proxy(one.port) as to_one,
        tcp_proxy(two.port) as to_two,
        peer(to_one, doc) as a,
        peer(to_two, doc) as b,
        log_of(doc) as entries,
    ):
        await a.wait_synced()
        await b.wait_synced()
        await a.type("[a1]")
        await b.wait_contains("[a1]")
        redis_server.stop()
        # Both keep typing while Redis is down: each side sees only its own.
        await asyncio.gather(a.type("[a-down]", 20), b.type("[b-down]", 20))
        assert "[b-down]" not in await a.text()
        await redis_server.start()
        text_a = await a.wait_contains("[b-down]", seconds=20)
        text_b = await b.wait_contains("[a-down]", seconds=20)
        assert text_a == text_b
        # And after: updates cross again as they are typed.
        await a.type("[a-up]")
        await b.wait_contains("[a-up]")
        await b.type("[b-up]")
        final = await a.wait_contains("[b-up]")
        assert await b.text() == final
        typed = len("[a1]") + len("[a-down]") + len("[b-down]") + len("[a-up]") + len("[b-up]")

        async def all_logged() -> bool:
            return len(await entries()) >= typed

        await until(all_logged)
        logged = await entries()
        assert len(logged) == typed  # every edit exactly once
        assert str(replay(None, logged).get("text", type=Text)) == final
        assert to_one.accepted == 1 and to_two.accepted == 1  # no reconnect


async def test_editors_of_a_killed_process_move_to_the_other(
    tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    doc = f"{prefix}-kill"
    async with (
        collab_process(tmp_path, redis_server, "one") as one,
        collab_process(tmp_path, redis_server, "two") as two,
        tcp_proxy(one.port) as balancer,  # in front of process one, until it dies
        tcp_proxy(two.port) as to_two,
        peer(balancer, doc) as a,
        peer(to_two, doc) as b,
        log_of(doc) as entries,
    ):
        await a.wait_synced()
        await b.wait_synced()
        await a.type("before ")
        await b.wait_contains("before ")

        async def committed() -> bool:
            return len(await entries()) >= len("before ")

        await until(committed)
        typing = asyncio.create_task(a.type("during the crash ", 30))
        await asyncio.sleep(0.1)
        balancer.target_port = two.port  # the balancer sends new connections to two
        one.kill()
        await typing
        await a.type("after")
        # a reconnected through the balancer to process two; both converge.
        text = await b.wait_contains("after", seconds=20)
        assert await a.wait_text(text) == text
        assert "before " in text and "during the crash " in text
        assert balancer.accepted >= 2

        committed_before = str(
            replay(None, (await entries())[: len("before ")]).get("text", type=Text)
        )
        assert committed_before == "before "  # nothing committed was lost
        # What process one relayed but had not committed when it died is held by process
        # two (and the editors); its last snapshot, when it stops, makes it durable.
        assert await two.terminate() == 0
        store = SqlStore(PG_URL)
        await store.open()
        try:
            loaded = await store.load(doc)
        finally:
            await store.close()
        assert str(replay(loaded.snapshot, loaded.entries).get("text", type=Text)) == text


async def test_workers_share_a_port_and_a_document(
    tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    doc = f"{prefix}-workers"
    async with collab_process(tmp_path, redis_server, "workers", ("--workers", "2")) as server:
        # The kernel spreads connections over both workers (once both listen); each
        # says which it is.
        landed: dict[str, int] = {}
        async with asyncio.timeout(30):
            while len(landed) < 2:
                async with ws_connect(server.url(doc)) as ws:
                    assert ws.response is not None
                    worker = ws.response.headers["X-Collab-Worker"]
                    landed[worker] = landed.get(worker, 0) + 1
        assert set(landed) == {"0", "1"}, landed
        # One editor on each worker (bare protocol clients: they show the header).
        editors: dict[str, tuple[ClientConnection, Doc[Any]]] = {}
        async with contextlib.AsyncExitStack() as stack:
            while len(editors) < 2:
                ws, replica = await raw_synced(server.url(doc))
                stack.push_async_callback(ws.close)
                assert ws.response is not None
                editors.setdefault(ws.response.headers["X-Collab-Worker"], (ws, replica))
            (ws0, doc0), (ws1, doc1) = editors["0"], editors["1"]
            await ws0.send(protocol.encode(Update(typed(doc0, "one "))))
            await read_until(ws1, doc1, "one ")
            await ws1.send(protocol.encode(Update(typed(doc1, "document"))))
            await read_until(ws0, doc0, "one document")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.proc.wait, 60) == 0
        async with log_of(doc) as entries:
            logged = await entries()
        assert len(logged) == 2
        assert str(replay(None, logged).get("text", type=Text)) == "one document"
