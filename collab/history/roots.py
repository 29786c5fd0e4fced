"""The root types of a document, read from its encoded state, and their JSON values.

A Yjs update does not say what type a root is: a ``Doc`` that applies an update
knows its roots' names, but each one stays "undefined" until some code asks for it
as a ``Text``, ``Map``, ``Array`` or ``XmlFragment``. Asking with the wrong type is
not harmless in pycrdt 0.14 (reading a formatted ``Text`` as an ``Array`` never
returns). So :func:`root_kinds` reads the update itself (lib0 v1 encoding) and
infers each root's kind from the items whose parent is that root:

- an item with a key (``parentSub``) belongs to a map;
- string, embed and format content belongs to a text;
- nested XML elements and XML texts (without strings) belong to an XML fragment;
- any other content (JSON values, binary, nested types, sub-documents) to an array.

An item that names no parent (it has an origin) inherits the parent of its
origin's item. A root whose items are all deleted has no kind (``None``): it is
empty whatever its type was. Only the part of the format needed for this is
decoded; the delete set at the end is ignored. Malformed bytes raise
:class:`~collab.errors.InvalidPayload`.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Mapping
from typing import Any, Literal

from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from collab.errors import InvalidPayload

__all__ = ["Kind", "root_kinds", "roots_json", "to_json"]

Kind = Literal["text", "map", "array", "xml"]

# Item content references (the low 5 bits of an item's info byte).
_GC, _DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC, _SKIP = range(11)
_XML_ELEMENT, _XML_HOOK, _XML_TEXT = 3, 5, 6
_HAS_ORIGIN, _HAS_RIGHT_ORIGIN, _HAS_PARENT_SUB = 0x80, 0x40, 0x20

_ID = tuple[int, int]  # (client, clock)


class _Reader:
    """A bounds-checked cursor over lib0-encoded bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise InvalidPayload("update ends early")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise InvalidPayload("update ends early")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def var_uint(self) -> int:
        value, shift = 0, 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 70:
                raise InvalidPayload("varUint too long")

    def var_int(self) -> int:
        b = self.byte()
        value, negative, shift = b & 0x3F, bool(b & 0x40), 6
        while b & 0x80:
            b = self.byte()
            value |= (b & 0x7F) << shift
            shift += 7
            if shift > 70:
                raise InvalidPayload("varInt too long")
        return -value if negative else value

    def string(self) -> str:
        try:
            return self.take(self.var_uint()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidPayload("update holds invalid UTF-8") from exc

    def any(self, depth: int = 0) -> None:
        """Skip one lib0 ``Any`` value."""
        if depth > 100:
            raise InvalidPayload("update nests values too deeply")
        tag = self.byte()
        if tag in (127, 126, 121, 120):  # undefined, null, false, true
            return
        if tag == 125:
            self.var_int()
        elif tag == 124:
            self.take(4)
        elif tag in (123, 122):
            self.take(8)
        elif tag == 119:
            self.string()
        elif tag == 118:
            for _ in range(self.var_uint()):
                self.string()
                self.any(depth + 1)
        elif tag == 117:
            for _ in range(self.var_uint()):
                self.any(depth + 1)
        elif tag == 116:
            self.take(self.var_uint())
        else:
            raise InvalidPayload(f"unknown value tag {tag}")


def _content(reader: _Reader, ref: int) -> tuple[int, Kind | None]:
    """Read an item's content: its length in clock units and the kind of parent it implies."""
    if ref == _DELETED:
        return reader.var_uint(), None
    if ref == _JSON:
        count = reader.var_uint()
        for _ in range(count):
            reader.string()
        return count, "array"
    if ref == _BINARY:
        reader.take(reader.var_uint())
        return 1, "array"
    if ref == _STRING:
        text = reader.string()
        return len(text.encode("utf-16-le")) // 2, "text"  # clocks count UTF-16 units
    if ref == _EMBED:
        reader.string()
        return 1, "text"
    if ref == _FORMAT:
        reader.string()
        reader.string()
        return 1, "text"
    if ref == _TYPE:
        type_ref = reader.var_uint()
        if type_ref in (_XML_ELEMENT, _XML_HOOK):
            reader.string()
        return 1, "xml" if type_ref in (_XML_ELEMENT, _XML_TEXT) else "array"
    if ref == _ANY:
        count = reader.var_uint()
        for _ in range(count):
            reader.any()
        return count, "array"
    if ref == _DOC:
        reader.string()
        reader.any()
        return 1, "array"
    raise InvalidPayload(f"unknown item content {ref}")


# Which evidence wins when a root's items disagree (a text may embed types, for instance).
_PRIORITY: dict[Kind, int] = {"map": 3, "text": 2, "array": 1, "xml": 0}


def root_kinds(update: bytes) -> dict[str, Kind | None]:
    """Every root named in ``update`` (a v1 update, e.g. ``Doc.get_update()``), with its kind."""
    reader = _Reader(update)
    # Per item: (client, clock, length, parent or None, origin, kind, has key)
    starts: dict[int, list[int]] = {}
    items: dict[_ID, tuple[int, str | _ID | None, _ID | None, Kind | None, bool]] = {}
    for _ in range(reader.var_uint()):
        count, client, clock = reader.var_uint(), reader.var_uint(), reader.var_uint()
        for _ in range(count):
            info = reader.byte()
            ref = info & 0x1F
            if ref in (_GC, _SKIP):
                clock += reader.var_uint()
                continue
            origin = (reader.var_uint(), reader.var_uint()) if info & _HAS_ORIGIN else None
            right = (reader.var_uint(), reader.var_uint()) if info & _HAS_RIGHT_ORIGIN else None
            parent: str | _ID | None = None
            keyed = False
            if origin is None and right is None:
                if reader.var_uint() == 1:
                    parent = reader.string()
                else:
                    parent = (reader.var_uint(), reader.var_uint())
                if info & _HAS_PARENT_SUB:
                    reader.string()
                    keyed = True
            length, kind = _content(reader, ref)
            starts.setdefault(client, []).append(clock)
            items[(client, clock)] = (length, parent, origin or right, kind, keyed)
            clock += length

    def containing(ident: _ID) -> _ID | None:
        clocks = starts.get(ident[0])
        if not clocks:
            return None
        i = bisect.bisect_right(clocks, ident[1]) - 1
        if i < 0 or ident[1] >= clocks[i] + items[(ident[0], clocks[i])][0]:
            return None
        return (ident[0], clocks[i])

    for starts_of_client in starts.values():
        starts_of_client.sort()
    parents: dict[_ID, str | _ID] = {k: v[1] for k, v in items.items() if v[1] is not None}
    pending = [k for k, v in items.items() if v[1] is None and v[2] is not None]
    while pending:  # origins may point at items that are resolved later: repeat until stable
        still: list[_ID] = []
        for key in pending:
            source = containing(items[key][2])  # type: ignore[arg-type]
            if source is not None and source in parents:
                parents[key] = parents[source]
            else:
                still.append(key)
        if len(still) == len(pending):
            break
        pending = still

    kinds: dict[str, Kind | None] = {}
    for key, parent in parents.items():
        if not isinstance(parent, str):
            continue
        _, _, _, kind, keyed = items[key]
        found: Kind | None = "map" if keyed else kind
        current = kinds.get(parent)
        if current is None or (found is not None and _PRIORITY[found] > _PRIORITY[current]):
            kinds[parent] = found
    return kinds


_TYPES: dict[Kind, type[Any]] = {"text": Text, "map": Map, "array": Array, "xml": XmlFragment}


def roots_json(state: bytes, text_root: str | None = None) -> dict[str, Any]:
    """Every root of the document whose full state is ``state``, as JSON values.

    A text becomes a string, a map an object, an array a list, an XML fragment its
    XML string; a root without a kind (all deleted) becomes ``None``. ``text_root``
    (if given) is always read as a text, even when the document never held one.
    """
    kinds: dict[str, Kind | None] = dict(root_kinds(state))
    if text_root is not None:
        kinds[text_root] = "text"
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    result: dict[str, Any] = {}
    for name in sorted(kinds):
        kind = kinds[name]
        result[name] = None if kind is None else to_json(doc.get(name, type=_TYPES[kind]))
    return result


def to_json(value: Any) -> Any:
    """A shared or plain value as JSON: integral floats become ints, bytes base64."""
    if isinstance(value, Text | XmlFragment | XmlElement | XmlText):
        return str(value)
    if isinstance(value, Map):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, Array):
        return [to_json(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
