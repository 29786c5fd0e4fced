"""The store's schema, versioned by Alembic and driven from code (no alembic.ini at run time).

The revisions are in ``collab/store/migrations/versions/``, shipped inside the
package. :func:`inspect` says where a database stands against them and
:func:`upgrade` brings it to the head revision, on a caller's connection:

* a database with no tables -> every revision from the first;
* a database that pre-Alembic collab wrote (its ``schema_version`` table at 1 and no
  ``alembic_version``) -> stamped with :data:`BASELINE`, whose tables it already has,
  then the revisions after it; its rows are never copied, moved or rebuilt;
* a database at an older revision -> the revisions after it;
* a database at a revision this code does not know (written by a newer collab), or
  with collab's tables but no version at all -> :class:`~collab.errors.StoreError`,
  and nothing is touched.

Both functions take a synchronous connection *inside a transaction the caller owns*
and that holds the caller's schema lock (PostgreSQL: an advisory lock; SQLite:
``BEGIN IMMEDIATE``), so two processes never migrate at once and a failed upgrade
rolls back whole: both databases run DDL inside transactions. See
:meth:`collab.store.sql.SqlStore.migrate`, and docs/storage.md for how to write a
revision.
"""

from __future__ import annotations

import ast
import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from collab.errors import StoreError

