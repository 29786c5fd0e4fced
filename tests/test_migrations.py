"""Schema migrations: ``SqlStore.open``, ``SqlStore.migrate`` and ``collab migrate``.

Every test runs on a SQLite file and on a PostgreSQL database of its own
(``collab_migrate_test_<random>``, dropped afterwards). The stores "written by the
previous schema" are committed fixtures that collab wrote before Alembic (see
tests/fixtures/make_store_v1.py): a SQLite file, a ``pg_dump``, and
``store-v1.json``, what that code read back from them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pycrdt import Doc, Text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from collab.cli import EXIT_BEHIND
from collab.config import Config
from collab.errors import StoreError
from collab.runtime import open_runtime
from collab.store import NewEntry, schema
from collab.store.sql import engine_url, metadata
from tests.store_fixtures import PG_URL, DurableStore, durable_store, require_postgres

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
ORACLE: dict[str, dict[str, Any]] = json.loads(
    (FIXTURES / "store-v1.json").read_text(encoding="utf-8")
)
ADMIN_URL = make_url(PG_URL).set(database="postgres").render_as_string(hide_password=False)
HEAD = schema.head()


@dataclass
class Database:
    kind: str  # "sqlite" or "postgres"
    url: str
    path: Path | None = None  # the SQLite file, alone in its folder

    @property
    def oracle(self) -> dict[str, Any]:
        """What pre-Alembic collab read back from this kind's fixture."""
        return ORACLE["sqlite" if self.kind == "sqlite" else "postgresql"]

    async def run(self, fn: Callable[[sa.Connection], T]) -> T:
        """``fn`` on a plain connection to the database, in one transaction that commits."""
        engine = create_async_engine(engine_url(self.url), poolclass=sa.pool.NullPool)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    async def contents(self) -> Any:
        """Everything in the database: SQLite's files byte for byte; PostgreSQL's tables."""
        if self.path is not None:
            return {p.name: p.read_bytes() for p in sorted(self.path.parent.iterdir())}

        def read(conn: sa.Connection) -> dict[str, Any]:
            inspector = sa.inspect(conn)
            return {
                table: (
                    [column["name"] for column in inspector.get_columns(table)],
                    sorted(repr(tuple(row)) for row in conn.execute(_all_rows(table))),
                )
                for table in sorted(inspector.get_table_names())
            }

        return await self.run(read)

    async def revision(self) -> str | None:
        return await self.run(lambda conn: MigrationContext.configure(conn).get_current_revision())

    async def schema_version(self) -> int:
        query = sa.text("SELECT version FROM schema_version")
        return int(await self.run(lambda conn: conn.execute(query).scalar_one()))

    async def differences(self) -> list[Any]:
        """What Alembic's autogenerate finds between the database and ``sql.metadata``."""

        def compare(conn: sa.Connection) -> list[Any]:
            opts = {
                "include_name": schema.include_name,
                "compare_type": True,
                "compare_server_default": True,
            }
            return list(compare_metadata(MigrationContext.configure(conn, opts=opts), metadata))

        return await self.run(compare)


def _all_rows(table: str) -> sa.TextClause:
    return sa.text(f'SELECT * FROM "{table}"')


async def _database(kind: str, tmp_path: Path) -> AsyncIterator[Database]:
    if kind == "sqlite":
        folder = tmp_path / "db"
        folder.mkdir()
        yield Database(kind, f"sqlite:///{folder / 'collab.db'}", folder / "collab.db")
        return
    require_postgres()
    name = f"collab_migrate_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        yield Database(kind, url)
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(name="empty", params=KINDS)
async def empty_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database with nothing in it."""
    async for db in _database(request.param, tmp_path):
        yield db


@pytest.fixture(name="v1", params=KINDS)
async def v1_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database as pre-Alembic collab left it: a copy of the committed fixture."""
    async for db in _database(request.param, tmp_path):
        if db.path is not None:
            shutil.copyfile(FIXTURES / "store-v1.db", db.path)
        else:
            conn = await asyncpg.connect(db.url)
            try:
                await conn.execute((FIXTURES / "store-v1.postgresql.sql").read_text("utf-8"))
            finally:
                await conn.close()
        yield db


