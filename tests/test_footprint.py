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

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pycrdt import Text

from collab.client import connect
from collab.policy.tokens import mint
from collab.server import loop_factory
from tests.serverproc import ROOT, ServerProcess, free_port

#: Modules a SQLite server without tokens, scrapes or webhooks has no use for.
HEAVY = (
    *("sqlalchemy", "alembic", "jwt", "cryptography", "asyncpg", "prometheus_client"),
    "urllib.request",  # and http.client: the webhooks' HTTP client
    # History is read on request (the HTTP API, the CLI), never by an editor's edit.
    *("collab.history.versions", "collab.history.export", "collab.history.patch", "difflib"),
    "html",  # pages escape names themselves
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


#: Frees a 4 MiB block, then makes a 1 MiB one, and prints how much that added to
#: the bytes glibc holds in mmapped blocks of their own (``mallinfo2().hblkhd``):
#: the whole MiB when the block went to ``mmap``, nothing when it came from the heap.
_MMAP_PROBE = """\
import ctypes, sys

from collab.server import fix_mmap_threshold

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else False
block = bytearray(4 << 20)
del block
before = libc.mallinfo2().hblkhd
block = bytearray(1 << 20)
print(fixed, libc.mallinfo2().hblkhd - before)
"""


def _mmapped_after_a_large_free(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _MMAP_PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))},
    ).stdout.split()
    return out[0] == "True", int(out[1])


_GLIBC = sys.platform == "linux" and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")


@pytest.mark.skipif(not _GLIBC, reason="glibc only")
def test_the_mmap_threshold_stays_put_after_a_large_block_is_freed() -> None:
    """A large buffer freed still lets the next one go back to the kernel when freed."""
    fixed, mmapped = _mmapped_after_a_large_free("fix")
    assert fixed
    assert mmapped > 1 << 20
    # What it prevents: glibc alone moves the threshold above 1 MiB after the
    # 4 MiB free, and the 1 MiB block comes from the heap.
    fixed, mmapped = _mmapped_after_a_large_free("leave")
    assert not fixed
    assert mmapped == 0


async def test_the_asyncio_loop_leaves_uvloop_out(tmp_path: Path) -> None:
    """``--loop asyncio`` trades uvloop's CPU savings for its memory; auto takes uvloop."""
    assert "uvloop" in await modules_of_a_server(tmp_path, tmp_path / "auto.db")
    assert "serving on" in (log := (tmp_path / "server.log").read_text()) and "loop uvloop" in log
    loaded = await modules_of_a_server(tmp_path, tmp_path / "asyncio.db", "--loop", "asyncio")
    assert "uvloop" not in loaded
    assert "loop asyncio" in (tmp_path / "server.log").read_text()


def test_asking_for_uvloop_without_it_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what `import uvloop` meets uninstalled
    assert loop_factory("auto") is None
    with pytest.raises(ValueError, match="uvloop is not installed"):
        loop_factory("uvloop")
