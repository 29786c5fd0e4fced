"""Updates computed on a copy of a document: text edits, and the change that restores an old state.

Every function here takes a ``Doc`` (the live one, or an old version), never
changes it, and returns the Yjs update that, applied to that Doc, makes the
change: the edit is made on a fork (a fresh Doc, so a fresh client id, holding
the same state) and the fork's update since the original's state vector is
returned. Applying it is the caller's business (a room, through its usual path).

Changes are minimal: text is changed by a character diff (common prefix and
suffix, then difflib on what lies between), so characters that stay keep their
identity, and editors' carets and concurrent edits stay where they were; maps
change only the keys whose values differ, arrays and XML children only the
items that differ. Indices and lengths are in Unicode code points, as Python
counts them (pycrdt counts UTF-8 bytes; the conversion happens here).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from collab.errors import InvalidRequest
from collab.history.roots import Kind, root_kinds, to_json

__all__ = ["converge", "delete_text", "fork", "insert_text", "replace_text"]

_Ops = list[tuple[str, int, int, int, int]]


def fork(doc: Doc[Any]) -> Doc[Any]:
    """A new Doc (its own client id) holding exactly ``doc``'s state."""
    copy: Doc[Any] = Doc()
    copy.apply_update(doc.get_update())
    return copy


def _since(copy: Doc[Any], original: Doc[Any]) -> bytes:
    return copy.get_update(original.get_state())


def _offset(text: str, index: int) -> int:
    """The UTF-8 byte offset of code point ``index`` of ``text``."""
    return len(text[:index].encode("utf-8"))


def _check_text_root(doc: Doc[Any], root: str) -> None:
    kind = root_kinds(doc.get_update()).get(root)
    if kind not in (None, "text"):
        raise InvalidRequest(f"root {root!r} is a {kind}, not a text: send a binary update")


def insert_text(doc: Doc[Any], root: str, index: int, value: str) -> bytes:
    """Insert ``value`` at code point ``index`` of text root ``root``.

    Raises :class:`InvalidRequest` for an index outside ``0..len(text)`` or a
    root that is not a text.
    """
    _check_text_root(doc, root)
    copy = fork(doc)
    text = copy.get(root, type=Text)
    current = str(text)
    if not 0 <= index <= len(current):
        raise InvalidRequest(f"index {index} is outside the text (0..{len(current)})")
    text.insert(_offset(current, index), value)
    return _since(copy, doc)


def delete_text(doc: Doc[Any], root: str, index: int, length: int) -> bytes:
    """Delete ``length`` code points from ``index`` of text root ``root``."""
    _check_text_root(doc, root)
    copy = fork(doc)
    text = copy.get(root, type=Text)
    current = str(text)
    if length < 0 or not 0 <= index <= index + length <= len(current):
        raise InvalidRequest(f"range {index}+{length} is outside the text (0..{len(current)})")
    start = _offset(current, index)
    del text[start : start + len(current[index : index + length].encode("utf-8"))]
    return _since(copy, doc)


def replace_text(doc: Doc[Any], root: str, value: str, base: Doc[Any] | None = None) -> bytes:
    """Make text root ``root`` read ``value``, by a minimal character diff.

    The diff is taken against ``base`` (an earlier state of the same document:
    the text the caller read) when given, else against ``doc``. With a base, the
    update touches only characters the base had, so whatever others typed since
    survives when the update is applied to the live document.
    """
    origin = base if base is not None else doc
    _check_text_root(origin, root)
    copy = fork(origin)
    _diff_into(copy.get(root, type=Text), value)
    return _since(copy, origin)


def _opcodes(old: Sequence[Any], new: Sequence[Any]) -> _Ops:
    """Edit operations from ``old`` to ``new``: prefix and suffix kept, difflib between."""
    start, limit = 0, min(len(old), len(new))
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and old[len(old) - 1 - end] == new[len(new) - 1 - end]:
        end += 1
    a, b = old[start : len(old) - end], new[start : len(new) - end]
    if not a and not b:
        return []
    if not a or not b or len(a) * len(b) > 4_000_000:  # too big to compare: one replace
        return [("replace", start, start + len(a), start, start + len(b))]
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [
        (op, start + i1, start + i2, start + j1, start + j2)
        for op, i1, i2, j1, j2 in matcher.get_opcodes()
        if op != "equal"
    ]


