"""A document's history, read from the store: versions, old texts, diffs, authorship.

History is read-only (except :func:`apply_retention` and :func:`delete`, which an
operator runs on purpose) and never touches a live room: everything here is
rebuilt from the log and snapshots of a :class:`~collab.store.Store`.

Versions. The log is cut into versions by activity: a new version starts after a
quiet gap longer than ``config.version_gap_seconds`` between two entries, or once
the current version holds ``config.version_max_updates`` entries. A version is
named by the seq of its last log entry (its ``id``); its ``at`` is the latest
timestamp up to that entry (so versions are ordered in time even when the clocks
of several server processes disagree a little); its ``size`` is the length of
the text at that version in Unicode code points (``len(str)``, not bytes); its
``contributors`` are the authors of its entries: the user when the entry has one,
else the client id. With ``config.history_enabled`` false, the whole log is one
version: only the current state is visible, and it is the only valid ``at``.

A version's text is what the document reads as (:mod:`collab.history.formats`):
the text of its Y.Text or XML root, whichever editor wrote it, or the JSON of its
maps and arrays. A restore (an entry whose client is ``restore:<N>``, written by
a server-side restore of version N) is a version of its own, with
``restored_from`` set.

Old texts are rebuilt from the latest snapshot at or before the version plus the
log entries after it, up to the version's last seq (CRDT updates are idempotent,
so a snapshot that already holds some of those entries does no harm).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pycrdt import Doc, Text, TextEvent, merge_updates

from collab.config import Config
from collab.errors import InvalidRequest, StoreError, UnknownDocument
from collab.history import formats
from collab.store import LogEntry, Store
from collab.store.replay import apply_entry, replay

__all__ = [
    "RESTORE_CLIENT",
    "At",
    "Span",
    "Version",
    "apply_retention",
    "attribution",
    "authors",
    "check_document",
    "cut",
    "delete",
    "diff",
    "doc_at",
    "iso",
    "parse_at",
    "resolve",
    "restored_from",
    "state_at",
    "text_at",
    "versions",
]


#: The log client of a restore entry: ``restore:<version id>`` (see collab.http.edits).
RESTORE_CLIENT = "restore:"


@dataclass(frozen=True, slots=True)
class Version:
    """One point in a document's history (see the module docstring)."""

    id: int
    at: float
    size: int  # length of the text in code points
    contributors: list[str]
    first_seq: int
    last_seq: int
    restored_from: int | None = None  # a restore: the version it brought back

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "at_iso": iso(self.at),
            "size": self.size,
            "contributors": list(self.contributors),
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "restored_from": self.restored_from,
        }


@dataclass(frozen=True, slots=True)
class At:
    """Which version a request means: a version id, a time (epoch seconds), or neither (now)."""

    version: int | None = None
    time: float | None = None


@dataclass(slots=True)
class Span:
    """A run of text written by one author."""

    author: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"author": self.author, "text": self.text}


@dataclass(slots=True)
class _Cut:
    entries: list[LogEntry] = field(default_factory=list)
    at: float = -math.inf


