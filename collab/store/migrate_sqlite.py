"""A SQLite store's schema changes, through SQLAlchemy and Alembic, kept out of the server.

:class:`~collab.store.sqlite.SqliteStore` never imports SQLAlchemy: when its file is
not at the head revision, :meth:`~collab.store.sqlite.SqliteStore.open` runs this
module as a child process::

    python -m collab.store.migrate_sqlite sqlite:///path.db [--refuse-changes]

which does what opening a store does (:func:`collab.store.schema.bring_to_head`;
``--refuse-changes`` is ``auto_migrate=False``) and prints one JSON line:
``{"upgraded": "<log line>"}`` (empty when it changed nothing) or ``{"error":
"<message>"}`` (exit status 1), the same words an in-process open would raise.
:func:`migrate` is ``collab migrate`` on SQLite, in the calling process.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from collab.errors import StoreError
from collab.store import schema
from collab.store.schema import SchemaState
from collab.store.sql import engine_url
from collab.store.sqlite import PRAGMAS, describe, sqlite_path, switch_to_wal

__all__ = ["describe_failure", "is_failure", "main", "migrate", "schema_transaction"]

T = TypeVar("T")


def is_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means the database failed (rather than a bug here)."""
    return isinstance(exc, SQLAlchemyError | OSError | sqlite3.Error)


def describe_failure(exc: BaseException) -> str:
    """One line on what failed: the driver's own error rather than SQLAlchemy's wrapper."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    return describe(exc)


def schema_transaction(url: str, fn: Callable[[sa.Connection], T], *, wal: bool = True) -> T:
    """Run ``fn`` in one SQLite transaction that holds the write lock from its first statement.

    The stdlib driver neither begins a transaction before DDL nor keeps DDL inside
    one, so it is told to leave transactions alone and SQLAlchemy issues ``BEGIN
    IMMEDIATE``: a failed migration then rolls back whole, and a second process
    waits (``busy_timeout``) until the first has committed, then finds the schema at
    head. Only once ``fn`` returned is the file switched to WAL (unless not ``wal``),
    so a database that ``fn`` refuses is left byte for byte as it was. Blocking.
    """
    sqlite_path(url)  # a file URL, as the store takes
    engine = sa.create_engine(engine_url(url).set(drivername="sqlite"), poolclass=sa.pool.NullPool)

    def connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in PRAGMAS:
            cursor.execute(pragma)
        cursor.close()
        dbapi_connection.isolation_level = None

    def begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    sa.event.listen(engine, "connect", connect)
    sa.event.listen(engine, "begin", begin)
    try:
        with engine.begin() as conn:
            result = fn(conn)
        if wal:
            # Accepted: now the store's journal mode, which the file keeps (and which cannot
            # change inside a transaction).
            raw = engine.raw_connection()
            try:
                switch_to_wal(raw.driver_connection)  # type: ignore[arg-type]
            finally:
                raw.close()
        return result
    finally:
        engine.dispose()


def migrate(url: str, apply: bool = True) -> SchemaState:
    """:meth:`collab.store.sql.SqlStore.migrate` for the SQLite file at ``url`` (blocking):
    the state found before upgrading and, with ``apply``, the upgrade."""

    def run(conn: sa.Connection) -> SchemaState:
        state = schema.inspect(conn)
        if apply:
            schema.upgrade(conn, state)
        return state

    return schema_transaction(url, run, wal=apply)


def main(argv: list[str]) -> int:
    """The child process (see the module docstring); returns its exit status."""
    url, refuse = argv[0], "--refuse-changes" in argv[1:]
    try:
        state = schema_transaction(
            url, lambda conn: schema.bring_to_head(conn, auto_migrate=not refuse)
        )
    except StoreError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    except Exception as exc:
        if not is_failure(exc):
            raise
        print(json.dumps({"error": f"open failed: {describe_failure(exc)}"}))
        return 1
    print(json.dumps({"upgraded": schema.upgraded(state)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
