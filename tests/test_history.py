"""History on every store kind: versions, texts, diffs, attribution, retention, archives.

The property test drives several real pycrdt editors (emoji, CJK, combining
marks), logs their updates with random timestamps and snapshot points, and
checks history against what the server's Doc held after every seq.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab.config import Config, Retention
from collab.errors import DocumentExists, InvalidRequest, UnknownDocument
from collab.history import versions as history
from collab.history.export import archive, export, file_stem, import_archive
from collab.history.versions import At
from collab.store import LogEntry, Store
from collab.store.memory import MemoryStore
from tests.history_fixtures import Editors
from tests.test_names import valid_names

CONFIG = Config(version_gap_seconds=60.0, version_max_updates=3)

PIECES = ["a", "b ", "\n", "😀", "👩‍💻", "中文", "字", "e\u0301", "\u0301", "ß", "xyz\n", "🇫🇷"]

# One step: (editor, action, position, length or piece, time gap, snapshot?)
steps = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(["insert", "insert", "insert", "delete", "sync"]),
        st.integers(0, 40),
        st.one_of(st.integers(1, 6), st.sampled_from(PIECES)),
        st.sampled_from([0.0, 1.0, 30.0, 61.0, 500.0, 4000.0, 90_000.0, -5.0]),
        st.booleans(),
    ),
    min_size=1,
    max_size=25,
)

_counter = iter(range(10**9))


async def play(store: Store, doc: str, plan: list[Any]) -> Editors:
    editors = Editors(store, doc, 3, ["alice", None, "carol"])
    await editors.insert(0, 0, "start ", gap=0.0)
    for editor, action, position, arg, gap, snapshot in plan:
        if action == "sync":
            editors.sync(editor)
        elif action == "delete":
            length = arg if isinstance(arg, int) else 1
            await editors.delete(editor, position, length, gap, snapshot)
        else:
            piece = arg if isinstance(arg, str) else "x" * arg
            await editors.insert(editor, position, piece, gap, snapshot)
    return editors


async def check_texts(store: Store, config: Config, doc: str, texts: dict[int, str]) -> None:
    """Every version's text (and size) is the server's text after that version's last seq."""
    found = await history.versions(store, config, doc)
    assert found, "a document with entries has versions"
    for version in found:
        text, resolved = await history.text_at(store, config, doc, At(version=version.id))
        assert text == texts[version.last_seq]
        assert resolved is not None and resolved.id == version.id
        assert version.size == len(text)
        spans, _ = await history.attribution(store, config, doc, At(version=version.id))
        assert "".join(span.text for span in spans) == text
    current, _ = await history.text_at(store, config, doc)
    assert current == texts[max(texts)]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps, retention_age=st.sampled_from([0.0, 3000.0, 200_000.0]))
async def test_history_replays_what_editors_had(
    store: Store, prefix: str, plan: list[Any], retention_age: float
) -> None:
    doc = f"{prefix}-p{next(_counter)}"
    editors = await play(store, doc, plan)
    texts = editors.texts

    found = await history.versions(store, CONFIG, doc)
    entries = await store.entries(doc)
    # Cuts: ids are the seqs of the last entries, in order, covering the whole log.
    assert [v.id for v in found] == [v.last_seq for v in found]
    assert found[0].first_seq == 1 and found[-1].last_seq == entries[-1].seq
    assert all(len(history.cut(entries, CONFIG)[i]) <= 3 for i in range(len(found)))
    assert all(a.at <= b.at for a, b in itertools.pairwise(found))
    await check_texts(store, CONFIG, doc, texts)

    # The latest version at or before a time.
    last = found[-1]
    text, version = await history.text_at(store, CONFIG, doc, At(time=last.at + 1))
    assert version is not None and version.id == last.id and text == texts[last.last_seq]
    with pytest.raises(InvalidRequest):
        await history.text_at(store, CONFIG, doc, At(time=found[0].at - 1))

    # Export the whole history, import it into an empty document: same versions, same texts.
    data = json.loads(json.dumps(await archive(store, doc)))
    copy = await import_archive(store, data, name=f"{doc}-copy")
    assert await history.versions(store, CONFIG, copy) == found
    await check_texts(store, CONFIG, copy, texts)

    # Retention never changes the current text, nor the text at any remaining version.
    policy = Retention(keep_all_seconds=100.0, hourly_seconds=3600.0, daily_after_seconds=10_000.0)
    now = entries[-1].at + retention_age
    removed = await history.apply_retention(store, CONFIG.replace(retention=policy), doc, now)
    after = await store.entries(doc)
    assert len(after) == len(entries) - removed
    assert {c for e in after for c in history.authors(e)} == {
        c for e in entries for c in history.authors(e)
    }
    await check_texts(store, CONFIG, doc, texts)


