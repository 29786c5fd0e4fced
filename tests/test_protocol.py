"""collab.protocol: frames in, messages out, and only ProtocolError on bad bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab.errors import ProtocolError
from collab.wire import protocol
from collab.wire.protocol import (
    Auth,
    Awareness,
    AwarenessEntry,
    Event,
    QueryAwareness,
    Saved,
    SyncStep1,
    SyncStep2,
    Update,
)

payloads = st.binary(max_size=600)
messages = st.one_of(
    st.builds(SyncStep1, payloads),
    st.builds(SyncStep2, payloads),
    st.builds(Update, payloads),
    st.builds(Awareness, payloads),
    st.just(QueryAwareness()),
    st.builds(Auth, st.text(max_size=50)),
    st.builds(Saved, st.integers(0, 2**53 - 1)),
    st.builds(Event, st.text(max_size=80)),
)
json_states = st.one_of(
    st.just("null"),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3).map(
        lambda d: __import__("json").dumps(d, ensure_ascii=False)
    ),
)
entries = st.builds(
    AwarenessEntry, st.integers(0, 2**53 - 1), st.integers(0, 2**53 - 1), json_states
)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2**53 - 1, b"\xff\xff\xff\xff\xff\xff\xff\x0f"),
    ],
)
def test_var_uint_edges(value: int, encoded: bytes) -> None:
    assert protocol.write_var_uint(value) == encoded
    assert protocol.read_var_uint(encoded, 0) == (value, len(encoded))


@given(st.integers(0, 2**53 - 1))
def test_var_uint_round_trip(value: int) -> None:
    encoded = protocol.write_var_uint(value)
    assert protocol.read_var_uint(encoded, 0) == (value, len(encoded))


def test_var_uint_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        protocol.write_var_uint(-1)
    with pytest.raises(ProtocolError):
        protocol.read_var_uint(b"\xff" * 9 + b"\x01", 0)


@given(messages)
def test_every_message_round_trips(message: protocol.Message) -> None:
    assert protocol.decode(protocol.encode(message)) == message


def test_update_frame_is_what_y_websocket_sends() -> None:
    # y-websocket: writeVarUint(0) writeVarUint(2) writeVarUint8Array(update)
    assert protocol.encode(Update(b"\x01\x02")) == b"\x00\x02\x02\x01\x02"
    assert protocol.encode(SyncStep1(b"\x00")) == b"\x00\x00\x01\x00"
    assert protocol.encode(QueryAwareness()) == b"\x03"
    assert protocol.encode(Auth("no")) == b"\x02\x00\x02no"


@given(messages, st.data())
def test_truncated_frames_raise_protocol_error(
    message: protocol.Message, data: st.DataObject
) -> None:
    frame = protocol.encode(message)
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(ProtocolError):
        protocol.decode(frame[:cut])


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_error(frame: bytes) -> None:
    try:
        protocol.decode(frame)
    except ProtocolError:
        pass


@given(st.binary(max_size=300))
def test_random_awareness_raises_only_protocol_error(payload: bytes) -> None:
    try:
        protocol.decode_awareness(payload)
    except ProtocolError:
        pass


def test_trailing_bytes_and_unknown_types_are_rejected() -> None:
    with pytest.raises(ProtocolError, match="trailing"):
        protocol.decode(protocol.encode(Update(b"ab")) + b"\x00")
    with pytest.raises(ProtocolError, match="unknown message type 7"):
        protocol.decode(b"\x07")
    with pytest.raises(ProtocolError, match="unknown sync message type 9"):
        protocol.decode(b"\x00\x09\x00")
    with pytest.raises(ProtocolError, match="runs past the end"):
        protocol.decode(b"\x00\x02\x05ab")
    with pytest.raises(ProtocolError):
        protocol.decode(b"")


@given(st.lists(entries, max_size=5))
def test_awareness_round_trips(items: list[AwarenessEntry]) -> None:
    assert protocol.decode_awareness(protocol.encode_awareness(items)) == items


@pytest.mark.parametrize("state", ["{oops", "[1,2]", "42", '"text"', "\xff"])
def test_awareness_state_must_be_an_object_or_null(state: str) -> None:
    payload = protocol.encode_awareness([AwarenessEntry(1, 1, state)])
    with pytest.raises(ProtocolError):
        protocol.decode_awareness(payload)


def test_awareness_rejects_invalid_utf8() -> None:
    payload = b"\x01\x01\x01\x02\xc3\x28"
    with pytest.raises(ProtocolError, match="UTF-8"):
        protocol.decode_awareness(payload)
