"""``python -m collab`` as a user runs it: a subprocess against a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from collab.config import Config
from collab.history import versions as history
from collab.store import store_from_url
from tests.history_fixtures import Editors

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["serve", "docs", "history", "show", "diff", "export", "import", "delete", "migrate"]
TEXT = "Title\n\nnaïve 中文 😀 e\u0301"


@dataclass
class Db:
    url: str
    texts: dict[int, str]
    versions: list[history.Version]


def run(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    environ.pop("COLLAB_DB_URL", None)
    if env is None:
        environ.pop("COLLAB_AUTH_SECRET", None)
    return subprocess.run(
        [sys.executable, "-m", "collab", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env=environ,
        timeout=60,
        check=False,
    )


def ok(*args: str) -> bytes:
    result = run(*args)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def failed(*args: str, code: int = 1) -> str:
    result = run(*args)
    assert result.returncode == code, result
    message = result.stderr.decode()
    assert "Traceback" not in message
    return message


async def _fill(url: str) -> Db:
    store = store_from_url(url)
    await store.open()
    try:
        editors = Editors(store, "notes", 2, ["alice", "bob"])
        await editors.insert(0, 0, "Title\n\n中文")
        editors.sync(1)
        await editors.insert(1, 100, " 😀 e\u0301", gap=3600)
        await editors.insert(0, 7, "naïve ", gap=7200)
        await Editors(store, "other", 1, [None]).insert(0, 0, "x")
        found = await history.versions(store, Config(), "notes")
        return Db(url, editors.texts, found)
    finally:
        await store.close()


@pytest.fixture(name="db")
def db_fixture(tmp_path: Path) -> Db:
    return asyncio.run(_fill(f"sqlite:///{tmp_path / 'collab.db'}"))


def test_help_of_every_command() -> None:
    top = ok("--help").decode()
    for command in COMMANDS:
        assert command in top
        text = ok(command, "--help").decode()
        assert text.startswith(f"usage: collab {command}")
        assert "--db" in text
    assert "required: COMMAND (see collab --help)" in failed(code=2)  # no command, one line
    assert "invalid choice" in failed("frobnicate", code=2)


def test_docs_history_show(db: Db) -> None:
    assert [line.split()[0] for line in ok("docs", "--db", db.url).decode().splitlines()] == [
        "NAME",
        "notes",
        "other",
    ]
    names = [d["name"] for d in json.loads(ok("docs", "--json", "--db", db.url))]
    assert names == ["notes", "other"]

    listed = json.loads(ok("history", "notes", "--json", "--db", db.url))
    assert listed == [v.to_json() for v in db.versions]
    assert [v["id"] for v in listed] == [1, 2, 3]
    table = ok("history", "notes", "--db", db.url).decode().splitlines()
    assert table[0].split() == ["VERSION", "AT", "SIZE", "CONTRIBUTORS"]
    assert table[2].split()[0] == "2" and table[2].endswith("bob")

    assert ok("show", "notes", "--db", db.url) == TEXT.encode()
    assert ok("show", "notes", "--at", "1", "--db", db.url) == db.texts[1].encode()
    at = history.iso(db.versions[1].at + 1)
    assert ok("show", "notes", "--at", at, "--db", db.url) == db.texts[2].encode()


def test_diff(db: Db) -> None:
    out = ok("diff", "notes", "1", "now", "--db", db.url).decode()
    assert out.splitlines()[:2] == ["--- notes@1", "+++ notes@3"]
    assert "-中文" in out and "+naïve 中文 😀 e\u0301" in out
    assert ok("diff", "notes", "2", "2", "--db", db.url) == b""


def test_exports(db: Db, tmp_path: Path) -> None:
    assert ok("export", "notes", "--format", "txt", "--db", db.url) == TEXT.encode()
    assert ok("export", "notes", "--db", db.url) == TEXT.encode()
    assert ok("export", "notes", "--at", "1", "--db", db.url) == db.texts[1].encode()
    md = ok("export", "notes", "--format", "md", "--db", db.url).decode()
    assert md.startswith('---\ndoc: "notes"\nversion: 3\n') and md.endswith("---\n" + TEXT)
    value = json.loads(ok("export", "notes", "--format", "json", "--db", db.url))
    assert value["text"] == TEXT and value["roots"] == {"text": TEXT}
    assert value["contributors"] == ["alice"]
    target = tmp_path / "out.txt"
    assert ok("export", "notes", "-o", str(target), "--db", db.url) == b""
    assert target.read_bytes() == TEXT.encode()
    assert "archive is JSON only" in failed("export", "notes", "--all-history", "--db", db.url)


def test_archive_into_an_empty_database(db: Db, tmp_path: Path) -> None:
    archive = tmp_path / "notes.json"
    archive.write_bytes(ok("export", "notes", "--all-history", "--format", "json", "--db", db.url))
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    result = run("import", str(archive), "--db", empty)
    assert result.returncode == 0 and b"imported notes" in result.stderr
    assert ok("export", "notes", "--db", empty) == TEXT.encode()
    assert json.loads(ok("history", "notes", "--json", "--db", empty)) == [
        v.to_json() for v in db.versions
    ]
    assert "already exists" in failed("import", str(archive), "--db", empty)
    ok("import", str(archive), "--as", "copy", "--db", empty)
    assert ok("show", "copy", "--at", "2", "--db", empty) == db.texts[2].encode()
    (tmp_path / "bad.json").write_text("{nope")
    assert "not JSON" in failed("import", str(tmp_path / "bad.json"), "--db", empty)
    assert "No such file" in failed("import", str(tmp_path / "absent.json"), "--db", empty)


def test_delete(db: Db) -> None:
    assert "without --yes" in failed("delete", "notes", "--db", db.url)
    assert ok("show", "notes", "--db", db.url) == TEXT.encode()
    ok("delete", "notes", "--yes", "--db", db.url)
    assert "no document named 'notes'" in failed("show", "notes", "--db", db.url)
    assert "no document named 'notes'" in failed("delete", "notes", "--yes", "--db", db.url)


def test_errors_are_one_line_without_traceback(db: Db) -> None:
    for args in (
        ["show", "missing"],
        ["history", "missing"],
        ["diff", "missing", "1", "2"],
        ["export", "missing", "--format", "md"],
    ):
        message = failed(*args, "--db", db.url)
        assert message == "collab: error: no document named 'missing'\n"
    assert "no version 9" in failed("show", "notes", "--at", "9", "--db", db.url)
    assert "ISO-8601" in failed("show", "notes", "--at", "yesterday", "--db", db.url)
    assert "invalid document name" in failed("show", "a//b", "--db", db.url)
    assert "unsupported database URL" in failed("docs", "--db", "nosuch://x")


async def _fill_prefixed(url: str) -> None:
    store = store_from_url(url)
    await store.open()
    try:
        for name in ("team-a/notes", "team-b/notes", "json:notebook:1234", "a@b"):
            editors = Editors(store, name, 1, [None])
            await editors.insert(0, 0, f"{name} v1")
            await editors.insert(0, 0, "+", gap=3600)
    finally:
        await store.close()


def test_names_with_slashes_colons_and_at_signs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'prefixed.db'}"
    asyncio.run(_fill_prefixed(url))
    names = [d["name"] for d in json.loads(ok("docs", "--json", "--db", url))]
    assert sorted(names) == ["a@b", "json:notebook:1234", "team-a/notes", "team-b/notes"]
    for name in names:
        assert ok("show", name, "--db", url) == f"+{name} v1".encode()
    assert ok("show", "team-b/notes", "--at", "1", "--db", url) == b"team-b/notes v1"
    assert [v["id"] for v in json.loads(ok("history", "team-a/notes", "--json", "--db", url))] == [
        1,
        2,
    ]
    diff = ok("diff", "team-a/notes", "1", "2", "--db", url).decode()
    assert diff.splitlines()[:2] == ["--- team-a/notes@1", "+++ team-a/notes@2"]

    # Exported into a directory, each file is named after its own document.
    out = tmp_path / "exports"
    out.mkdir()
    for name in ("team-a/notes", "team-b/notes", "json:notebook:1234"):
        result = run("export", name, "--format", "md", "-o", str(out), "--db", url)
        assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in out.iterdir()) == [
        "json%3Anotebook%3A1234.md",
        "team-a%2Fnotes.md",
        "team-b%2Fnotes.md",
    ]
    assert (out / "team-b%2Fnotes.md").read_text("utf-8").endswith("---\n+team-b/notes v1")
    archive = tmp_path / "team-a.json"
    ok(
        "export",
        "team-a/notes",
        "--all-history",
        "--format",
        "json",
        "-o",
        str(archive),
        "--db",
        url,
    )
    ok("import", str(archive), "--as", "team-c/notes", "--db", url)
    assert ok("show", "team-c/notes", "--at", "1", "--db", url) == b"team-a/notes v1"

    ok("delete", "team-a/notes", "--yes", "--db", url)
    assert "no document named 'team-a/notes'" in failed("show", "team-a/notes", "--db", url)
    assert ok("show", "team-b/notes", "--db", url) == b"+team-b/notes v1"


@pytest.mark.parametrize(
    "name", ["team-a/", "/notes", "a//b", "a/../b", "a%2Fb", "bad\tname", "bad\nname", "é"]
)
def test_a_bad_name_is_refused_with_one_line(tmp_path: Path, name: str) -> None:
    message = failed("show", name, "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert message.startswith("collab: error: invalid document name: ")
    assert message.count("\n") == 1 and message.endswith(f"(got {name!r})\n")


def test_token_prints_one_token_the_server_accepts() -> None:
    from collab.errors import Unauthorized
    from collab.policy.tokens import Verifier

    secret = "cli-secret-0123456789abcdef0123456789abcdef"
    out = ok(
        "token", "team-a/*", "--mode", "write", "--ttl", "2h", "--user", "ann", "--secret", secret
    )
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    grant = Verifier(secret).verify(out.decode().strip(), time.time())
    assert (grant.doc, grant.mode, grant.user) == ("team-a/*", "write", "ann")
    assert grant.expires_at is not None and 7100 < grant.expires_at - time.time() <= 7201
    with pytest.raises(Unauthorized):
        Verifier(secret + "x").verify(out.decode().strip(), time.time())
    # The secret from the environment; --ttl 0: no expiry.
    env_out = run(
        "token", "notes", "--mode", "read", "--ttl", "0", env={"COLLAB_AUTH_SECRET": secret}
    )
    assert env_out.returncode == 0, env_out.stderr
    assert Verifier(secret).verify(env_out.stdout.decode().strip(), 2e10).expires_at is None
    assert "no secret" in failed("token", "notes", "--mode", "read", code=1)
    assert "not a duration" in failed(
        "token", "n", "--mode", "read", "--ttl", "x", "--secret", "s", code=1
    )
    assert "invalid choice" in failed("token", "n", "--mode", "owner", "--secret", "s", code=2)


def test_token_signs_with_an_es256_private_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from collab.policy.tokens import Verifier

    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    out = ok("token", "notes", "--mode", "admin", "--private-key", str(pem))
    assert (
        Verifier(public_key=public.decode()).verify(out.decode().strip(), time.time()).mode
        == "admin"
    )
    missing = failed("token", "notes", "--mode", "read", "--private-key", str(tmp_path / "no"))
    assert "no" in missing and "Traceback" not in missing
    pem.write_text("not a key")
    assert "cannot sign" in failed("token", "notes", "--mode", "read", "--private-key", str(pem))
