"""The fan-out benchmark's harness, run briefly against real server processes.

Asserts behaviour only (never timing): every token typed and every cursor move
reaches every other editor of its document exactly once, and collab never echoes
either to its sender. Yjs's reference server (the benchmark's other peer) runs
under the same harness: its deliveries are complete too, so the comparison is
like for like.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "bench"))

from launch import YJS_SERVER, start_server
from load import TYPIST, run_phase, run_typists


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


@pytest.mark.timeout(60)
async def test_harness_delivers_every_cursor_move_once(tmp_path: Path) -> None:
    server = start_server("collab", tmp_path)
    try:
        result = await run_phase(
            server.url,
            docs=2,
            editors_per_doc=3,
            duration=2.0,
            rate=1.0,
            presence_rate=5.0,
            drain_timeout=20,
        )
    finally:
        server.stop()
    assert result.moves == 2 * 3 * 10  # 2 s at 5 moves/s by each of 6 editors
    assert result.edits == 2 * 3 * 2
    # Duplicates first: a doubled broadcast also ends the drain early (arrivals counted).
    assert result.presence_duplicates == 0
    assert result.presence_echoes == 0
    assert result.presence_delivered == result.moves * 2
    assert result.delivered == result.edits * 2


@pytest.mark.timeout(90)
async def test_harness_runs_yjs_reference_server(tmp_path: Path) -> None:
    if not YJS_SERVER.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{YJS_SERVER} is missing (make node-deps)")
        pytest.skip("@y/websocket-server is not installed (make node-deps)")
    server = start_server("yjs", tmp_path)
    try:
        result = await run_phase(
            server.url,
            docs=2,
            editors_per_doc=3,
            duration=2.0,
            rate=2.0,
            presence_rate=2.0,
            drain_timeout=20,
        )
    finally:
        server.stop()
    assert result.edits == 2 * 3 * 4
    # Yjs's server sends every update and awareness change back to its sender too.
    assert result.echoes == result.edits
    assert result.presence_echoes == result.moves
    assert result.delivered == result.edits * 2
    assert result.presence_delivered == result.moves * 2


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["collab", "yjs", "pycrdt"])
async def test_node_typists_deliver_every_edit_once(kind: str, tmp_path: Path) -> None:
    """The saturation phases' Node generator (stock yjs and ws) scores like load.py."""
    if not (TYPIST.parent / "node_modules").exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{TYPIST.parent}/node_modules is missing (make node-deps)")
        pytest.skip("the bench's npm packages are not installed (make node-deps)")
    server = start_server(kind, tmp_path)
    try:
        result = await run_typists(
            server.url, docs=2, editors_per_doc=3, duration=2.0, rate=4.0, drain_timeout=20
        )
    finally:
        server.stop()
    assert result.edits == 2 * 3 * 8
    assert len(result.latencies_ms) == result.delivered == result.edits * 2
    assert result.duplicates == 0
    # collab never sends an edit back to its sender; the two peers do (the drain waits
    # for deliveries only, so the last echoes may come after it).
    if kind == "collab":
        assert result.echoes == 0
    else:
        assert result.edits // 2 < result.echoes <= result.edits


def test_the_median_round_is_the_middle_one_by_cpu_and_ratios_pair_rounds() -> None:
    from fanout import cpu_per_delivery_us, median_round, round_ratios
    from load import PhaseResult

    def run(cpu: float | None) -> PhaseResult:
        return PhaseResult(1, 2, 1.0, delivered=1_000_000, server_cpu_seconds=cpu)

    runs = [run(3.0), run(None), run(1.0), run(2.0)]
    assert median_round(runs, cpu_per_delivery_us) is runs[3]  # 1, 2, 3, then None
    assert median_round(runs[:3], cpu_per_delivery_us) is runs[0]  # 1, 3, then None
    lines = round_ratios(
        "A", {"collab": [run(1.0), run(3.0)], "yjs": [run(2.0), run(2.0)]}, cpu_per_delivery_us
    )
    assert lines == ["phase A: collab / @y/websocket-server's per round: 0.50, 1.50; median 0.50"]
