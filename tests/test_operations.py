"""What an operator sees: /metrics moving as editors work, /healthz, /readyz, JSON logs.

Metrics are read from outside, as Prometheus does: a real HTTP GET, parsed with
prometheus_client's own parser. Counters are global to a process (two servers in
this test process count into the same ones), so the tests compare scrapes taken
before and after; processes started fresh (workers, logs) are read absolutely.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pycrdt import Text
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from collab.client import Client, connect
from collab.config import Config
from tests.conftest import ServeKind
from tests.redis_fixtures import RedisServer, redis_server
from tests.serverproc import ServerProcess, free_port
from tests.servers import RunningServer
from tests.store_fixtures import PG_ADMIN_URL, _admin, require_postgres

__all__ = ["redis_server"]

Samples = dict[str, float]


async def scrape(port: int) -> Samples:
    """Every sample of ``GET /metrics``, keyed ``name{label="value",...}``."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def delta(after: Samples, before: Samples, key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until the async ``check()`` holds (polled), failing after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def healthy(port: int, timeout: float = 60.0) -> None:
    """Wait until ``GET /healthz`` answers 200 on ``port``."""
    async with asyncio.timeout(timeout), httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


def text_of(client: Client) -> str:
    return str(client.doc.get("text", type=Text))


async def type_into(writer: Client, reader: Client, count: int) -> None:
    """``count`` one-character edits, each seen by ``reader`` before the next: one
    update message each."""
    text = writer.doc.get("text", type=Text)
    for _ in range(count):
        text += "x"
        length = len(text_of(writer))
        await reader.wait_for(lambda: len(text_of(reader)) == length)  # noqa: B023


async def test_metrics_move_as_editors_type_and_leave(server: RunningServer) -> None:
    port, name = server.port, f"metrics-{secrets.token_hex(3)}"
    url = f"ws://127.0.0.1:{port}/{name}"
    start = await scrape(port)
    async with connect(url) as alice, connect(url) as bob:
        await alice.wait_synced()
        await bob.wait_synced()

        async def both_open() -> bool:
            return delta(await scrape(port), start, "collab_connections_open") == 2

        await until(both_open)
        before = await scrape(port)
        assert delta(before, start, "collab_connections_opened_total") == 2
        assert delta(before, start, "collab_documents_loaded") == 1

        await type_into(alice, bob, 5)
        after = await scrape(port)
        assert delta(after, before, "collab_updates_received_total") == 5
        assert delta(after, before, "collab_deliveries_sent_total") == 5  # to bob, each
        received = delta(after, before, "collab_received_bytes_total")
        assert received > 0
        # Each update frame went on to bob as it came: as many bytes out as in.
        assert delta(after, before, "collab_sent_bytes_total") == received

        async def committed() -> bool:
            now = await scrape(port)
            return delta(now, before, "collab_updates_committed_total") == 5

        await until(committed)
        durable = await scrape(port)
        assert durable["collab_updates_pending"] == 0
        assert delta(durable, before, "collab_store_commit_duration_seconds_count") >= 1
        assert delta(durable, before, 'collab_store_commit_duration_seconds_bucket{le="+Inf"}') >= 1

    async def both_gone() -> bool:
        return delta(await scrape(port), start, "collab_connections_open") == 0

    await until(both_gone)
    end = await scrape(port)
    assert delta(end, start, 'collab_connections_closed_total{code="1000"}') == 2

    async def unloaded() -> bool:  # unload_grace_seconds is 0.2 in tests
        return delta(await scrape(port), start, "collab_documents_loaded") == 0

    await until(unloaded)


async def test_a_bad_frame_and_a_bad_path_are_counted(server: RunningServer) -> None:
    port = server.port
    before = await scrape(port)
    async with ws_connect(f"ws://127.0.0.1:{port}/bad-frame-{secrets.token_hex(3)}") as ws:
        await ws.recv()  # the server's step 1: the session has started
        await ws.send(b"\xff\xff\xff")  # no y-websocket message starts so
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(f"ws://127.0.0.1:{port}/not%20a%20name"):
            pass
    assert refused.value.response.status_code == 400

    async def counted() -> bool:
        after = await scrape(port)
        return delta(after, before, 'collab_connections_closed_total{code="1002"}') == 1

    await until(counted)
    after = await scrape(port)
    assert delta(after, before, 'collab_handshakes_refused_total{status="400"}') == 1
    assert delta(after, before, "collab_connections_open") == 0
    assert after["process_resident_memory_bytes"] > 0  # the process collector is there