async def test_versions_cut_by_gap_and_count(store: Store, prefix: str) -> None:
    doc = f"{prefix}-cut"
    editors = Editors(store, doc, 2, ["alice", None])
    for gap in [0, 1, 1, 61, 1, 1, 1, 1]:  # 3 + 5 entries; at most 3 per version
        await editors.insert(0 if gap != 61 else 1, 0, "a", gap=gap)
    found = await history.versions(store, CONFIG, doc)
    assert [(v.first_seq, v.last_seq) for v in found] == [(1, 3), (4, 6), (7, 8)]
    assert [v.contributors for v in found] == [["alice"], ["client1", "alice"], ["alice"]]
    assert [v.size for v in found] == [3, 6, 8]

    off = CONFIG.replace(history_enabled=False)
    [only] = await history.versions(store, off, doc)
    assert (only.id, only.first_seq, only.contributors) == (8, 1, ["alice", "client1"])
    with pytest.raises(InvalidRequest):
        await history.text_at(store, off, doc, At(version=3))


async def test_attribution_names_each_author(store: Store, prefix: str) -> None:
    doc = f"{prefix}-attr"
    editors = Editors(store, doc, 2, ["alice", "bob"])
    await editors.insert(0, 0, "hello 😀 world")
    editors.sync(1)
    await editors.insert(1, 6, "中文 ", gap=100)  # bob, after alice's "hello "; a new version
    await editors.delete(1, 0, 2)  # bob deletes "he"
    editors.sync(0)
    await editors.insert(0, 100, "!")
    spans, version = await history.attribution(store, CONFIG, doc)
    assert [(s.author, s.text) for s in spans] == [
        ("alice", "llo "),
        ("bob", "中文 "),
        ("alice", "😀 world!"),
    ]
    assert version is not None and version.size == len("llo 中文 😀 world!")
    early, _ = await history.attribution(store, CONFIG, doc, At(version=1))
    assert [(s.author, s.text) for s in early] == [("alice", "hello 😀 world")]


async def test_diff_between_versions(store: Store, prefix: str) -> None:
    doc = f"{prefix}-diff"
    editors = Editors(store, doc, 1, [None])
    await editors.insert(0, 0, "one\ntwo\nthree")
    await editors.insert(0, 4, "deux\n", gap=100)
    text, (old, new) = await history.diff(store, CONFIG, doc, At(version=1), None)
    assert (old and old.id, new and new.id) == (1, 2)
    assert text.splitlines() == [
        f"--- {doc}@1",
        f"+++ {doc}@2",
        "@@ -1,3 +1,4 @@",
        " one",
        "+deux",
        " two",
        " three",
        "\\ No newline at end of file",
    ]
    same, _ = await history.diff(store, CONFIG, doc, At(version=2), At(version=2))
    assert same == ""


async def test_unknown_documents_and_bad_requests(store: Store, prefix: str) -> None:
    missing = f"{prefix}-missing"
    for call in (
        history.versions(store, CONFIG, missing),
        history.text_at(store, CONFIG, missing),
        history.diff(store, CONFIG, missing, None, None),
        history.attribution(store, CONFIG, missing),
        history.apply_retention(store, CONFIG, missing, 0.0),
        history.delete(store, missing),
        export(store, CONFIG, missing),
        archive(store, missing),
    ):
        with pytest.raises(UnknownDocument):
            await call
    doc = f"{prefix}-bad"
    await Editors(store, doc, 1, [None]).insert(0, 0, "x")
    with pytest.raises(InvalidRequest, match="no version 7"):
        await history.text_at(store, CONFIG, doc, At(version=7))
    with pytest.raises(InvalidRequest):
        await export(store, CONFIG, doc, "pdf")
    with pytest.raises(InvalidRequest):
        await export(store, CONFIG, doc, "txt", all_history=True)
    with pytest.raises(InvalidRequest):
        history.parse_at("yesterday")
    assert history.parse_at("12") == At(version=12)
    assert history.parse_at("2024-05-01T12:00:00Z") == At(time=1714564800.0)
    assert history.parse_at("2024-05-01T12:00:00") == At(time=1714564800.0)  # UTC by default


async def test_exports(store: Store, prefix: str) -> None:
    doc = f"{prefix}-exp"
    editors = Editors(store, doc, 1, ["alice"])
    await editors.insert(0, 0, "# Title\n\nnaïve 中文 😀")
    await editors.set_meta(0, "title", "Title", gap=100)  # version 1 is the text alone
    await editors.set_meta(0, "count", 3)

    txt = await export(store, CONFIG, doc, "txt")
    assert txt.body == "# Title\n\nnaïve 中文 😀".encode()
    assert txt.filename == f"{doc}.txt"
    md = (await export(store, CONFIG, doc, "md")).body.decode()
    assert md == (
        f'---\ndoc: "{doc}"\nversion: 3\nat: "{history.iso(editors.at)}"\n'
        'contributors: ["alice"]\n---\n# Title\n\nnaïve 中文 😀'
    )
    value = json.loads((await export(store, CONFIG, doc, "json", At(version=1))).body)
    assert value["version"] == 1 and value["text"] == "# Title\n\nnaïve 中文 😀"
    assert value["roots"] == {"text": value["text"]}
    value = json.loads((await export(store, CONFIG, doc, "json")).body)
    assert value["roots"] == {"text": value["text"], "meta": {"title": "Title", "count": 3}}
    assert value["size"] == len(value["text"]) and value["contributors"] == ["alice"]

    await history.delete(store, doc)
    assert await store.document(doc) is None


