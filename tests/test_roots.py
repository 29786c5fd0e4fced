"""Root kinds read from real pycrdt updates, and their JSON values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from collab.errors import InvalidPayload
from collab.history.roots import root_kinds, roots_json


def build() -> Doc[Any]:
    doc: Doc[Any] = Doc()
    text = doc.get("text", type=Text)
    text += "héllo 😀"
    text.insert(0, "中")
    text.format(0, 3, {"bold": True})
    gone = doc.get("gone", type=Text)
    gone += "abc"
    del gone[0:3]
    meta = doc.get("meta", type=Map)
    meta["n"] = 1
    meta["list"] = Array([1, "x", None])
    items = doc.get("items", type=Array)
    items.append("q")
    items.append(Map({"k": 2.5}))
    items.insert(0, True)
    xml = doc.get("xml", type=XmlFragment)
    xml.children.append(XmlElement("p", {"class": "a"}, [XmlText("hi")]))
    return doc


def test_kinds_and_json() -> None:
    update = build().get_update()
    assert root_kinds(update) == {
        "text": "text",
        "gone": None,
        "meta": "map",
        "items": "array",
        "xml": "xml",
    }
    assert roots_json(update, "text") == {
        "gone": None,
        "items": [True, "q", {"k": 2.5}],
        "meta": {"list": [1, "x", None], "n": 1},
        "text": "中héllo 😀",
        "xml": '<p class="a">hi</p>',
    }
    assert roots_json(Doc().get_update(), "body") == {"body": ""}


def test_malformed_updates() -> None:
    update = build().get_update()
    for bad in (update[:-40], b"\x01", b"\x01\x01\x00\x00\x1f"):
        with pytest.raises(InvalidPayload):
            root_kinds(bad)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3), st.integers(0, 30), st.sampled_from(["a", "😀", "中", "é\u0301"])
        ),
        min_size=1,
        max_size=30,
    )
)
def test_many_editors_text_is_a_text(edits: list[tuple[int, int, str]]) -> None:
    docs: list[Doc[Any]] = [Doc() for _ in range(4)]
    for editor, position, piece in edits:
        text = docs[editor].get("text", type=Text)
        current = str(text)
        text.insert(len(current[: min(position, len(current))].encode()), piece)
        if position % 3 == 0 and len(current) > 1:
            # The first character now (the insert may have put a new one there): pycrdt
            # counts UTF-8 bytes and panics when a deletion ends inside a character.
            del text[0 : len(str(text)[0].encode())]
        other = docs[(editor + 1) % 4]
        other.apply_update(docs[editor].get_update(other.get_state()))
    merged: Doc[Any] = Doc()
    for doc in docs:
        merged.apply_update(doc.get_update())
    kinds = root_kinds(merged.get_update())
    expected = str(merged.get("text", type=Text))
    assert kinds == {"text": "text" if expected else None}  # all deleted: no kind
    assert roots_json(merged.get_update(), "text") == {"text": expected}
