"""``collab restore DOC --to N``: through a running server, or straight into the store.

Run as a user runs it (``python -m collab`` in a subprocess). Without ``--server``
the restore is written to the store, unless a server listens at the configured
address, which is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text

from collab import client
from collab.config import Config
from collab.history import versions as history
from collab.store import NewEntry, Store, store_from_url
from tests.conftest import ServeKind
from tests.serverproc import ROOT, free_port


async def collab(*args: str, port: int) -> tuple[int, str, str]:
    """Run ``python -m collab ARGS`` with COLLAB_PORT=port; (exit code, stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLLAB_HOST": "127.0.0.1"}
    env["COLLAB_PORT"] = str(port)
    env.pop("COLLAB_DB_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "collab",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def write_versions(store: Store, doc: str, pieces: list[str]) -> None:
    """One version per piece (appended to the text), two minutes apart."""
    editor: Doc[Any] = Doc()
    text = editor.get("text", type=Text)
    for index, piece in enumerate(pieces):
        before = editor.get_state()
        text += piece
        at = 1_700_000_000.0 + 120 * index
        await store.append([NewEntry(doc, editor.get_update(before), at, "c", "writer")])


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[str]:
    url = f"sqlite:///{tmp_path / 'collab.db'}"
    store = store_from_url(url)
    await store.open()
    await write_versions(store, "notes", ["one", " two", " three"])
    await store.close()
    yield url


async def test_restore_into_the_store_and_back(db: str) -> None:
    port = free_port()  # nothing listens there
    code, _, err = await collab(
        "restore", "notes", "--to", "1", "--author", "ada", "--db", db, port=port
    )
    assert code == 0, err
    assert "restored notes to version 1 (seq 4)" in err
    code, out, _ = await collab("show", "notes", "--db", db, port=port)
    assert out == "one"
    code, out, _ = await collab("history", "notes", "--json", "--db", db, port=port)
    last = json.loads(out)[-1]
    assert (last["id"], last["restored_from"], last["contributors"]) == (4, 1, ["ada"])
    code, _, err = await collab("restore", "notes", "--to", "3", "--db", db, port=port)
    assert code == 0, err
    _, out, _ = await collab("show", "notes", "--db", db, port=port)
    assert out == "one two three"
    # Already equal: nothing is recorded.
    code, _, err = await collab("restore", "notes", "--to", "3", "--db", db, port=port)
    assert code == 0 and "(seq 5)" in err


async def test_restore_into_the_store_is_refused_while_a_server_listens(db: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code, _, err = await collab("restore", "notes", "--to", "1", "--db", db, port=port)
    assert code == 1
    assert f"a server is listening on 127.0.0.1:{port}" in err and "--server" in err
    _, out, _ = await collab("show", "notes", "--db", db, port=free_port())
    assert out == "one two three"


async def test_restore_through_a_server(serve_kind: ServeKind, db: str) -> None:
    config = Config(port=0, db_url=db, ping_interval=None, unload_grace_seconds=0.2)
    async with serve_kind(config) as server:
        url = f"http://127.0.0.1:{server.port}"
        await client.edit(url, "notes", insert=(0, ">"), author="live")
        code, _, err = await collab(
            "restore", "notes", "--to", "3", "--server", url, "--author", "ada", port=free_port()
        )
        assert code == 0, err
        assert "restored notes to version 3 (seq 5)" in err
        text, _ = await history.text_at(server.store, server.config, "notes")
        assert text == "one two three"
        code, _, err = await collab("restore", "notes", "--to", "99", "--server", url, port=0)
        assert code == 1 and "no version 99" in err
