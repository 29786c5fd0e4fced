"""The committed browser bundle (collab/static/app.js) is exactly what client/ builds.

collab ships the built bundle so that `collab serve` needs no Node.js on a fresh
machine; this test keeps that file honest: it rebuilds from client/src with the
esbuild version pinned in client/package-lock.json and compares bytes.
Skips without Node or `npm ci` in client/, fails instead when CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "client"
BUNDLE = ROOT / "collab" / "static" / "app.js"


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: missing dependencies are failures)")
    pytest.skip(reason)


def test_committed_bundle_matches_a_fresh_build(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        _missing("node is not installed")
    installed = CLIENT / "node_modules" / "esbuild" / "package.json"
    if not installed.exists():
        _missing(f"client dependencies missing: run `npm ci` in {CLIENT}")
    pinned = json.loads((CLIENT / "package-lock.json").read_text())["packages"][
        "node_modules/esbuild"
    ]["version"]
    assert json.loads(installed.read_text())["version"] == pinned, "run `npm ci` in client/"

    out = tmp_path / "app.js"
    subprocess.run([str(node), "build.mjs", str(out)], cwd=CLIENT, check=True, timeout=120)
    assert out.read_bytes() == BUNDLE.read_bytes(), (
        "collab/static/app.js is stale: run `npm ci && npm run build` in client/ and commit it"
    )


def test_client_unit_tests_pass() -> None:
    """client/test/*.test.mjs (the splice diff, the line diff, the HTTP fallback's framing),
    run with `node --test`."""
    node = shutil.which("node")
    if node is None:
        _missing("node is not installed")
    if not (CLIENT / "node_modules" / "yjs" / "package.json").exists():
        _missing(f"client dependencies missing: run `npm ci` in {CLIENT}")
    result = subprocess.run(
        [
            str(node),
            "--test",
            *sorted(str(p.relative_to(CLIENT)) for p in CLIENT.glob("test/*.test.mjs")),
        ],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