def collab(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m collab ARGS`` as a user runs it."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    for name in ("COLLAB_DB_URL", "COLLAB_AUTO_MIGRATE"):
        if name not in env:
            environ.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "collab", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=60,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("collab: error: "), result.stderr
    return lines[0]


async def assert_holds_the_v1_documents(store: DurableStore, oracle: dict[str, Any]) -> None:
    """Every document, log entry and snapshot that pre-Alembic collab read back, unchanged."""
    infos = {info.name: info for info in await store.documents()}
    assert sorted(infos) == sorted(oracle)
    for name, want in oracle.items():
        info = infos[name]
        assert (info.created_at, info.updated_at, info.last_seq) == (
            want["created_at"],
            want["updated_at"],
            want["last_seq"],
        )
        entries = await store.entries(name)
        assert [(e.seq, e.at, e.client, e.user, e.update.hex()) for e in entries] == [
            (w["seq"], w["at"], w["client"], w["user"], w["update"]) for w in want["entries"]
        ]
        for entry in entries:
            older = [s for s in want["snapshots"] if s["seq"] <= entry.seq]
            found = await store.snapshot_before(name, entry.seq)
            got = (found.seq, found.at, found.state.hex()) if found else None
            want_snapshot = older[-1] if older else None
            assert got == (
                (want_snapshot["seq"], want_snapshot["at"], want_snapshot["state"])
                if want_snapshot
                else None
            )
        loaded = await store.load(name)
        doc: Doc[Any] = Doc()
        if loaded.snapshot is not None:
            doc.apply_update(loaded.snapshot.state)
        for entry in loaded.entries:
            doc.apply_update(entry.update)
        assert str(doc.get("text", type=Text)) == want["text"]


async def test_a_store_written_before_alembic_is_upgraded_in_place(
    v1: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="collab.store")
    store = durable_store(v1.url)
    await store.open()
    try:
        await assert_holds_the_v1_documents(store, v1.oracle)
        # A new document gets a new id (PostgreSQL: the id sequence came along too).
        assert await store.append([NewEntry("fresh", b"u1", 1.0, "c")]) == [1]
    finally:
        await store.close()
    assert await v1.revision() == HEAD
    assert await v1.differences() == []
    assert f"stamped the pre-Alembic tables as {schema.BASELINE}" in caplog.text


async def test_a_store_at_the_baseline_revision_gets_tombstones_and_keeps_its_data(
    v1: Database,
) -> None:
    """0001 -> 0002 on real data: the v1 fixture stamped 0001, then upgraded to head."""

    def to_baseline(conn: sa.Connection) -> None:
        command.stamp(schema.alembic_config(conn), schema.BASELINE)

    await v1.run(to_baseline)
    assert await v1.revision() == schema.BASELINE
    done = collab("migrate", "--db", v1.url)
    assert done.returncode == 0, done.stderr
    assert "applied 0002 (tombstones: the final state vector of every deleted document)" in (
        done.stdout
    )
    assert await v1.schema_version() == 2
    store = durable_store(v1.url, auto_migrate=False)
    await store.open()
    try:
        await assert_holds_the_v1_documents(store, v1.oracle)
        name = sorted(v1.oracle)[0]
        assert await store.delete(name, state_vector=b"\x01\x05\x02")
        assert [(t.doc, t.state_vector) for t in await store.tombstones()] == [
            (name, b"\x01\x05\x02")
        ]
        rest = {k: v for k, v in v1.oracle.items() if k != name}
        await assert_holds_the_v1_documents(store, rest)
    finally:
        await store.close()


async def test_collab_migrate_upgrades_a_store_written_before_alembic(v1: Database) -> None:
    before = await v1.contents()
    check = collab("migrate", "--check", "--db", v1.url)
    assert check.returncode == EXIT_BEHIND, check
    assert f"to do: stamp the pre-Alembic tables as {schema.BASELINE}" in check.stdout
    assert await v1.contents() == before

    done = collab("migrate", "--db", v1.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"stamped the pre-Alembic tables as {schema.BASELINE}",
        *(f"applied {step}" for step in schema.steps(HEAD, schema.BASELINE)),
        f"the store is now at revision {HEAD} (was: pre-Alembic schema_version 1)",
    ]
    assert await v1.revision() == HEAD

    again = collab("migrate", "--check", "--db", v1.url)
    assert again.returncode == 0, again
    assert "nothing to do" in again.stdout
    store = durable_store(v1.url, auto_migrate=False)  # at head: nothing to refuse
    await store.open()
    try:
        await assert_holds_the_v1_documents(store, v1.oracle)
    finally:
        await store.close()


async def test_a_store_from_a_newer_collab_is_refused_and_left_alone(empty: Database) -> None:
    store = durable_store(empty.url)
    await store.open()
    await store.append([NewEntry("doc", b"u1", 1.0, "c")])
    await store.close()
    await empty.run(
        lambda conn: conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_next'"))
    )
    before = await empty.contents()
    for auto_migrate in (True, False):
        with pytest.raises(StoreError, match=r"'9999_next'.*a newer collab wrote it"):
            await durable_store(empty.url, auto_migrate=auto_migrate).open()
    with pytest.raises(StoreError, match="newer collab"):
        await durable_store(empty.url).migrate()
    for args in (["migrate"], ["migrate", "--check"], ["docs"]):
        line = one_line_error(collab(*args, "--db", empty.url))
        assert "'9999_next', which this collab does not know" in line
    assert await empty.contents() == before


async def test_with_auto_migrate_off_an_old_store_is_refused_and_left_alone(v1: Database) -> None:
    before = await v1.contents()
    with pytest.raises(StoreError, match=r"pre-Alembic schema_version 1.*run `collab migrate`"):
        await durable_store(v1.url, auto_migrate=False).open()
    # The server's path: Config(auto_migrate=False) reaches the store it opens.
    with pytest.raises(StoreError, match="COLLAB_AUTO_MIGRATE=false"):
        async with open_runtime(Config(db_url=v1.url, auto_migrate=False)):
            pass
    line = one_line_error(collab("docs", "--db", v1.url, COLLAB_AUTO_MIGRATE="false"))
    assert "run `collab migrate`" in line
    assert await v1.contents() == before


async def test_an_empty_database_gets_the_head_schema(
    empty: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Even with auto-migrate off: creating tables changes nothing that was there."""
    caplog.set_level(logging.INFO, logger="collab.store")
    store = durable_store(empty.url, auto_migrate=False)
    await store.open()
    try:
        assert await store.append([NewEntry("doc", b"u1", 1.0, "c")]) == [1]
        assert (await store.migrate(apply=False)).up_to_date
    finally:
        await store.close()
    assert await empty.revision() == HEAD
    assert "applied 0001 (baseline: the tables of collab before Alembic)" in caplog.text
    caplog.clear()
    again = durable_store(empty.url)
    await again.open()
    await again.close()
    assert "upgraded" not in caplog.text


async def test_the_migrations_build_exactly_the_tables_the_code_declares(empty: Database) -> None:
    """A change to the tables in collab/store/sql.py without a revision fails here."""
    store = durable_store(empty.url)
    await store.open()
    await store.close()
    assert await empty.differences() == []


async def test_older_collab_is_fenced_off_exactly_when_the_tables_change(empty: Database) -> None:
    """collab before Alembic runs on any database whose ``schema_version`` is 1.

    That is right while the tables are the baseline's, and wrong once a revision
    changed them: such a revision must also set ``schema_version`` to 2, which that
    older code refuses.
    """

    def to_baseline(conn: sa.Connection) -> None:
        command.upgrade(schema.alembic_config(conn), schema.BASELINE)

    await empty.run(to_baseline)
    changed_since_baseline = bool(await empty.differences())
    store = durable_store(empty.url)
    await store.open()
    await store.close()
    assert (await empty.schema_version() > 1) == changed_since_baseline


async def test_processes_starting_at_once_migrate_an_empty_database_once(
    empty: Database,
) -> None:
    stores = [durable_store(empty.url) for _ in range(6)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    assert await empty.revision() == HEAD
    assert await empty.differences() == []


async def test_a_database_with_collab_tables_but_no_version_is_refused(empty: Database) -> None:
    await empty.run(lambda conn: conn.execute(sa.text("CREATE TABLE documents (id INTEGER)")))
    before = await empty.contents()
    with pytest.raises(StoreError, match=r"collab's tables \(documents\) but no schema version"):
        await durable_store(empty.url).open()
    assert await empty.contents() == before


async def test_a_schema_version_no_collab_wrote_is_refused(v1: Database) -> None:
    await v1.run(lambda conn: conn.execute(sa.text("UPDATE schema_version SET version = 7")))
    before = await v1.contents()
    with pytest.raises(StoreError, match="schema_version 7, which no collab wrote"):
        await durable_store(v1.url).open()
    assert await v1.contents() == before


async def test_checking_or_refusing_leaves_a_sqlite_file_in_its_journal_mode(
    tmp_path: Path,
) -> None:
    """WAL is set once a store is accepted, not by ``--check`` or a refusal."""
    path = tmp_path / "rollback.db"
    shutil.copyfile(FIXTURES / "store-v1.db", path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    before = path.read_bytes()
    assert collab("migrate", "--check", "--db", f"sqlite:///{path}").returncode == EXIT_BEHIND
    with pytest.raises(StoreError, match="run `collab migrate`"):
        await durable_store(f"sqlite:///{path}", auto_migrate=False).open()
    assert path.read_bytes() == before
    assert collab("migrate", "--db", f"sqlite:///{path}").returncode == 0
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_collab_migrate_failures_are_one_line(tmp_path: Path) -> None:
    line = one_line_error(collab("migrate", "--db", f"sqlite:///{tmp_path}/no/such/dir.db"))
    assert "unable to open database file" in line
    assert "keeps nothing on disk" in one_line_error(collab("migrate", "--db", "memory://"))


def test_the_head_read_from_the_files_is_alembics() -> None:
    """schema.quick_state trusts this parse; Alembic must agree on every release."""
    assert schema.head_from_files() == schema.head()


def test_opening_a_sqlite_store_imports_neither_alembic_nor_sqlalchemy(tmp_path: Path) -> None:
    """Alembic (with Mako, Pygments) and SQLAlchemy are ~25 MiB of a server's memory: a new
    or older store is brought to head by a child process, one at head in plain SQL."""
    code = (
        "import asyncio, sys\n"
        "from collab.store import store_from_url\n"
        "async def main():\n"
        f"    store = store_from_url('sqlite:///{tmp_path / 'h.db'}')\n"
        "    await store.open()\n"
        "    await store.append([])\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
        "print(sorted({'alembic', 'sqlalchemy'} & set(sys.modules)))\n"
    )
    run = [sys.executable, "-c", code]
    first = subprocess.run(run, capture_output=True, text=True, check=True, timeout=60)
    assert first.stdout.strip() == "[]"  # an empty database: Alembic created the tables
    with sqlite3.connect(tmp_path / "h.db") as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (schema.head(),)
        ]
    again = subprocess.run(run, capture_output=True, text=True, check=True, timeout=60)
    assert again.stdout.strip() == "[]"