def _diff_into(text: Text | XmlText, value: str) -> None:
    """Change ``text`` to read ``value`` (formatting of kept characters stays)."""
    current = str(text)
    # Right to left, so earlier offsets stay valid.
    for _op, i1, i2, j1, j2 in reversed(_opcodes(current, value)):
        start = _offset(current, i1)
        if i2 > i1:
            del text[start : start + len(current[i1:i2].encode("utf-8"))]
        if j2 > j1:
            text.insert(start, value[j1:j2])


# -- converge: make a document equal an old state of itself ------------------------------------

_Unit = tuple[Any, str]  # (a character or an embed, its attributes as sorted JSON)


def _units(text: Text | XmlText) -> list[_Unit]:
    units: list[_Unit] = []
    for insert, attrs in text.diff():
        key = json.dumps(to_json(attrs or {}), sort_keys=True)
        if isinstance(insert, str):
            units.extend((char, key) for char in insert)
        else:
            units.append((insert, key))
    return units


def _width(unit: _Unit) -> int:
    """A unit's length in pycrdt's text offsets (UTF-8 bytes; an embed counts 1)."""
    return len(unit[0].encode("utf-8")) if isinstance(unit[0], str) else 1


def _converge_text(live: Text | XmlText, target: Text | XmlText) -> None:
    """Make ``live`` hold ``target``'s characters, embeds and formatting."""
    old, new = _units(live), _units(target)
    offsets = [0]
    for unit in old:
        offsets.append(offsets[-1] + _width(unit))
    for _op, i1, i2, j1, j2 in reversed(_opcodes(old, new)):
        if i2 > i1:
            del live[offsets[i1] : offsets[i2]]
        at = offsets[i1]
        for unit in new[j1:j2]:
            value, key = unit
            # Attributes are always given (``{}`` for none): an insert without them
            # would take on the formatting of the character before it.
            attrs: dict[str, Any] = json.loads(key)
            if isinstance(value, str):
                live.insert(at, value, attrs)
            else:
                live.insert_embed(at, value, attrs)
            at += _width(unit)


def _attributes(node: XmlElement) -> dict[str, Any]:
    # XmlAttributesView.__iter__ is typed as returning an Iterable; it is an iterator.
    return dict(cast(Iterator[tuple[str, Any]], node.attributes.__iter__()))


def _signature(node: XmlElement | XmlText | XmlFragment) -> str:
    """Everything that makes an XML node what it is, as one comparable string."""
    if isinstance(node, XmlText):
        return "T" + json.dumps([[to_json(i), to_json(a)] for i, a in node.diff()])
    if isinstance(node, XmlElement):
        attrs = json.dumps(to_json(_attributes(node)), sort_keys=True)
        children = ",".join(_signature(child) for child in node.children)
        return f"E{node.tag}{attrs}[{children}]"
    return ""


def _copy(node: XmlElement | XmlText | XmlFragment) -> XmlElement | XmlText:
    """An unintegrated copy of ``node`` (its attributes, children and formatting)."""
    if isinstance(node, XmlText):
        return XmlText()  # filled after insertion: formatted text needs an integrated node
    assert isinstance(node, XmlElement)
    return XmlElement(str(node.tag), _attributes(node))


def _fill(live: XmlElement | XmlText, target: XmlElement | XmlText | XmlFragment) -> None:
    if isinstance(live, XmlText):
        assert isinstance(target, XmlText)
        _converge_text(live, target)
        return
    assert isinstance(target, XmlElement)
    for index, child in enumerate(target.children):
        inserted = live.children.insert(index, _copy(child))
        _fill(inserted, child)


