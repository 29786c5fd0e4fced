"""Exports of a document (one version as text, Markdown or JSON) and whole-history archives.

Formats of one version (see docs/history.md for examples):

- ``txt``: exactly the text (UTF-8) as :func:`collab.history.formats.text_of` reads
  it: a Y.Text byte for byte, nothing added, not even a newline; an XML fragment's
  blocks; the JSON of maps and arrays.
- ``md``: a YAML front matter block (``doc``, ``version``, ``at``, ``contributors``, each
  value JSON-quoted, which is valid YAML) between ``---`` lines, then the Markdown
  (:func:`~collab.history.formats.markdown_of`: a plain Y.Text exactly, formatted
  text and XML converted).
- ``json``: ``{"format": "collab.version", "doc", "version", "at", "at_iso", "size",
  "contributors", "root", "root_format", "text", "markdown", "roots"}`` where ``root``
  names the text's root (``null`` for maps and arrays), ``root_format`` says how it was
  read (``text``, ``rich-text``, ``xml``, ``json``, ``empty``) and ``roots`` holds every
  root type of the document as JSON (text as a string, map as an object, array as a
  list, XML as a string).

An archive (``format: "collab.archive"``) holds the document's log itself: each entry's
update (base64) with its seq, time, client and user, and every snapshot. Importing
it restores those CRDT updates, with the same seqs, into an empty document; a
document is never re-created from its plain text, which would lose its history and
give its characters new identities that no editor's copy would merge with.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pycrdt import Doc

from collab.config import Config
from collab.errors import CollabError, DocumentExists, InvalidRequest
from collab.history import FORMATS, formats
from collab.history import versions as history
from collab.history.roots import roots_json
from collab.names import NAME_RULE, valid_name
from collab.store import LogEntry, NewEntry, Snapshot, Store

__all__ = [
    "ARCHIVE_FORMAT",
    "FORMATS",
    "Export",
    "archive",
    "export",
    "file_stem",
    "import_archive",
]

ARCHIVE_FORMAT: Final = "collab.archive"
ARCHIVE_VERSION: Final = 1

#: An update that changes nothing: it fills seqs that the archive's log skips.
_EMPTY_UPDATE: Final = Doc().get_update()
#: Entries appended per transaction on import.
_IMPORT_BATCH: Final = 2000


@dataclass(frozen=True, slots=True)
class Export:
    """An exported file: its bytes, media type and a suggested file name (see :func:`file_stem`)."""

    body: bytes
    content_type: str
    filename: str


#: The characters of a document name that are not safe in a file name everywhere:
#: ``/`` separates directories, ``:`` is refused by Windows (and shown as ``/`` by macOS).
_UNSAFE_IN_FILES: Final = {"/": "%2F", ":": "%3A"}


def file_stem(doc: str) -> str:
    """``doc`` as the start of a file name: ``/`` written ``%2F``, ``:`` written ``%3A``.

    ``team-a/notes`` becomes ``team-a%2Fnotes``, ``json:notebook:1`` becomes
    ``json%3Anotebook%3A1``. No valid name holds ``%``, so the stem is one file
    (never a path) and names the document without ambiguity.
    """
    return "".join(_UNSAFE_IN_FILES.get(char, char) for char in doc)


async def export(
    store: Store,
    config: Config,
    doc: str,
    fmt: str = "txt",
    at: history.At | None = None,
    *,
    all_history: bool = False,
) -> Export:
    """Export ``doc`` at ``at`` (default: now) as ``fmt``, or its whole history as an archive.

    ``all_history`` needs ``fmt == "json"`` and no ``at``. Raises
    :class:`UnknownDocument` and :class:`InvalidRequest`.
    """
    if fmt not in FORMATS:
        raise InvalidRequest(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if all_history:
        if fmt != "json" or (at is not None and (at.version, at.time) != (None, None)):
            raise InvalidRequest("the whole-history archive is JSON only and has no 'at'")
        body = json.dumps(await archive(store, doc), ensure_ascii=False, indent=1)
        return Export(body.encode("utf-8"), "application/json", f"{file_stem(doc)}.archive.json")
    replay, version = await history.state_at(store, config, doc, at)
    reading = formats.read(replay, config)
    text = formats.text_of(replay, config, reading)
    suffix = f"@{version.id}" if version and at is not None else ""
    if fmt == "txt":
        return Export(
            text.encode("utf-8"), "text/plain; charset=utf-8", f"{file_stem(doc)}{suffix}.txt"
        )
    meta: dict[str, Any] = {
        "doc": doc,
        "version": version.id if version else None,
        "at": history.iso(version.at) if version else None,
        "contributors": version.contributors if version else [],
    }
    if fmt == "md":
        front = "".join(
            f"{key}: {json.dumps(value, ensure_ascii=False)}\n" for key, value in meta.items()
        )
        body = f"---\n{front}---\n{formats.markdown_of(replay, config, reading)}"
        return Export(
            body.encode("utf-8"), "text/markdown; charset=utf-8", f"{file_stem(doc)}{suffix}.md"
        )
    value = {
        "format": "collab.version",
        "doc": doc,
        "version": meta["version"],
        "at": version.at if version else None,
        "at_iso": meta["at"],
        "size": len(text),
        "contributors": meta["contributors"],
        "root": reading.root,
        "root_format": reading.format,
        "text": text,
        "markdown": formats.markdown_of(replay, config, reading),
        "roots": roots_json(replay.get_update(), reading.root if reading.kind == "text" else None),
    }
    body = json.dumps(value, ensure_ascii=False, indent=1)
    return Export(body.encode("utf-8"), "application/json", f"{file_stem(doc)}{suffix}.json")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def _snapshots(store: Store, doc: str, last_seq: int) -> list[Snapshot]:
    """Every snapshot of ``doc``, oldest first (the store only answers "latest before")."""
    found: list[Snapshot] = []
    seq = last_seq
    while seq > 0:
        snapshot = await store.snapshot_before(doc, seq)
        if snapshot is None:
            break
        found.append(snapshot)
        seq = snapshot.seq - 1
    return found[::-1]


async def archive(store: Store, doc: str) -> dict[str, Any]:
    """The whole history of ``doc`` as a JSON-ready dict (see the module docstring).

    The archive is a backup, so it holds the log as stored whatever
    ``history_enabled`` says (retention decides what the log still holds).
    """
    info = await store.document(doc)
    if info is None:
        await history.check_document(store, doc)  # raises UnknownDocument
        raise AssertionError("unreachable")
    entries = await store.entries(doc)
    return {
        "format": ARCHIVE_FORMAT,
        "version": ARCHIVE_VERSION,
        "doc": doc,
        "exported_at": time.time(),
        "created_at": info.created_at,
        "entries": [
            {"seq": e.seq, "at": e.at, "client": e.client, "user": e.user, "update": _b64(e.update)}
            for e in entries
        ],
        "snapshots": [
            {"seq": s.seq, "at": s.at, "state": _b64(s.state)}
            for s in await _snapshots(store, doc, info.last_seq)
        ],
    }


def _field(item: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = item.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidRequest(f"archive: {where} has no valid {key!r}")
    return value


def _decode(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"archive: {where} is not valid base64") from None


def _parse(data: Any) -> tuple[str, list[LogEntry], list[tuple[int, bytes]]]:
    """Validate an archive; return its document name, log and snapshots (seq, state)."""
    if not isinstance(data, Mapping) or data.get("format") != ARCHIVE_FORMAT:
        raise InvalidRequest(f"not a collab archive (expected format {ARCHIVE_FORMAT!r})")
    if data.get("version") != ARCHIVE_VERSION:
        raise InvalidRequest(f"unsupported archive version {data.get('version')!r}")
    doc = _field(data, "doc", str, "the archive")
    raw_entries = _field(data, "entries", list, "the archive")
    raw_snapshots = data.get("snapshots", [])
    if not isinstance(raw_snapshots, list):
        raise InvalidRequest("archive: 'snapshots' is not a list")
    if not raw_entries:
        raise InvalidRequest("archive: the log is empty")
    entries: list[LogEntry] = []
    for index, item in enumerate(raw_entries):
        where = f"entry {index}"
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"archive: {where} is not an object")
        seq = _field(item, "seq", int, where)
        if seq < 1 or (entries and seq <= entries[-1].seq):
            raise InvalidRequest(f"archive: {where} has seq {seq}, not above the one before")
        user = item.get("user")
        if user is not None and not isinstance(user, str):
            raise InvalidRequest(f"archive: {where} has no valid 'user'")
        entries.append(
            LogEntry(
                seq=seq,
                update=_decode(_field(item, "update", str, where), where),
                at=float(_field(item, "at", (int, float), where)),
                client=_field(item, "client", str, where),
                user=user,
            )
        )
    snapshots: list[tuple[int, bytes]] = []
    for index, item in enumerate(raw_snapshots):
        where = f"snapshot {index}"
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"archive: {where} is not an object")
        seq = _field(item, "seq", int, where)
        if not 1 <= seq <= entries[-1].seq or (snapshots and seq <= snapshots[-1][0]):
            raise InvalidRequest(f"archive: {where} has seq {seq} outside the log or out of order")
        snapshots.append((seq, _decode(_field(item, "state", str, where), where)))
    check: Doc[Any] = Doc()
    try:
        for entry in entries:
            check.apply_update(entry.update)
        for _, state in snapshots:
            Doc().apply_update(state)
    except Exception as exc:  # pycrdt's errors are untyped
        raise InvalidRequest("archive: holds an update that is not a valid Yjs update") from exc
    return doc, entries, snapshots


async def import_archive(
    store: Store, data: Any, *, name: str | None = None, config: Config | None = None
) -> str:
    """Restore an archive (parsed JSON) into an empty document; return the document's name.

    The document is ``name`` or the archive's own name; it must not exist
    (:class:`DocumentExists`). Log entries keep their seqs, times, clients, users
    and update bytes: seqs that the archive skips (retention merged them) are
    filled with empty updates that are then merged away with ``replace_range``,
    so versions come out identical. Snapshots are restored at their seqs (their
    ``at`` becomes the import time). On failure, the partial document is deleted.
    Raises :class:`InvalidRequest` for a malformed archive or name.
    """
    config = config or Config()
    archived_name, entries, snapshots = _parse(data)
    doc = name or archived_name
    if not valid_name(doc, config):
        raise InvalidRequest(f"{NAME_RULE.format(max=config.max_name_length)} (got {doc!r})")
    if await store.document(doc) is not None:
        raise DocumentExists(f"document {doc!r} already exists; import only into a new name")
    snapshot_at = dict(snapshots)
    batch: list[NewEntry] = []

    async def push(seq: int, entry: NewEntry) -> None:
        nonlocal batch
        batch.append(entry)
        if seq in snapshot_at or len(batch) >= _IMPORT_BATCH:
            await store.append(batch, {doc: snapshot_at[seq]} if seq in snapshot_at else None)
            batch = []

    try:
        previous = 0
        for entry in entries:
            for filler in range(previous + 1, entry.seq):
                await push(filler, NewEntry(doc, _EMPTY_UPDATE, entry.at, "import"))
            await push(entry.seq, NewEntry(doc, entry.update, entry.at, entry.client, entry.user))
            previous = entry.seq
        if batch:
            await store.append(batch)
        previous = 0
        for entry in entries:
            if entry.seq - previous > 1:  # merge the fillers away
                await store.replace_range(doc, previous + 1, entry.seq, entry)
            previous = entry.seq
    except CollabError:
        await store.delete(doc)
        raise
    return doc
