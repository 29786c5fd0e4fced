"""Store fixtures shared by test modules (import them; the lead owns conftest.py).

``store`` runs a test on MemoryStore, a SQLite file in ``tmp_path`` (SqliteStore) and the real
PostgreSQL; ``sql_store`` on the two SQL ones. PostgreSQL is skipped with a
message when unreachable, except under ``CI=true``, where that is a failure. Each
test run makes a PostgreSQL database of its own and drops it at exit.
Every test gets a unique ``prefix``; name documents ``f"{prefix}-x"`` and they are
deleted from the store afterwards. Import the ``*_fixture`` functions into a test
module to use the fixtures ``prefix``, ``store`` and ``sql_store``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import socket
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from collab.store import Store, store_from_url
from collab.store.sql import SqlStore
from collab.store.sqlite import SqliteStore

#: A store on disk: a SQLite file or PostgreSQL.
DurableStore = SqliteStore | SqlStore


def durable_store(url: str, *, auto_migrate: bool = True) -> DurableStore:
    """The store ``store_from_url`` builds for a SQLite or PostgreSQL URL (not opened)."""
    store = store_from_url(url, auto_migrate=auto_migrate)
    assert isinstance(store, SqliteStore | SqlStore)
    return store


PG_HOST, PG_PORT = "127.0.0.1", 5432
#: The server's maintenance database, from which this run's own database is made.
PG_ADMIN_URL = os.environ.get(
    "COLLAB_TEST_POSTGRES_URL", f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
)
#: A database of this test run's own, created on first use and dropped at exit, so runs
#: (and other checkouts' runs on this machine) never see each other's schema or rows.
PG_DATABASE = f"collab_test_{os.getpid()}_{secrets.token_hex(3)}"
PG_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_DATABASE

_pg_reachable: bool | None = None


def _admin(statement: str) -> None:
    """Run one statement on the maintenance database, from a thread of its own (the
    caller may be inside a running event loop)."""

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    failure: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(lambda: asyncio.run(run()), failure))
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _catch(fn: Callable[[], object], failure: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as exc:
        failure.append(exc)


def _drop_database() -> None:
    with contextlib.suppress(Exception):
        _admin(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')


def require_postgres() -> None:
    """Skip (or, with CI=true, fail) the calling test when PostgreSQL is unreachable.

    The first call that finds the server creates this run's database (:data:`PG_URL`).
    """
    global _pg_reachable
    if _pg_reachable is None:
        try:
            with socket.create_connection((PG_HOST, PG_PORT), timeout=2):
                _pg_reachable = True
        except OSError:
            _pg_reachable = False
        if _pg_reachable:
            _admin(f'CREATE DATABASE "{PG_DATABASE}"')
            atexit.register(_drop_database)
    if not _pg_reachable:
        message = f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: the real database is required)")
        pytest.skip(message)


def store_url(kind: str, tmp_path: Path) -> str:
    """The URL of a fresh store of ``kind`` ("memory", "sqlite" or "postgres")."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'collab.db'}"
    require_postgres()
    return PG_URL


@pytest.fixture(name="prefix")
def prefix_fixture() -> str:
    """A document-name prefix no other test (or process) uses."""
    return f"t{uuid.uuid4().hex[:12]}"


async def _open(kind: str, tmp_path: Path, prefix: str) -> AsyncIterator[Store]:
    url = store_url(kind, tmp_path)
    store: Store = store_from_url(url)
    await store.open()
    try:
        yield store
    finally:
        try:
            for info in await store.documents():
                if info.name.startswith(prefix):
                    await store.delete(info.name)
        finally:
            await store.close()


@pytest.fixture(
    name="store",
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
async def store_fixture(
    request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> AsyncIterator[Store]:
    """An open store of every kind; documents named ``prefix...`` are deleted afterwards."""
    async for opened in _open(request.param, tmp_path, prefix):
        yield opened


@pytest.fixture(
    name="sql_store", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def sql_store_fixture(
    request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> AsyncIterator[DurableStore]:
    """An open SqliteStore, and an open SqlStore on PostgreSQL; ``prefix...`` documents are
    deleted afterwards."""
    async for opened in _open(request.param, tmp_path, prefix):
        assert isinstance(opened, SqliteStore | SqlStore)
        yield opened


async def refuse_inserts(store: DurableStore, doc: str) -> Callable[[], Awaitable[None]]:
    """Make the database itself refuse new log rows for ``doc``; return the undo."""
    info = await store.document(doc)
    assert info is not None
    tag = f"refuse_{uuid.uuid4().hex[:10]}"
    if isinstance(store, SqliteStore):
        database = store.path
        with sqlite3.connect(database) as raw:
            raw.execute(
                f"CREATE TRIGGER {tag} BEFORE INSERT ON updates "
                f"WHEN NEW.doc_id = (SELECT id FROM documents WHERE name = '{doc}') "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )

        async def undo() -> None:
            with sqlite3.connect(database) as raw:
                raw.execute(f"DROP TRIGGER {tag}")

        return undo
    conn = await asyncpg.connect(PG_URL)
    try:
        doc_id = await conn.fetchval("SELECT id FROM documents WHERE name = $1", doc)
        await conn.execute(
            f"CREATE FUNCTION {tag}() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
        )
        await conn.execute(
            f"CREATE TRIGGER {tag} BEFORE INSERT ON updates FOR EACH ROW "
            f"WHEN (NEW.doc_id = {int(doc_id)}) "
            f"EXECUTE FUNCTION {tag}()"
        )
    finally:
        await conn.close()

    async def undo_pg() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f"DROP TRIGGER IF EXISTS {tag} ON updates")
            await conn.execute(f"DROP FUNCTION IF EXISTS {tag}()")
        finally:
            await conn.close()

    return undo_pg
