"""Helpers that fill a store with real pycrdt edits, shared by the history, CLI and API tests.

An :class:`Editors` object plays a server and several editors: each local edit
produces a real Yjs update, which is appended to the store as one log entry and
applied to the "server" Doc, whose text after every seq is recorded (``texts``) as
the oracle history must reproduce.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Map, Text

from collab.store import NewEntry, Store


class Editors:
    def __init__(self, store: Store, doc: str, count: int, users: list[str | None]) -> None:
        self.store = store
        self.doc = doc
        self.server: Doc[Any] = Doc()
        self.server_text = self.server.get("text", type=Text)
        self.editors: list[Doc[Any]] = [Doc() for _ in range(count)]
        self.users = users
        self.texts: dict[int, str] = {0: ""}
        self.at = 1_700_000_000.0

    def text(self, editor: int) -> str:
        return str(self.editors[editor].get("text", type=Text))

    async def _log(self, editor: int, update: bytes, gap: float, snapshot: bool) -> int:
        self.at += gap
        self.server.apply_update(update)
        state = {self.doc: self.server.get_update()} if snapshot else None
        entry = NewEntry(self.doc, update, self.at, f"client{editor}", self.users[editor])
        [seq] = await self.store.append([entry], state)
        self.texts[seq] = str(self.server_text)
        return seq

    async def insert(
        self, editor: int, index: int, value: str, gap: float = 1.0, snapshot: bool = False
    ) -> int:
        """Insert ``value`` at code point ``index`` (clamped) of the editor's text; log it."""
        doc = self.editors[editor]
        text = doc.get("text", type=Text)
        current = str(text)
        index = min(index, len(current))
        before = doc.get_state()
        text.insert(len(current[:index].encode("utf-8")), value)  # pycrdt counts UTF-8 bytes
        return await self._log(editor, doc.get_update(before), gap, snapshot)

    async def delete(
        self, editor: int, start: int, length: int, gap: float = 1.0, snapshot: bool = False
    ) -> int | None:
        """Delete code points ``start .. start+length`` (clamped); ``None`` if nothing to delete."""
        doc = self.editors[editor]
        text = doc.get("text", type=Text)
        current = str(text)
        start = min(start, len(current))
        end = min(start + length, len(current))
        if end == start:
            return None
        before = doc.get_state()
        first = len(current[:start].encode("utf-8"))
        del text[first : first + len(current[start:end].encode("utf-8"))]
        return await self._log(editor, doc.get_update(before), gap, snapshot)

    async def set_meta(self, editor: int, key: str, value: Any, gap: float = 1.0) -> int:
        """Set ``key`` in a root Map named "meta" (a second root type)."""
        doc = self.editors[editor]
        before = doc.get_state()
        doc.get("meta", type=Map)[key] = value
        return await self._log(editor, doc.get_update(before), gap, False)

    def sync(self, editor: int) -> None:
        """The editor receives everything the server has (as on a reconnect)."""
        doc = self.editors[editor]
        doc.apply_update(self.server.get_update(doc.get_state()))
