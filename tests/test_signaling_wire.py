"""collab.wire.signaling: y-webrtc's JSON messages in and out, and only InvalidSignal on garbage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab.errors import InvalidSignal
from collab.wire import signaling
from collab.wire.signaling import (
    MAX_DEPTH,
    JSONValue,
    Ping,
    Pong,
    Publish,
    Subscribe,
    Unknown,
    Unsubscribe,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
topics = st.lists(st.text(max_size=20), max_size=5).map(tuple)
messages = st.one_of(
    st.builds(Subscribe, topics),
    st.builds(Unsubscribe, topics),
    st.builds(Publish, st.text(max_size=20), json_values, st.none() | st.integers(0, 2**53)),
    st.just(Ping()),
    st.just(Pong()),
    st.builds(
        Unknown,
        st.text(max_size=12).filter(
            lambda t: t not in ("subscribe", "unsubscribe", "publish", "ping", "pong")
        ),
    ),
)


@given(messages)
def test_encode_then_decode_gives_the_message_back(message: signaling.Message) -> None:
    text = signaling.encode(message)
    assert text.isascii()  # escaped: a frame's UTF-8 can never break
    assert signaling.decode(text) == message
    assert signaling.decode(text.encode()) == message  # a binary frame of UTF-8 JSON too


@given(st.text(max_size=300))
def test_random_text_raises_only_invalid_signal(text: str) -> None:
    try:
        signaling.decode(text)
    except InvalidSignal:
        pass


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_invalid_signal(data: bytes) -> None:
    try:
        signaling.decode(data)
    except InvalidSignal:
        pass


# Objects shaped almost like messages reach every field check, not just the JSON parser.
almost_messages = st.dictionaries(
    st.sampled_from(["type", "topics", "topic", "data", "clients"]) | st.text(max_size=5),
    st.sampled_from(["subscribe", "unsubscribe", "publish", "ping", "pong"]) | json_values,
    max_size=5,
)


@given(almost_messages | json_values)
def test_json_of_any_shape_raises_only_invalid_signal(value: object) -> None:
    try:
        message = signaling.decode(json.dumps(value))
    except InvalidSignal:
        return
    # Whatever decodes can be relayed: it encodes back to JSON.
    json.loads(signaling.encode(message))


def test_the_shapes_y_webrtc_sends() -> None:
    assert signaling.decode('{"type":"subscribe","topics":["a","b"]}') == Subscribe(("a", "b"))
    assert signaling.decode('{"type":"unsubscribe","topics":["a"]}') == Unsubscribe(("a",))
    assert signaling.decode('{"type":"subscribe"}') == Subscribe(())  # as bin/server.js
    assert signaling.decode('{"type":"ping"}') == Ping()
    offer: JSONValue = {
        "to": "p2",
        "from": "p1",
        "type": "signal",
        "signal": {"type": "offer", "sdp": "v=0"},
    }
    assert signaling.decode(
        json.dumps({"type": "publish", "topic": "notes", "data": offer})
    ) == Publish("notes", offer)
    assert signaling.decode('{"type":"hello","x":1}') == Unknown("hello")


def test_a_relayed_publish_carries_clients_like_y_webrtcs_server() -> None:
    text = signaling.encode(Publish("notes", {"type": "announce", "from": "p1"}, clients=3))
    assert json.loads(text) == {
        "type": "publish",
        "topic": "notes",
        "data": {"type": "announce", "from": "p1"},
        "clients": 3,
    }
    assert json.loads(signaling.encode(Pong())) == {"type": "pong"}


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("{bad", "not JSON"),
        ("", "not JSON"),
        ('{"type":"ping"} x', "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("[1, 2]", "not a JSON object"),
        ("null", "not a JSON object"),
        ('{"topics":[]}', "no string 'type'"),
        ('{"type":7}', "no string 'type'"),
        ('{"type":"subscribe","topics":"notes"}', "not a list of strings"),
        ('{"type":"unsubscribe","topics":["a",1]}', "not a list of strings"),
        ('{"type":"publish","data":1}', "no string 'topic'"),
        ('{"type":"publish","topic":["a"]}', "no string 'topic'"),
        ('{"type":"publish","topic":"a","clients":-1}', "not a count"),
        ('{"type":"publish","topic":"a","clients":true}', "not a count"),
        ('{"type":"publish","topic":"a","data":NaN}', "not JSON"),
        ('{"type":"publish","topic":"a","data":-Infinity}', "not JSON"),
        ('{"type":"publish","topic":"a","data":1e400}', "not JSON"),
        ('{"type":"publish","topic":"a","data":' + "1" * 5000 + "}", "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ],
)
def test_garbage_is_refused_with_a_reason(frame: str | bytes, reason: str) -> None:
    with pytest.raises(InvalidSignal, match=reason) as caught:
        signaling.decode(frame)
    assert caught.value.close_code == 1007


def test_data_nesting_is_bounded() -> None:
    def nested(depth: int) -> str:
        return "[" * depth + "]" * depth

    ok = '{"type":"publish","topic":"a","data":' + nested(MAX_DEPTH) + "}"
    assert isinstance(signaling.decode(ok), Publish)
    too_deep = '{"type":"publish","topic":"a","data":' + nested(MAX_DEPTH + 1) + "}"
    with pytest.raises(InvalidSignal, match="deeper than"):
        signaling.decode(too_deep)
    wide: JSONValue = {"k": [[{"x": [1]}]] * 50}  # wide is fine: only depth counts
    assert signaling.decode(json.dumps({"type": "publish", "topic": "a", "data": wide})) == Publish(
        "a", wide
    )


def test_a_lone_surrogate_is_relayed_as_an_escape() -> None:
    message = signaling.decode('{"type":"publish","topic":"a","data":"\\ud800"}')
    text = signaling.encode(message)
    text.encode("utf-8")  # would raise if the surrogate were written raw
    assert '"\\ud800"' in text