if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic (with Mako and Pygments, ~11 MiB of a server's memory) and SQLAlchemy are
# imported only by the functions that need them: a store already at head is recognised
# without either (quick_state, on the rows its store read in its own way).

#: Alembic's script directory: env.py, script.py.mako and versions/.
MIGRATIONS = Path(__file__).with_name("migrations")

#: The revision whose tables are exactly those of pre-Alembic collab's ``schema_version`` 1.
BASELINE = "0001"

#: Tables that make a database recognisably collab's.
COLLAB_TABLES = frozenset({"documents", "updates", "snapshots"})

#: Tables the migrations own but the code's metadata does not describe (the fence for
#: pre-Alembic collab, see versions/0001_baseline.py); comparisons leave them out.
UNMODELLED_TABLES = frozenset({"schema_version"})


@dataclass(frozen=True, slots=True)
class Step:
    """One revision: its id and the first line of its docstring."""

    revision: str
    message: str

    def __str__(self) -> str:
        return f"{self.revision} ({self.message})"


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against this code's revisions."""

    #: The database's revision; ``None`` for one without (empty, or pre-Alembic).
    current: str | None
    #: The newest revision this code has.
    head: str
    #: What an upgrade applies to reach ``head``, oldest first; empty when up to date.
    pending: tuple[Step, ...]
    #: Written by pre-Alembic collab: :func:`upgrade` stamps it :data:`BASELINE` first.
    legacy: bool = False

    @property
    def up_to_date(self) -> bool:
        """At head and stamped: an upgrade would change nothing."""
        return not self.pending and not self.legacy

    def changes(self, *, done: bool = False) -> list[str]:
        """What an upgrade does (or, with ``done``, did), in order, one line each."""
        stamp, apply = ("stamped", "applied") if done else ("stamp", "apply")
        first = [f"{stamp} the pre-Alembic tables as {BASELINE}"] if self.legacy else []
        return first + [f"{apply} {step}" for step in self.pending]

    @property
    def empty(self) -> bool:
        """No collab tables yet: an upgrade only creates, it changes nothing that exists."""
        return self.current is None and not self.legacy

    def where(self) -> str:
        """The current revision in words, for messages."""
        if self.legacy:
            return "pre-Alembic schema_version 1"
        if self.current is None:
            return "an empty database"
        return f"revision {self.current}"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration for collab's migrations, built in code.

    With ``connection``, env.py runs every command on it (inside the caller's
    transaction); without, on the URL given as ``-x db=URL`` (developers' commands).
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


@functools.cache
def head_from_files() -> str | None:
    """The head revision read from versions/*.py without Alembic, or None if unsure.

    Each revision file assigns ``revision`` and ``down_revision`` at module level
    (docs/storage.md); the head is the one revision no other names as its parent.
    Anything else (a merge revision, several heads, a file that does not parse)
    gives None, and callers ask Alembic instead.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        if path.name == "__init__.py":
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            return None
        found: dict[str, object] = {}
        for node in tree.body:
            target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            value = getattr(node, "value", None)
            if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
                found[target.id] = value.value
        revision, parent = found.get("revision"), found.get("down_revision", ...)
        if not isinstance(revision, str) or not (parent is None or isinstance(parent, str)):
            return None
        revisions.add(revision)
        if parent is not None:
            parents.add(parent)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def quick_state(versions: Sequence[str] | None) -> SchemaState | None:
    """The state of a database already at head, found without Alembic; None otherwise.

    ``versions``: the rows of its ``alembic_version`` table (``None`` when it has no
    such table), read by the caller. Exactly one row naming the head revision of
    :func:`head_from_files` means up to date (what :func:`inspect` would say). For
    anything else, call :func:`inspect`.
    """
    newest = head_from_files()
    if newest is None or versions is None:
        return None  # unsure, or an empty or pre-Alembic database: inspect says what to do
    if list(versions) != [newest]:
        return None
    return SchemaState(newest, newest, ())


def alembic_versions(conn: sa.Connection) -> list[str] | None:
    """The rows of ``alembic_version`` through SQLAlchemy, for :func:`quick_state`."""
    import sqlalchemy as sa

    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return [row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]


def bring_to_head(conn: sa.Connection, *, auto_migrate: bool) -> SchemaState:
    """What opening a store does with its schema, on ``conn`` inside the caller's
    schema transaction (see the module docstring): nothing when it is at head;
    tables for an empty database; an upgrade for an older one, unless not
    ``auto_migrate`` (then ``StoreError`` saying to run ``collab migrate``).

    Returns the state found; :func:`upgraded` says what changed. Raises
    ``StoreError`` as :func:`inspect` and :func:`upgrade` do.
    """
    state = quick_state(alembic_versions(conn)) or inspect(conn)
    if state.up_to_date:
        return state
    # An empty database only gets tables: there is nothing of the operator's to change.
    if not auto_migrate and not state.empty:
        raise StoreError(
            f"the store's schema is older than this collab: it is at {state.where()}, "
            f"this collab needs revision {state.head} (to do: {'; '.join(state.changes())}). "
            "Automatic upgrades are off (COLLAB_AUTO_MIGRATE=false): run `collab migrate`, "
            "then start again"
        )
    upgrade(conn, state)
    return state


def upgraded(state: SchemaState) -> str:
    """The log line for a :func:`bring_to_head` that found ``state``; "" if it changed nothing."""
    if state.up_to_date:
        return ""
    return (
        f"upgraded the store's schema from {state.where()} to revision {state.head}: "
        + "; ".join(state.changes(done=True))
    )


def head() -> str:
    """The newest revision. The revisions form one line: two heads is a bug in them."""
    heads = _script().get_heads()
    if len(heads) != 1:  # pragma: no cover - a broken release, caught by the tests
        raise StoreError(f"collab's migrations have {len(heads)} heads: {heads}")
    return heads[0]


def steps(upper: str, lower: str) -> tuple[Step, ...]:
    """The revisions after ``lower`` (``"base"``: from the first) up to ``upper``, oldest first."""
    found = []
    for script in _script().iterate_revisions(upper, lower):
        assert script is not None
        doc = (script.doc or "").strip().splitlines()
        found.append(Step(script.revision, doc[0].rstrip(".") if doc else ""))
    return tuple(reversed(found))


def inspect(conn: sa.Connection) -> SchemaState:
    """Where the database behind ``conn`` stands. Reads only.

    Raises ``StoreError`` for a database this code must not touch: one at a revision
    it does not know (a newer collab wrote it), one at several revisions, one with a
    ``schema_version`` other than 1, or one with collab's tables and no version.
    """
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext

    newest = head()
    current = MigrationContext.configure(conn).get_current_heads()
    if not current:
        tables = set(sa.inspect(conn).get_table_names())
        if "schema_version" in tables:
            version = conn.execute(sa.text("SELECT max(version) FROM schema_version")).scalar()
            # None: pre-Alembic collab created its tables but died before the row; it
            # would have written 1 next, so the tables are version 1's.
            if version not in (None, 1):
                raise StoreError(
                    f"the database has schema_version {version}, which no collab wrote; "
                    "refusing to touch it"
                )
            return SchemaState(None, newest, steps(newest, BASELINE), legacy=True)
        if tables & COLLAB_TABLES:
            found = ", ".join(sorted(tables & COLLAB_TABLES))
            raise StoreError(
                f"the database has collab's tables ({found}) but no schema version: "
                "not a store collab wrote; refusing to touch it"
            )
        return SchemaState(None, newest, steps(newest, "base"))
    if len(current) > 1:
        raise StoreError(f"the database is at several schema revisions at once: {current}")
    (revision,) = current
    known = {script.revision for script in _script().walk_revisions()}
    if revision not in known:
        raise StoreError(
            f"the database is at schema revision {revision!r}, which this collab does not "
            f"know (its newest is {newest!r}): a newer collab wrote it. Upgrade collab; "
            "the database was not changed"
        )
    return SchemaState(revision, newest, steps(newest, revision))


def upgrade(conn: sa.Connection, state: SchemaState) -> None:
    """Apply ``state.pending`` (from :func:`inspect` on this same ``conn`` and transaction).

    Raises ``StoreError`` when a revision fails; the caller's transaction must then
    roll back, which undoes every revision applied so far.
    """
    if state.up_to_date:
        return
    from alembic import command
    from alembic.util.exc import CommandError

    config = alembic_config(conn)
    try:
        if state.legacy:
            command.stamp(config, BASELINE)
        command.upgrade(config, state.head)
    except CommandError as exc:
        raise StoreError(f"schema upgrade failed: {exc}") from exc


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name`` hook: compare every table but :data:`UNMODELLED_TABLES`."""
    return not (type_ == "table" and name in UNMODELLED_TABLES)


def run_env(metadata: sa.MetaData) -> None:
    """The body of migrations/env.py: run the command Alembic is executing.

    On the connection in ``config.attributes["connection"]`` when collab calls, or
    on ``-x db=URL`` (any URL :func:`collab.store.sql.engine_url` accepts) when a
    developer runs ``alembic``. ``metadata`` (the code's tables) is what
    ``alembic revision --autogenerate`` compares the database with.
    """
    from alembic import context
    from alembic.util.exc import CommandError

    if context.is_offline_mode():
        raise CommandError("collab's migrations run against a database, not as SQL scripts")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_migrations(connection, metadata)
        return
    url = context.get_x_argument(as_dictionary=True).get("db")
    if not url:
        raise CommandError("name the database: alembic -x db=sqlite:///scratch.db ...")
    asyncio.run(_run_on_url(url, metadata))


async def _run_on_url(url: str, metadata: sa.MetaData) -> None:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    from collab.store.sql import engine_url

    engine = create_async_engine(engine_url(url), poolclass=sa.pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run_migrations, metadata)
    finally:
        await engine.dispose()


def _run_migrations(connection: sa.Connection, metadata: sa.MetaData) -> None:
    from alembic import context

    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=include_name,
        compare_type=True,
        # SQLite cannot ALTER most things: autogenerate writes copy-and-move batches.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