def _converge_xml(live: XmlFragment | XmlElement, target: XmlFragment | XmlElement) -> None:
    """Make ``live``'s children equal ``target``'s: equal children stay; a changed child
    of the same tag is changed in place (recursively); others are replaced."""
    old, new = list(live.children), list(target.children)
    old_sig, new_sig = [_signature(c) for c in old], [_signature(c) for c in new]
    for op, i1, i2, j1, j2 in reversed(_opcodes(old_sig, new_sig)):
        if (
            op == "replace"
            and i2 - i1 == j2 - j1
            and all(_same_kind(old[i1 + k], new[j1 + k]) for k in range(i2 - i1))
        ):
            for k in range(i2 - i1):
                _converge_node(old[i1 + k], new[j1 + k])
            continue
        if i2 > i1:
            del live.children[i1:i2]
        for k, child in enumerate(new[j1:j2]):
            inserted = live.children.insert(i1 + k, _copy(child))
            _fill(inserted, child)


def _same_kind(a: Any, b: Any) -> bool:
    if isinstance(a, XmlText) and isinstance(b, XmlText):
        return True
    return isinstance(a, XmlElement) and isinstance(b, XmlElement) and a.tag == b.tag


def _converge_node(live: Any, target: Any) -> None:
    if isinstance(live, XmlText):
        _converge_text(live, target)
        return
    wanted = _attributes(target)
    for key in _attributes(live):
        if key not in wanted:
            del live.attributes[key]
    for key, value in wanted.items():
        if to_json(live.attributes.get(key)) != to_json(value):
            live.attributes[key] = value
    _converge_xml(live, target)


def _plain(value: Any) -> Any:
    """A value to write into a map or array: shared types become new ones with the same content."""
    if isinstance(value, Map):
        return Map({key: _plain(item) for key, item in value.items()})
    if isinstance(value, Array):
        return Array([_plain(item) for item in value])
    if isinstance(value, Text):
        return Text(str(value))
    return value


def _converge_map(live: Map[Any], target: Map[Any]) -> None:
    wanted = dict(target.items())
    for key in list(live.keys()):
        if key not in wanted:
            del live[key]
    for key, value in wanted.items():
        if key not in live or to_json(live[key]) != to_json(value):
            live[key] = _plain(value)


def _converge_array(live: Array[Any], target: Array[Any]) -> None:
    old = [json.dumps(to_json(item), sort_keys=True) for item in live]
    new_items = list(target)
    new = [json.dumps(to_json(item), sort_keys=True) for item in new_items]
    for _op, i1, i2, j1, j2 in reversed(_opcodes(old, new)):
        if i2 > i1:
            del live[i1:i2]
        for k, item in enumerate(new_items[j1:j2]):
            live.insert(i1 + k, _plain(item))


_TYPES: Mapping[Kind, type[Any]] = {"text": Text, "map": Map, "array": Array, "xml": XmlFragment}


def converge(live: Doc[Any], target: Doc[Any]) -> bytes:
    """The update that makes ``live`` read exactly as ``target`` (an old state of it).

    Every root is brought back: texts (characters, embeds, formatting) and XML by
    minimal diffs, maps key by key, arrays item by item; a root the target does not
    have (or has emptied) is emptied. Applied as one forward change, it is itself
    history: restoring the state before it undoes it.
    """
    kinds: dict[str, Kind | None] = dict(root_kinds(target.get_update()))
    for name, kind in root_kinds(live.get_update()).items():
        if kinds.get(name) is None:
            kinds[name] = kind
    copy = fork(live)
    target_kinds = root_kinds(target.get_update())
    with copy.transaction():
        for name, kind in sorted(kinds.items()):
            if kind is None:
                continue
            mine = copy.get(name, type=_TYPES[kind])
            theirs: Any
            if target_kinds.get(name) is None:
                theirs = Doc().get(name, type=_TYPES[kind])  # empty
            else:
                theirs = target.get(name, type=_TYPES[kind])
            if kind == "text":
                _converge_text(mine, theirs)
            elif kind == "xml":
                _converge_xml(mine, theirs)
            elif kind == "map":
                _converge_map(mine, theirs)
            else:
                _converge_array(mine, theirs)
    return _since(copy, live)
