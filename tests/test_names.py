"""collab.names: which names are documents, and how a raw URL path becomes one."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab.config import Config
from collab.errors import InvalidName
from collab.names import parse_path, valid_name

CONFIG = Config()
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~:@+=,-"

segments = st.text(alphabet=ALPHABET, min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)


def valid_names() -> st.SearchStrategy[str]:
    """Names the rule accepts: 1 to 6 segments, at most ``max_name_length`` characters."""
    return (
        st.lists(segments, min_size=1, max_size=6)
        .map("/".join)
        .filter(lambda name: len(name) <= CONFIG.max_name_length)
    )


#: Characters no name may hold: controls, space, punctuation, non-ASCII. Not '%', which
#: in a raw path starts an escape (``%41`` is ``A``); an encoded '%' (``%25``) is refused.
outside = st.characters(
    exclude_characters=ALPHABET + "/%", exclude_categories=["Cs"]
) | st.sampled_from("\t\n\r\x00 é")


def encode(name: str, safe: str) -> str:
    """``name`` as a raw path: each segment percent-encoded, '/' kept between them."""
    return "/" + "/".join(quote(segment, safe=safe) for segment in name.split("/"))


@given(valid_names(), st.sampled_from(["", ":@+=,~"]))
def test_a_valid_name_encoded_segment_wise_parses_back(name: str, safe: str) -> None:
    assert valid_name(name, CONFIG)
    assert parse_path(encode(name, safe), CONFIG) == name
    assert parse_path("/collab" + encode(name, safe), CONFIG, root="/collab") == name


@given(valid_names(), outside, st.data())
def test_a_raw_character_outside_the_rule_is_refused(
    name: str, bad: str, data: st.DataObject
) -> None:
    raw = encode(name, ALPHABET)
    at = data.draw(st.integers(1, len(raw)), label="at")
    with pytest.raises(InvalidName):
        parse_path(raw[:at] + bad + raw[at:], CONFIG)


@given(valid_names(), outside | st.sampled_from("/%"), st.data())
def test_a_percent_encoded_character_outside_the_rule_is_refused(
    name: str, bad: str, data: st.DataObject
) -> None:
    # '/' is among them: %2F inside a segment never splits it into two.
    raw = encode(name, ALPHABET)
    at = data.draw(st.integers(1, len(raw)), label="at")
    with pytest.raises(InvalidName):
        parse_path(raw[:at] + quote(bad, safe="") + raw[at:], CONFIG)


#: Arbitrary paths, made of what paths are made of: separators, dots, escapes, controls.
pieces = st.sampled_from(
    ["/", ".", "..", "%", "%2F", "%2e", "%0A", "%00", "%FF", "%41", "a", "Z9", ":@", "\t", " ", "é"]
)
paths = st.lists(pieces | st.characters(), max_size=20).map("".join)


@given(paths, st.booleans())
def test_any_path_is_a_valid_name_or_invalid_name(path: str, rooted: bool) -> None:
    try:
        name = parse_path("/" + path if rooted else path, CONFIG)
    except InvalidName:
        return
    assert valid_name(name, CONFIG)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("/team-a/notes", "team-a/notes"),
        ("/json:notebook:1234", "json:notebook:1234"),
        ("/a@b", "a@b"),
        ("/json%3Anotebook%3A1234", "json:notebook:1234"),
        ("/x/history", "x/history"),
        ("/" + "x" * 128, "x" * 128),
    ],
)
def test_names_that_real_rooms_have(raw: str, name: str) -> None:
    assert parse_path(raw, CONFIG) == name


@pytest.mark.parametrize(
    "raw",
    [
        "/",
        "",
        "notes",
        "/team-a/",
        "//notes",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/..",
        "/%2E%2E",
        "/a%2Fb",
        "/bad\tname",
        "/bad%09name",
        "/bad%0Aname",
        "/bad%00name",
        "/" + "x" * 129,
    ],
)
def test_paths_that_name_nothing(raw: str) -> None:
    with pytest.raises(InvalidName):
        parse_path(raw, CONFIG)


def test_a_path_outside_the_mount_is_refused() -> None:
    assert parse_path("/collab/team-a/notes", CONFIG, root="/collab/") == "team-a/notes"
    for raw in ("/other/notes", "/collabx/notes", "/collab", "/collab/"):
        with pytest.raises(InvalidName):
            parse_path(raw, CONFIG, root="/collab")
