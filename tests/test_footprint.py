"""What a serving process loads: the libraries it does not need stay out of its memory.

Issue 11 asks for a server no heavier than pycrdt-websocket. A ``collab serve``
on SQLite without authentication must not import PyJWT (and cryptography),
asyncpg or prometheus_client: with SQLAlchemy and Alembic they were most of its
RSS (docs/performance.md, "Memory").

The server runs as a real process with a ``sitecustomize`` module on its
``PYTHONPATH`` that writes ``sys.modules`` when the interpreter exits; the test
edits a document through it, stops it with SIGTERM and reads the list.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from pycrdt import Text

from collab.client import connect
from collab.policy.tokens import mint
from tests.serverproc import ROOT, ServerProcess, free_port

#: Modules a SQLite server without tokens, scrapes or webhooks has no use for.
HEAVY = (
    *("sqlalchemy", "alembic", "jwt", "cryptography", "asyncpg", "prometheus_client"),
    "urllib.request",  # and http.client: the webhooks' HTTP client
)

_DUMP = """\
import atexit, os, sys

def _dump():
    with open(os.environ["COLLAB_TEST_MODULES"], "w") as out:
        out.write("\\n".join(sorted(sys.modules)))

atexit.register(_dump)
"""


async def modules_of_a_server(
    tmp_path: Path, db: Path, *flags: str, token: str | None = None
) -> set[str]:
    """The modules a ``collab serve`` on ``db`` (with ``flags``) had loaded once
    it had served one edit (by an editor holding ``token``) and stopped (SIGTERM)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_DUMP)
    dump = tmp_path / "modules.txt"
    dump.unlink(missing_ok=True)
    server = ServerProcess(
        f"sqlite:///{db}",
        free_port(),
        tmp_path / "server.log",
        flags=flags,
        env={"PYTHONPATH": f"{site}:{ROOT}", "COLLAB_TEST_MODULES": str(dump)},
    )
    await server.start()
    try:
        url = server.url("footprint") + (f"?token={token}" if token else "")
        async with connect(url, saved_acks=True) as client:
            await client.wait_synced()
            client.doc.get("text", type=Text).insert(0, "hello")
            await client.wait_saved()
    finally:
        assert await server.terminate() == 0, (tmp_path / "server.log").read_text()
    return set(dump.read_text().split())


@pytest.mark.parametrize("store", ["new", "existing"])
async def test_a_sqlite_server_without_tokens_loads_no_heavy_library(
    store: str, tmp_path: Path
) -> None:
    db = tmp_path / "footprint.db"
    if store == "existing":  # created (and migrated) by an earlier server
        await modules_of_a_server(tmp_path, db)
    loaded = await modules_of_a_server(tmp_path, db)
    assert sorted(loaded & set(HEAVY)) == []
    with sqlite3.connect(db) as conn:  # the edit went through the store it did load
        assert conn.execute("SELECT last_seq FROM documents WHERE name = 'footprint'").fetchone()[
            0
        ] >= (2 if store == "existing" else 1)


async def test_tokens_load_pyjwt(tmp_path: Path) -> None:
    """The dump sees what a server does load: PyJWT once it verified a token."""
    secret = "s" * 32
    token = mint(secret, "*", "write", now=time.time(), ttl=60)
    loaded = await modules_of_a_server(
        tmp_path, tmp_path / "auth.db", "--auth-secret", secret, token=token
    )
    assert "jwt" in loaded