async def test_a_refused_token_is_counted_by_its_status(
    serve_kind: ServeKind, config: Config
) -> None:
    async with serve_kind(config.replace(auth_secret="s" * 32)) as server:
        before = await scrape(server.port)
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(f"ws://127.0.0.1:{server.port}/secret-notes"):
                pass
        status = refused.value.response.status_code
        assert status == 401
        after = await scrape(server.port)
    assert delta(after, before, f'collab_handshakes_refused_total{{status="{status}"}}') == 1
    assert delta(after, before, "collab_connections_opened_total") == 0


async def test_healthz_answers_while_the_process_runs(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"store": "ok"}}


async def test_readyz_is_503_while_the_database_refuses_and_200_when_it_is_back(
    serve_kind: ServeKind, tmp_path: Path
) -> None:
    require_postgres()
    database = f"collab_ready_{secrets.token_hex(4)}"
    _admin(f'CREATE DATABASE "{database}"')
    try:
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database
        config = Config(port=0, db_url=url, ping_interval=None, readiness_timeout=2.0)
        async with serve_kind(config) as server, httpx.AsyncClient() as http:
            ready = f"http://127.0.0.1:{server.port}/readyz"
            assert (await http.get(ready)).status_code == 200

            # The database goes away: no new connection, and the open ones are cut.
            _admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
            _admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{database}'"
            )
            down = await http.get(ready)
            assert down.status_code == 503
            assert down.json() == {
                "status": "unready",
                "failed": ["store"],
                "checks": {"store": "failed"},
            }
            health = await http.get(f"http://127.0.0.1:{server.port}/healthz")
            assert health.status_code == 200  # alive, just not ready

            _admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')

            async def back() -> bool:
                return (await http.get(ready)).status_code == 200

            await until(back)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def test_readyz_and_redis_up_follow_redis_going_and_coming_back(
    serve_kind: ServeKind, tmp_path: Path, redis_server: RedisServer
) -> None:
    config = Config(
        port=0,
        db_url=f"sqlite:///{tmp_path / 'collab.db'}",
        ping_interval=None,
        redis_url=redis_server.url,
        readiness_timeout=2.0,
    )
    async with serve_kind(config) as server, httpx.AsyncClient() as http:
        ready = f"http://127.0.0.1:{server.port}/readyz"

        async def answers(status: int, redis_up: float) -> bool:
            samples = await scrape(server.port)
            return (await http.get(ready)).status_code == status and (
                samples.get("collab_redis_up") == redis_up
            )

        await until(lambda: answers(200, 1))
        assert (await http.get(ready)).json() == {
            "status": "ready",
            "checks": {"store": "ok", "redis": "ok"},
        }

        redis_server.stop()
        await until(lambda: answers(503, 0))
        assert (await http.get(ready)).json() == {
            "status": "unready",
            "failed": ["redis"],
            "checks": {"store": "ok", "redis": "failed"},
        }

        await redis_server.start()
        await until(lambda: answers(200, 1), timeout=20)


async def test_without_redis_there_is_no_redis_up(tmp_path: Path) -> None:
    # A process of its own: the gauge is global to a process, and other tests set it.
    server = ServerProcess(f"sqlite:///{tmp_path / 'collab.db'}", free_port(), tmp_path / "log")
    await server.start(timeout=60)
    try:
        samples = await scrape(server.port)
    finally:
        server.kill()
    assert "collab_redis_up" not in samples
    assert samples["collab_redis_published_total"] == 0


async def test_json_logs_are_one_object_per_line_with_doc_and_connection(
    tmp_path: Path,
) -> None:
    log = tmp_path / "server.log"
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'collab.db'}", free_port(), log, flags=["--log-format", "json"]
    )
    await server.start(timeout=60)
    name = f"logged-{secrets.token_hex(3)}"
    try:
        async with ws_connect(server.url(name)) as ws:
            await ws.recv()
            await ws.send(b"\xff\xff\xff")
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
    finally:
        assert await server.terminate() == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    closing = [line for line in lines if line.get("doc") == name]
    assert len(closing) == 1, lines
    assert closing[0]["level"] == "WARNING" and closing[0]["logger"] == "collab.session"
    assert "1002" in closing[0]["message"] and len(closing[0]["connection"]) == 8


