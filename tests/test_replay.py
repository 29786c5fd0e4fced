"""collab.replay: snapshot + log entries -> Doc, and a clear error for bad bytes."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Text

from collab.errors import StoreError
from collab.store import LogEntry, Snapshot
from collab.store.replay import replay


def test_snapshot_then_entries_in_order() -> None:
    source: Doc[Any] = Doc()
    text = source.get("text", type=Text)
    text.insert(0, "snap")
    snapshot = Snapshot(seq=1, state=source.get_update(), at=0.0)
    entries = []
    for seq, word in enumerate([" and", " log", " ✓"], start=2):
        before = source.get_state()
        text.insert(len(text), word)
        entries.append(LogEntry(seq=seq, update=source.get_update(before), at=0.0, client="c"))
    assert str(replay(snapshot, entries).get("text", type=Text)) == "snap and log ✓"
    assert str(replay(None, []).get("text", type=Text)) == ""


def test_bytes_that_are_not_an_update_name_their_seq() -> None:
    bad = LogEntry(seq=7, update=b"\x13\x37", at=0.0, client="c")
    with pytest.raises(StoreError, match="log entry 7"):
        replay(None, [bad])
