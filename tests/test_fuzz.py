"""Hostile frames against both live servers, beside a normal editor (hypothesis).

The frames come from scripts/fuzz/frames.py (the long run, scripts/fuzz/run.py,
uses the same generator): random bytes, truncated varUints, lengths past the end,
unknown types, text frames, garbage awareness and sync payloads, real updates cut
short or corrupted, frames over the size limit. Each example sends a few of them,
one connection after another, while a normal editor types. Afterwards the server
is still up, no frame made it fail (no 1011, no frame left unanswered), every
connection it closed says why, and the document is exactly the normal editor's
text (which holds everything the editor typed).
"""

from __future__ import annotations

import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Text

from collab.client import connect
from collab.config import Config
from tests.conftest import ServeKind, doc_url, eventually
from tests.servers import RunningServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "fuzz"))

from attack import Outcome, attack
from frames import KINDS, frame

MAX_SIZE = 64 * 1024


@pytest.fixture(name="fuzzed")
async def fuzzed_fixture(config: Config, serve_kind: ServeKind) -> AsyncIterator[RunningServer]:
    async with serve_kind(config.replace(max_message_size=MAX_SIZE)) as server:
        yield server


TOTAL: dict[str, Outcome] = {}


@pytest.mark.timeout(600)
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(rng=st.randoms(use_true_random=False), typed=st.text(min_size=1, max_size=5))
async def test_hostile_frames_leave_the_server_up_and_the_document_intact(
    fuzzed: RunningServer, rng: random.Random, typed: str
) -> None:
    url = doc_url(fuzzed, "fuzzed")
    async with connect(url, saved_acks=True) as editor:
        await editor.wait_synced()
        text = editor.doc.get("text", type=Text)
        before = str(text)
        text.insert(len(text), typed)
        outcome = await attack(url, rng, 12, max_size=MAX_SIZE)
        text.insert(0, typed)  # the editor goes on editing after the attack
        await editor.wait_saved()
        room = fuzzed.rooms.get("fuzzed")
        assert room is not None
        await eventually(lambda: str(room.doc.get("text", type=Text)) == str(text))
        # A cut or corrupted update can still be a valid one (a prefix that decodes): then
        # it is an edit like any other, applied once and sent to the editor too. Either
        # way the editor's own edits are all there, and the server has what it has.
        assert str(text).count(typed) >= before.count(typed) + 2
    assert outcome.hangs == 0, outcome
    assert set(outcome.closes) <= {1002, 1007, 1008, 1009}, outcome  # each with its reason
    TOTAL.setdefault(fuzzed.config.db_url, Outcome()).merge(outcome)


def test_the_generator_makes_every_kind_and_servers_close_with_reasons() -> None:
    """The generator's own reach, cheaply: every kind comes up in a few thousand frames."""
    rng = random.Random(7)
    seen = {frame(rng, MAX_SIZE).kind for _ in range(5000)}
    assert seen == set(KINDS)
