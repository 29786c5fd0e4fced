"""The fan-out benchmark's harness, run briefly against a real collab server process.

Asserts behaviour only (never timing): every token typed reaches every other editor
of its document exactly once, and collab never echoes an edit to its sender.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "bench"))

from launch import start_server
from load import run_phase


@pytest.mark.timeout(60)
async def test_harness_delivers_every_edit_once(tmp_path: Path) -> None:
    server = start_server("collab", tmp_path)
    try:
        result = await run_phase(
            server.url, docs=2, editors_per_doc=3, duration=2.0, rate=4.0, drain_timeout=20
        )
    finally:
        server.stop()
    assert result.edits == 2 * 3 * 8  # 2 s at 4 edits/s by each of 6 editors: not vacuous
    # Each edit reached both other editors of its document, once, and never its sender.
    # (Not `missing == 0` or `expected == edits * 2`: the harness computes those from
    # the very numbers compared here, so they cannot fail on their own.)
    assert result.delivered == result.edits * 2
    assert result.duplicates == 0
    assert result.echoes == 0
