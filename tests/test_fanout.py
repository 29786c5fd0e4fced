"""Redis fan-out between two servers in one test process: real Redis, real sockets, SQLite.

Two native servers on different ports share one Redis (the test's own) and one
store; Python clients on each must see the same document and the same presence,
and every update must be in the log exactly once. The process-level tests (two
``collab serve``, PostgreSQL, stock Yjs clients, kill -9) are in
test_fanout_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab.client import Client, connect
from collab.config import Config
from collab.core.room import Room
from collab.fanout import check_processes
from collab.fanout.redis import RedisRelay
from collab.server import Server, serve
from collab.store.replay import replay
from collab.wire.protocol import SyncStep2, Update
from tests.conftest import eventually
from tests.redis_fixtures import RedisServer, redis_server
from tests.tcp_proxy import tcp_proxy
from tests.test_room import FakePeer
from tests.webhook_receiver import receiver

__all__ = ["redis_server"]


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get("text", type=Text))


def relay_of(server: Server) -> RedisRelay:
    relay = server.runtime.relay
    assert isinstance(relay, RedisRelay)
    return relay


@contextlib.asynccontextmanager
async def two_servers(config: Config) -> AsyncIterator[tuple[Server, Server]]:
    async with serve(config) as one, serve(config) as two:
        await eventually(lambda: relay_of(one).up and relay_of(two).up)
        yield one, two


@contextlib.asynccontextmanager
async def two_editors(
    config: Config, doc: str
) -> AsyncIterator[tuple[Server, Server, Client, Client]]:
    """Two servers joined by Redis and a synced editor of ``doc`` on each (saved acks on)."""
    async with (
        two_servers(config) as (one, two),
        connect(f"ws://127.0.0.1:{one.port}/{doc}", saved_acks=True) as a,
        connect(f"ws://127.0.0.1:{two.port}/{doc}", saved_acks=True) as b,
    ):
        await a.wait_synced()
        await b.wait_synced()
        yield one, two, a, b


@pytest.fixture
def fanout_config(tmp_path: Path, redis_server: RedisServer) -> Config:
    return Config(
        port=0,
        db_url=f"sqlite:///{tmp_path / 'shared.db'}",
        redis_url=redis_server.url,
        ping_interval=None,
        unload_grace_seconds=0.2,
        awareness_renewal_interval=0.2,
    )


async def test_editors_on_two_servers_share_one_document(fanout_config: Config) -> None:
    async with two_editors(fanout_config, "shared") as (one, two, a, b):
        a.doc.get("text", type=Text).insert(0, "from one. ")
        await b.wait_for(lambda: text_of(b.doc) == "from one. ")
        b.doc.get("text", type=Text).insert(0, "from two. ")
        await a.wait_for(lambda: text_of(a.doc) == "from two. from one. ")
        await a.wait_saved()
        await b.wait_saved()
        # Each update is logged once, by the process its editor is on.
        entries = await one.store.entries("shared")
        assert len(entries) == 2
        assert len({e.client for e in entries}) == 2  # one from each editor
        assert text_of(replay(None, entries)) == "from two. from one. "
        assert relay_of(one).stats.published >= 1 and relay_of(two).stats.received >= 1


async def test_presence_crosses_and_leaves(fanout_config: Config) -> None:
    async with (
        two_servers(fanout_config) as (one, two),
        connect(f"ws://127.0.0.1:{one.port}/here") as a,
    ):
        await a.wait_synced()
        async with connect(f"ws://127.0.0.1:{two.port}/here") as b:
            await b.wait_synced()
            b.set_awareness({"name": "bea"})
            await a.wait_for(lambda: any(p.get("name") == "bea" for p in a.peers.values()))
        # bea's connection closed: her presence goes on the other server too.
        await a.wait_for(lambda: not any(p.get("name") == "bea" for p in a.peers.values()))


async def test_a_process_that_loads_late_catches_up_before_serving(
    fanout_config: Config,
) -> None:
    # Commits are held back (a long interval), so the store lags behind server one.
    config = fanout_config.replace(commit_interval=30.0)
    async with (
        two_servers(config) as (one, two),
        connect(f"ws://127.0.0.1:{one.port}/late") as a,
    ):
        await a.wait_synced()
        a.doc.get("text", type=Text).insert(0, "not in the store yet")
        await eventually(lambda: "late" in one.rooms and one.journal.pending == 1)
        assert await two.store.entries("late") == []
        # The first editor on server two sees what server one holds, at its first sync.
        async with connect(f"ws://127.0.0.1:{two.port}/late") as b:
            await b.wait_synced()
            assert text_of(b.doc) == "not in the store yet"


def test_several_processes_need_redis_and_a_shared_store() -> None:
    with pytest.raises(ValueError, match="needs --redis-url"):
        check_processes(Config(workers=2))
    with pytest.raises(ValueError, match="SQLite"):
        check_processes(Config(redis_url="redis://10.0.0.5:6379/0", db_url="sqlite:///x.db"))
    check_processes(Config(redis_url="redis://127.0.0.1:6379/0", db_url="sqlite:///x.db"))
    check_processes(
        Config(redis_url="redis://10.0.0.5:6379/0", db_url="postgresql://u@db/x", workers=4)
    )


async def test_redis_restarted_mid_session_converges_without_reconnecting(
    fanout_config: Config, redis_server: RedisServer
) -> None:
    async with two_editors(fanout_config, "outage") as (one, two, a, b):
        a.doc.get("text", type=Text).insert(0, "A1 ")
        await b.wait_for(lambda: "A1" in text_of(b.doc))
        redis_server.stop()
        await eventually(lambda: not relay_of(one).up and not relay_of(two).up)
        a.doc.get("text", type=Text).insert(0, "A2 ")
        b.doc.get("text", type=Text).insert(0, "B2 ")
        await a.wait_saved()  # both keep logging while Redis is down
        await b.wait_saved()
        await redis_server.start()
        await a.wait_for(lambda: "B2" in text_of(a.doc), timeout=15)
        await b.wait_for(lambda: "A2" in text_of(b.doc), timeout=15)
        assert text_of(a.doc) == text_of(b.doc)
        entries = await one.store.entries("outage")
        assert len(entries) == 3
        assert text_of(replay(None, entries)) == text_of(a.doc)
        assert a.connected and b.connected
        assert relay_of(one).stats.resyncs >= 1 and relay_of(two).stats.resyncs >= 1


async def test_a_redis_connection_that_dies_silently_is_noticed_and_resynced(
    fanout_config: Config, redis_server: RedisServer
) -> None:
    # Server two reaches Redis through a proxy that turns into a black hole: its
    # connections stay open and carry nothing (no FIN, no RST), as when a NAT entry
    # is dropped. Only the heartbeat can tell; then it reconnects and resyncs.
    async with tcp_proxy(redis_server.port) as proxy:
        via_proxy = fanout_config.replace(
            redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_heartbeat=0.2
        )
        async with (
            serve(fanout_config) as one,
            serve(via_proxy) as two,
        ):
            await eventually(lambda: relay_of(one).up and relay_of(two).up)
            async with (
                connect(f"ws://127.0.0.1:{one.port}/silent") as a,
                connect(f"ws://127.0.0.1:{two.port}/silent") as b,
            ):
                await a.wait_synced()
                await b.wait_synced()
                a.doc.get("text", type=Text).insert(0, "A1 ")
                await b.wait_for(lambda: "A1" in text_of(b.doc))
                connections = proxy.accepted
                proxy.blackhole()
                a.doc.get("text", type=Text).insert(0, "A2 ")
                b.doc.get("text", type=Text).insert(0, "B2 ")
                await a.wait_for(lambda: "B2" in text_of(a.doc), timeout=10)
                await b.wait_for(lambda: "A2" in text_of(b.doc), timeout=10)
                assert text_of(a.doc) == text_of(b.doc)
                assert proxy.accepted > connections  # it reconnected, through the proxy
                assert relay_of(two).stats.downs >= 1 and relay_of(two).stats.resyncs >= 1
                assert a.connected and b.connected  # no editor had to reconnect


async def test_a_document_typed_into_on_two_processes_at_once_is_created_once(
    fanout_config: Config,
) -> None:
    # Both processes load the new document before either commits: each believed it new.
    # document.created goes out once, from the process whose commit took seq 1.
    async with receiver() as hook:
        config = fanout_config.replace(
            webhook_url=(hook.url,), webhook_debounce_seconds=0.1, commit_interval=0.01
        )
        async with two_editors(config, "born") as (one, _, a, b):
            a.doc.get("text", type=Text).insert(0, "a")
            b.doc.get("text", type=Text).insert(0, "b")
            await a.wait_saved()
            await b.wait_saved()
            await hook.wait_for(lambda: len(hook.events("document.changed")) >= 2)
            entries = await one.store.entries("born")
    created = hook.events("document.created")
    assert [c["seq"] for c in created] == [1], created
    assert [e.seq for e in entries] == [1, 2]


edits = st.tuples(st.just("edit"), st.sampled_from("ab"), st.text("xyz", min_size=1, max_size=3))
#: At most two outage toggles per example: each costs a Redis restart and a reconnection.
operations = st.lists(st.one_of(edits, st.just(("outage", "", ""))), min_size=1, max_size=8).filter(
    lambda ops: sum(op == "outage" for op, _, _ in ops) <= 2
)


@pytest.mark.timeout(300)
@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
async def test_random_edits_and_redis_outages_converge(
    redis_server: RedisServer, ops: list[tuple[str, str, str]]
) -> None:
    """Two processes' rooms (real relays, real Redis), local edits on either side in any
    order, Redis stopped and started between them: the rooms and their editors converge."""
    if redis_server.proc is None:
        await redis_server.start()
    config = Config(redis_url=redis_server.url)
    name = f"prop-{uuid.uuid4().hex[:8]}"
    async with RedisRelay(config) as relay_a, RedisRelay(config) as relay_b:
        await eventually(lambda: relay_a.up and relay_b.up)
        rooms: dict[str, Room] = {}
        editors: dict[str, FakePeer] = {}
        replicas: dict[str, Doc[Any]] = {}
        for side, relay in (("a", relay_a), ("b", relay_b)):
            room = Room(name, Doc(), awareness_timeout=30.0, clock=time.monotonic)
            room.relay = relay
            await relay.join(room)
            editor = FakePeer(side)
            room.join(editor)
            rooms[side], editors[side], replicas[side] = room, editor, Doc()
        for op, side, text in ops:
            if op == "outage":
                if redis_server.proc is None:
                    await redis_server.start()
                else:
                    redis_server.stop()
                    await eventually(lambda: not relay_a.up and not relay_b.up)
                continue
            replica = replicas[side]
            for message in editors[side].outbox:  # what the editor was sent so far
                if isinstance(message, Update | SyncStep2):
                    replica.apply_update(message.update)
            editors[side].outbox.clear()
            before = replica.get_state()
            replica.get("text", type=Text).insert(0, text)
            rooms[side].receive(editors[side], Update(replica.get_update(before)))
        if redis_server.proc is None:
            await redis_server.start()
        typed = sorted("".join(text for op, _, text in ops if op == "edit"))
        # Every edit reaches both rooms (once: the characters are counted), in one order.
        await eventually(
            lambda: all(sorted(text_of(room.doc)) == typed for room in rooms.values()), 20
        )
        assert text_of(rooms["a"].doc) == text_of(rooms["b"].doc)
        for side in "ab":  # each local editor was sent everything the other side typed
            replica = replicas[side]
            for message in editors[side].outbox:
                if isinstance(message, Update | SyncStep2):
                    replica.apply_update(message.update)
            assert text_of(replica) == text_of(rooms[side].doc)


async def test_a_document_loaded_while_the_relay_subscribes_gets_other_processes_updates(
    redis_server: RedisServer,
) -> None:
    """The window between the subscribed connection's first SUBSCRIBE and Redis's
    confirmation: a room that joins then (join returns at once: not up yet) must still
    be subscribed once the relay is up."""
    config = Config(redis_url=redis_server.url)
    name = f"window-{uuid.uuid4().hex[:8]}"
    async with RedisRelay(config) as other:
        await eventually(lambda: other.up)
        theirs = Room(name, Doc(), awareness_timeout=30.0, clock=time.monotonic)
        theirs.relay = other
        await other.join(theirs)
        async with RedisRelay(config) as relay:
            async with asyncio.timeout(5):
                while relay._sub is None:  # connected, first SUBSCRIBE written
                    await asyncio.sleep(0)
            assert not relay.up  # Redis has not answered it yet: the window
            ours = Room(name, Doc(), awareness_timeout=30.0, clock=time.monotonic)
            ours.relay = relay
            await relay.join(ours)
            await eventually(lambda: relay.up)
            editor, watcher = FakePeer("theirs"), FakePeer("ours")
            theirs.join(editor)
            ours.join(watcher)
            typed: Doc[Any] = Doc()
            typed.get("text", type=Text).insert(0, "after the window")
            theirs.receive(editor, Update(typed.get_update()))
            await eventually(lambda: text_of(ours.doc) == "after the window")