def iso(at: float) -> str:
    """A timestamp as ISO-8601 in UTC with a ``Z``, to the millisecond."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def parse_at(value: str) -> At:
    """Parse a user's ``--at`` / ``?at=``: digits are a version id, anything else ISO-8601.

    A time without a zone is taken as UTC. Raises :class:`InvalidRequest`.
    """
    value = value.strip()
    if value.isdigit():
        return At(version=int(value))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"{value!r} is neither a version id nor an ISO-8601 time (e.g. 2024-05-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return At(time=moment.timestamp())


def authors(entry: LogEntry) -> list[str]:
    """Who wrote ``entry``: its user(s), else its client(s) (merged entries list several)."""
    names = entry.user if entry.user else entry.client
    return [name for name in names.split(",") if name]


def restored_from(entry: LogEntry) -> int | None:
    """The version a restore entry brought back; ``None`` for any other entry."""
    client = entry.client
    if not client.startswith(RESTORE_CLIENT) or "," in client:
        return None
    number = client[len(RESTORE_CLIENT) :]
    return int(number) if number.isdigit() else None


def cut(entries: Sequence[LogEntry], config: Config) -> list[list[LogEntry]]:
    """Group log entries (in seq order) into versions. Pure: no store, no replay.

    A restore entry is a version of its own.
    """
    if not config.history_enabled:
        return [list(entries)] if entries else []
    groups: list[list[LogEntry]] = []
    current: list[LogEntry] = []
    for entry in entries:
        restore = restored_from(entry) is not None
        if current and (
            restore
            or restored_from(current[-1]) is not None
            or len(current) >= config.version_max_updates
            or entry.at - current[-1].at > config.version_gap_seconds
        ):
            groups.append(current)
            current = []
        current.append(entry)
    if current:
        groups.append(current)
    return groups


def _restore_of(group: list[LogEntry]) -> int | None:
    return restored_from(group[0]) if len(group) == 1 else None


def _metadata(groups: list[list[LogEntry]]) -> list[tuple[list[LogEntry], float, list[str]]]:
    """Per group: its entries, its (running maximum) time and its contributors."""
    result = []
    latest = -math.inf
    for group in groups:
        latest = max([latest, *(entry.at for entry in group)])
        contributors: dict[str, None] = {}
        for entry in group:
            contributors.update(dict.fromkeys(authors(entry)))
        result.append((group, latest, list(contributors)))
    return result


async def check_document(store: Store, doc: str) -> None:
    """Raise :class:`UnknownDocument` unless the store holds ``doc``."""
    if await store.document(doc) is None:
        raise UnknownDocument(f"no document named {doc!r}")


async def versions(store: Store, config: Config, doc: str) -> list[Version]:
    """Every version of ``doc``, oldest first. Replays the whole log once (for sizes)."""
    await check_document(store, doc)
    entries = await store.entries(doc)
    rebuilt: Doc[Any] = Doc()
    result = []
    for group, at, contributors in _metadata(cut(entries, config)):
        for entry in group:
            apply_entry(rebuilt, entry.update, entry.seq)
        result.append(
            Version(
                id=group[-1].seq,
                at=at,
                size=len(formats.text_of(rebuilt, config)),
                contributors=contributors,
                first_seq=group[0].seq,
                last_seq=group[-1].seq,
                restored_from=_restore_of(group),
            )
        )
    return result


async def _light_versions(store: Store, config: Config, doc: str) -> list[Version]:
    """Versions without sizes (``size == -1``): no replay, for resolving ``At``."""
    await check_document(store, doc)
    return [
        Version(
            group[-1].seq, at, -1, contributors, group[0].seq, group[-1].seq, _restore_of(group)
        )
        for group, at, contributors in _metadata(cut(await store.entries(doc), config))
    ]


def resolve(found: Sequence[Version], at: At | None) -> Version | None:
    """The version ``at`` names among ``found``; ``None`` only for "now" with no versions.

    A time resolves to the latest version at or before it. Raises
    :class:`InvalidRequest` for a version id or time that names no version.
    """
    if at is None or (at.version is None and at.time is None):
        return found[-1] if found else None
    if at.version is not None:
        for version in found:
            if version.id == at.version:
                return version
        ids = ", ".join(str(v.id) for v in found[-5:])
        raise InvalidRequest(f"no version {at.version} (latest: {ids or 'none'})")
    assert at.time is not None
    chosen = None
    for version in found:
        if version.at <= at.time:
            chosen = version
    if chosen is None:
        raise InvalidRequest(f"no version at or before {iso(at.time)}")
    return chosen


async def doc_at(store: Store, doc: str, seq: int | None) -> Doc[Any]:
    """A fresh Doc holding ``doc`` as of log seq ``seq`` (``None``: the latest state)."""
    if seq is None:
        loaded = await store.load(doc)
        return replay(loaded.snapshot, loaded.entries)
    snapshot = await store.snapshot_before(doc, seq)
    entries = await store.entries(doc, after=snapshot.seq if snapshot else 0, upto=seq)
    return replay(snapshot, entries)


async def state_at(
    store: Store, config: Config, doc: str, at: At | None = None
) -> tuple[Doc[Any], Version | None]:
    """A fresh Doc holding ``doc`` at ``at`` (default: now), and the version that is.

    The version's ``size`` is filled in. ``None`` only for a document without log
    entries (a snapshot alone). Raises :class:`UnknownDocument`, :class:`InvalidRequest`.
    """
    version = resolve(await _light_versions(store, config, doc), at)
    replay = await doc_at(store, doc, version.last_seq if version else None)
    if version is None:
        return replay, None
    size = len(formats.text_of(replay, config))
    return replay, dataclasses.replace(version, size=size)


async def text_at(
    store: Store, config: Config, doc: str, at: At | None = None
) -> tuple[str, Version | None]:
    """The text of ``doc`` at ``at`` (default: now), and the version that is."""
    replay, version = await state_at(store, config, doc, at)
    return formats.text_of(replay, config), version


async def diff(
    store: Store, config: Config, doc: str, old: At | None, new: At | None
) -> tuple[str, list[Version | None]]:
    """A unified diff (``difflib``, 3 lines of context) from version ``old`` to ``new``.

    Returns the diff and the two versions compared. A last line without a newline
    is marked ``\\ No newline at end of file``, as ``diff`` and ``git`` do.
    Identical texts give an empty diff.
    """
    found = await _light_versions(store, config, doc)
    texts, labels = [], []
    compared: list[Version | None] = []
    for point in (old, new):
        version = resolve(found, point)
        compared.append(version)
        replay = await doc_at(store, doc, version.last_seq if version else None)
        texts.append(formats.text_of(replay, config))
        labels.append(f"{doc}@{version.id if version else 0}")
    lines = difflib.unified_diff(
        texts[0].splitlines(keepends=True),
        texts[1].splitlines(keepends=True),
        fromfile=labels[0],
        tofile=labels[1],
    )
    out = []
    for line in lines:
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out), compared


class _Authorship:
    """The author of every character of a text, kept in step with its change events.

    pycrdt reports text changes as deltas counted in UTF-8 bytes; characters are
    kept as code points, each with its byte width (an embed counts 1, shows nothing).
    """

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.widths: list[int] = []
        self.owners: list[str] = []
        self.author = ""

    def _index(self, start: int, count: int) -> int:
        """The char index ``count`` bytes after char index ``start``."""
        index = start
        while count > 0 and index < len(self.widths):
            count -= self.widths[index]
            index += 1
        return index

    def observe(self, event: TextEvent) -> None:
        position = 0
        delta: list[dict[str, Any]] = getattr(event, "delta")  # noqa: B009 (a slot mypy can't see)
        for op in delta:
            if "retain" in op:
                position = self._index(position, int(op["retain"]))
            elif "delete" in op:
                end = self._index(position, int(op["delete"]))
                del self.chars[position:end], self.widths[position:end], self.owners[position:end]
            elif "insert" in op:
                value = op["insert"]
                if isinstance(value, str):
                    new = list(value)
                    widths = [len(char.encode("utf-8")) for char in new]
                else:
                    new, widths = [""], [1]
                self.chars[position:position] = new
                self.widths[position:position] = widths
                self.owners[position:position] = [self.author] * len(new)
                position += len(new)

    def spans(self) -> list[Span]:
        spans: list[Span] = []
        for char, owner in zip(self.chars, self.owners, strict=True):
            if not char:
                continue
            if spans and spans[-1].author == owner:
                spans[-1].text += char
            else:
                spans.append(Span(owner, char))
        return spans


class _RenderedAuthorship:
    """The author of every character of a rendered text (XML blocks, JSON), followed
    from one rendering to the next by a character diff: the common prefix and
    suffix are kept, and only the part between them is compared with difflib."""

    def __init__(self) -> None:
        self.text = ""
        self.owners: list[str] = []

    def update(self, new: str, author: str) -> None:
        old = self.text
        start = 0
        limit = min(len(old), len(new))
        while start < limit and old[start] == new[start]:
            start += 1
        end = 0
        while end < limit - start and old[-1 - end] == new[-1 - end]:
            end += 1
        a, b = old[start : len(old) - end], new[start : len(new) - end]
        middle: list[str] = []
        if a and b and len(a) * len(b) <= 4_000_000:
            matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
            for op, i1, i2, j1, j2 in matcher.get_opcodes():
                if op == "equal":
                    middle.extend(self.owners[start + i1 : start + i2])
                else:
                    middle.extend([author] * (j2 - j1))
        else:
            middle = [author] * len(b)
        self.owners = self.owners[:start] + middle + self.owners[len(old) - end :]
        self.text = new

    def spans(self) -> list[Span]:
        spans: list[Span] = []
        for char, owner in zip(self.text, self.owners, strict=True):
            if spans and spans[-1].author == owner:
                spans[-1].text += char
            else:
                spans.append(Span(owner, char))
        return spans


async def attribution(
    store: Store, config: Config, doc: str, at: At | None = None
) -> tuple[list[Span], Version | None]:
    """Who wrote each part of the text at ``at`` (default: now), as runs of one author.

    Returns the runs (their texts joined are the text) and the version they describe.

    Replays the log from the start (a snapshot says nothing of authors). An entry
    merged by retention is credited to all its authors, comma-joined.
    """
    version = resolve(await _light_versions(store, config, doc), at)
    if version is None:
        return [], None
    reading = formats.read(await doc_at(store, doc, version.last_seq), config)
    entries = await store.entries(doc, upto=version.last_seq)
    rebuilt: Doc[Any] = Doc()
    if reading.format in ("text", "rich-text"):
        assert reading.root is not None
        text = rebuilt.get(reading.root, type=Text)
        tracker = _Authorship()
        subscription = text.observe(tracker.observe)
        try:
            for entry in entries:
                tracker.author = ",".join(authors(entry))
                apply_entry(rebuilt, entry.update, entry.seq)
        finally:
            text.unobserve(subscription)
        spans = tracker.spans()
    else:
        rendered = _RenderedAuthorship()
        for entry in entries:
            apply_entry(rebuilt, entry.update, entry.seq)
            rendered.update(formats.text_of(rebuilt, config, reading), ",".join(authors(entry)))
        spans = rendered.spans()
    return spans, dataclasses.replace(version, size=sum(len(span.text) for span in spans))


def _window(entry: LogEntry, config: Config, now: float) -> tuple[str, int] | None:
    """The retention window ``entry`` falls in, or ``None`` when it is kept as it is."""
    if not config.history_enabled:
        return ("all", 0)
    policy = config.retention
    if policy.keep_all_seconds is None:
        return None
    age = now - entry.at
    if age <= policy.keep_all_seconds:
        return None
    if age <= policy.daily_after_seconds:
        return ("hour", math.floor(entry.at / policy.hourly_seconds))
    return ("day", math.floor(entry.at / 86400))


def _merge(run: list[LogEntry]) -> LogEntry:
    """One entry equivalent to ``run``: merged update, every author kept, comma-joined."""
    clients: dict[str, None] = {}
    for entry in run:
        clients.update(dict.fromkeys(c for c in entry.client.split(",") if c))
    users: dict[str, None] = {}
    if any(entry.user for entry in run):
        for entry in run:
            users.update(dict.fromkeys(authors(entry)))
    try:
        update = merge_updates(*(entry.update for entry in run))
    except Exception as exc:
        raise StoreError(f"log entries {run[0].seq}..{run[-1].seq} cannot be merged") from exc
    return LogEntry(
        seq=run[-1].seq,
        update=update,
        at=max(entry.at for entry in run),
        client=",".join(clients),
        user=",".join(users) or None,
    )


async def apply_retention(store: Store, config: Config, doc: str, now: float) -> int:
    """Thin ``doc``'s old history per ``config.retention``; return how many entries went.

    Entries older than ``keep_all_seconds`` are merged, per hourly window (up to
    ``daily_after_seconds`` old) or daily window (older), into one entry each
    (``merge_updates``; seq = the run's last seq; authors kept). Only runs of
    consecutive entries are merged, so the text at every remaining entry, and
    hence at every remaining version and now, is unchanged. With
    ``history_enabled`` false the whole log becomes one entry. Safe to run while
    the document is being edited: new entries get higher seqs.
    """
    await check_document(store, doc)
    entries = await store.entries(doc)
    removed = 0
    run: list[LogEntry] = []
    run_key: tuple[str, int] | None = None

    async def flush() -> None:
        nonlocal removed
        if len(run) > 1:
            await store.replace_range(doc, run[0].seq, run[-1].seq, _merge(run))
            removed += len(run) - 1

    for entry in entries:
        key = _window(entry, config, now)
        if key is None or key != run_key:
            await flush()
            run, run_key = [], key
        if key is not None:
            run.append(entry)
    await flush()
    return removed


async def delete(store: Store, doc: str) -> None:
    """Delete ``doc``, its log and its snapshots, keeping a tombstone of what it held (its
    state vector, for the deleted-document guard). Raises :class:`UnknownDocument`.

    This is the store-level deletion (``collab delete``). A server that has the
    document open notices it within ``deletion_poll_interval``, closes its editors
    with 4404 and deletes whatever they wrote meanwhile (collab.core.deletion); a
    server deletes through ``DELETE /api/docs/{doc}`` itself.
    """
    loaded = await store.load(doc)
    state = replay(loaded.snapshot, loaded.entries).get_state()
    if not await store.delete(doc, state_vector=state):
        raise UnknownDocument(f"no document named {doc!r}")