async def test_text_logs_stay_the_default(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = ServerProcess(f"sqlite:///{tmp_path / 'collab.db'}", free_port(), log)
    await server.start(timeout=60)
    assert await server.terminate() == 0
    first = log.read_text().splitlines()[0]
    assert " INFO collab." in first
    with pytest.raises(ValueError):
        json.loads(first)


async def test_processes_sharing_a_metrics_dir_report_the_whole_server(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {"COLLAB_METRICS_DIR": str(shared), "COLLAB_METRICS_INTERVAL": "0.1"}
    db = f"sqlite:///{tmp_path / 'collab.db'}"
    one = ServerProcess(db, free_port(), tmp_path / "one.log", env=env)
    two = ServerProcess(db, free_port(), tmp_path / "two.log", env=env)
    await one.start(timeout=60)
    await two.start(timeout=60)
    try:
        name = f"workers-{secrets.token_hex(3)}"
        async with connect(one.url(name)) as alice, connect(one.url(name)) as bob:
            await alice.wait_synced()
            await bob.wait_synced()
            await type_into(alice, bob, 3)

            async def two_sees_one() -> bool:
                # Two delivered nothing itself: these three are one's, read from its file.
                return (await scrape(two.port))["collab_deliveries_sent_total"] == 3

            await until(two_sees_one)
            seen = await scrape(two.port)
            assert seen["collab_workers"] == 2
            assert seen["collab_connections_open"] == 2  # both on one, read from two
            received = seen["collab_updates_received_total"]
            assert received >= 3  # the edits, and each client's step 2

        assert one.proc is not None
        one.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(one.proc.wait, 30) == 0
        gone = await scrape(two.port)
        assert gone["collab_workers"] == 1
        assert gone["collab_connections_open"] == 0  # a stopped worker's gauges go
        assert gone["collab_updates_received_total"] == received  # its counts stay
        assert gone["collab_deliveries_sent_total"] == 3
        assert gone['collab_connections_closed_total{code="1000"}'] == 2
    finally:
        for server in (one, two):
            if server.proc is not None and server.proc.poll() is None:
                server.kill()


async def test_one_scrape_of_collab_serve_workers_reports_both_workers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    # What an earlier run left: not this server's counts.
    stale = {"collab_connections_opened_total": 1000, "pid": 1, "final": True}
    (shared / "1.json").write_text(json.dumps(stale))
    flags = ["--workers", "2", "--redis-url", redis_server.url, "--metrics-dir", str(shared)]
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'collab.db'}",
        free_port(),
        tmp_path / "workers.log",
        flags=[*flags, "--metrics-interval", "0.1"],
    )
    await server.start(timeout=60)  # two workers start on a loaded machine
    try:
        await healthy(server.port)  # the parent holds the port before its workers listen
        name = f"workers-{secrets.token_hex(3)}"
        async with contextlib.AsyncExitStack() as stack:
            landed: dict[str, int] = {}
            async with asyncio.timeout(30):
                while len(landed) < 2 or min(landed.values()) < 2:
                    ws = await stack.enter_async_context(ws_connect(server.url(name)))
                    await ws.recv()  # joined: step 1
                    assert ws.response is not None
                    worker = ws.response.headers["X-Collab-Worker"]
                    landed[worker] = landed.get(worker, 0) + 1
            total = sum(landed.values())

            async def everyone_counted() -> bool:
                return (await scrape(server.port))["collab_connections_open"] == total

            async def both_files_count() -> bool:
                # Each worker's file holds its own connections: a worker answers with its
                # live counts plus the other's file, which on a loaded machine can lag
                # behind that worker's last connections for a moment.
                files = [json.loads(path.read_text()) for path in shared.glob("*.json")]
                live = [f for f in files if not f["final"]]
                counted: int = sum(f.get("collab_connections_open", 0) for f in live)
                return counted == total

            await until(everyone_counted)
            await until(both_files_count)
            # Each scrape is a new TCP connection, which the kernel gives either worker:
            # every answer covers both (if one reported itself alone, some would be short).
            for _ in range(12):
                samples = await scrape(server.port)
                assert samples["collab_workers"] == 2
                assert samples["collab_connections_open"] == total
                assert samples["collab_connections_opened_total"] == total
                assert samples["collab_redis_up"] == 1
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(server.proc.wait, 60)


async def test_a_killed_worker_stops_counting_in_the_gauges(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {"COLLAB_METRICS_DIR": str(shared), "COLLAB_METRICS_INTERVAL": "0.1"}
    db = f"sqlite:///{tmp_path / 'collab.db'}"
    one = ServerProcess(db, free_port(), tmp_path / "one.log", env=env)
    two = ServerProcess(db, free_port(), tmp_path / "two.log", env=env)
    await one.start(timeout=60)
    await two.start(timeout=60)
    try:
        async with connect(one.url(f"killed-{secrets.token_hex(3)}")) as alice:
            await alice.wait_synced()

            async def counted() -> bool:
                return (await scrape(two.port))["collab_connections_open"] == 1

            await until(counted)
            one.kill()  # SIGKILL: no last snapshot; its file says it was open
            after = await scrape(two.port)
            assert after["collab_workers"] == 1
            assert after["collab_connections_open"] == 0
            assert after["collab_connections_opened_total"] == 1
    finally:
        for server in (one, two):
            if server.proc is not None and server.proc.poll() is None:
                server.kill()