async def test_exports_of_documents_that_differ_in_a_prefix(store: Store, prefix: str) -> None:
    for team in ("team-a", "team-b"):
        await Editors(store, f"{prefix}/{team}/notes", 1, [team]).insert(0, 0, f"{team} text")
    await Editors(store, f"{prefix}-json:notebook:1234", 1, [None]).insert(0, 0, "cells")
    for team in ("team-a", "team-b"):
        doc = f"{prefix}/{team}/notes"
        txt = await export(store, CONFIG, doc, "txt")
        assert (txt.body, txt.filename) == (
            f"{team} text".encode(),
            f"{prefix}%2F{team}%2Fnotes.txt",
        )
        md = await export(store, CONFIG, doc, "md", At(version=1))
        assert md.filename == f"{prefix}%2F{team}%2Fnotes@1.md"
        assert f'doc: "{doc}"' in md.body.decode()
        whole = await export(store, CONFIG, doc, "json", all_history=True)
        assert whole.filename == f"{prefix}%2F{team}%2Fnotes.archive.json"
        assert json.loads(whole.body)["doc"] == doc
    jupyter = await export(store, CONFIG, f"{prefix}-json:notebook:1234", "json")
    assert jupyter.filename == f"{prefix}-json%3Anotebook%3A1234.json"


@given(valid_names())
def test_an_export_file_name_is_one_file_and_names_its_document(name: str) -> None:
    stem = file_stem(name)
    assert "/" not in stem and ":" not in stem  # one file, on every system
    assert unquote(stem) == name  # no two documents share a file name


async def test_import_refuses_existing_and_malformed(store: Store, prefix: str) -> None:
    doc = f"{prefix}-imp"
    await Editors(store, doc, 1, [None]).insert(0, 0, "x")
    data = await archive(store, doc)
    with pytest.raises(DocumentExists):
        await import_archive(store, data)
    bad: list[Any] = [
        {},
        {**data, "format": "other"},
        {**data, "version": 2},
        {**data, "entries": []},
        {**data, "entries": [{**data["entries"][0], "update": "%%%"}]},
        {**data, "entries": [{**data["entries"][0], "update": "AAEC"}]},  # base64, not Yjs
        {**data, "entries": [{**data["entries"][0], "seq": 0}]},
        {**data, "snapshots": [{"seq": 9, "state": ""}]},
    ]
    for index, value in enumerate(bad):
        with pytest.raises(InvalidRequest):
            await import_archive(store, value, name=f"{prefix}-bad{index}")
        assert await store.document(f"{prefix}-bad{index}") is None
    with pytest.raises(InvalidRequest):
        await import_archive(store, data, name="../etc")


async def test_retention_windows() -> None:
    store = MemoryStore()
    await store.open()
    day = 86400.0
    now = 100 * day
    editors = Editors(store, "d", 2, ["alice", None])
    editors.at = now - 40 * day - 10  # the oldest: merged per day
    for gap, who in [(0, 0), (1, 1), (1, 0), (day, 0), (1, 0)]:
        await editors.insert(who, 0, "a", gap=gap)
    editors.at = now - 10 * day  # per hour
    for gap in [0, 1, 1, 3600, 1]:
        await editors.insert(0, 0, "b", gap=gap)
    editors.at = now - 100  # recent: kept one by one
    for _ in range(3):
        await editors.insert(1, 0, "c", gap=1)
    policy = Retention(keep_all_seconds=7 * day, hourly_seconds=3600, daily_after_seconds=30 * day)
    config = CONFIG.replace(retention=policy)
    before = await store.entries("d")
    removed = await history.apply_retention(store, config, "d", now)
    after = await store.entries("d")
    assert removed == 2 + 1 + 2 + 1
    assert [e.seq for e in after] == [3, 5, 8, 10, 11, 12, 13]
    assert after[0] == LogEntry(
        3, after[0].update, before[2].at, "client0,client1", "alice,client1"
    )
    assert await history.apply_retention(store, config, "d", now) == 0  # idempotent
    assert (await history.text_at(store, config, "d"))[0] == editors.texts[13]
    off = config.replace(history_enabled=False)
    assert await history.apply_retention(store, off, "d", now) == 6
    [entry] = await store.entries("d")
    assert entry.seq == 13 and not math.isnan(entry.at)
    assert (await history.text_at(store, off, "d"))[0] == editors.texts[13]
    keep = config.replace(retention=Retention(keep_all_seconds=None))
    assert await history.apply_retention(store, keep, "d", now) == 0
