"""collab.wire.fallback: POST batches and event streams, as bytes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab.errors import ProtocolError
from collab.wire.fallback import (
    KEEPALIVE,
    EventStreamParser,
    close_event,
    decode_batch,
    encode_batch,
    message_event,
)

messages = st.lists(st.binary(max_size=300), min_size=1, max_size=20)


@given(messages)
def test_a_batch_holds_its_messages_in_order(batch: list[bytes]) -> None:
    assert decode_batch(encode_batch(batch)) == batch


def test_a_batch_is_varuint8array_framed() -> None:
    assert encode_batch([b"\x00\x00\x01\x00", b"\x03"]) == b"\x04\x00\x00\x01\x00\x01\x03"
    assert encode_batch([b"x" * 200]) == b"\xc8\x01" + b"x" * 200


@pytest.mark.parametrize(
    "body",
    [b"", b"\x05abc", b"\x80", b"\x01a\x02b", b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f"],
)
def test_a_broken_batch_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_batch(body)


def test_events_are_numbered_base64_messages_and_a_json_close() -> None:
    assert message_event(7, b"\x00\x01\x02") == b"id: 7\ndata: AAEC\n\n"
    assert close_event(9, 1002, "bad frame") == (
        b'id: 9\nevent: close\ndata: {"code": 1002, "reason": "bad frame"}\n\n'
    )
    assert KEEPALIVE.startswith(b":") and KEEPALIVE.endswith(b"\n\n")


@given(messages, st.data())
def test_the_parser_reads_any_chunking_of_a_stream(batch: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(message_event(i + 1, m) + KEEPALIVE for i, m in enumerate(batch))
    stream += close_event(len(batch) + 1, 1001, "bye ✓")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    parser = EventStreamParser()
    events = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        events += parser.feed(stream[start:end])
    assert [e.message() for e in events[:-1]] == batch
    assert [e.id for e in events] == [str(i + 1) for i in range(len(batch) + 1)]
    assert events[-1].event == "close" and events[-1].close() == (1001, "bye ✓")
    assert parser.last_event_id == str(len(batch) + 1)
    assert parser.comments == len(batch)


def test_the_parser_follows_the_event_stream_rules() -> None:
    parser = EventStreamParser()
    events = parser.feed(
        b"retry: 100\r\nid: 3\r\ndata: a\r\ndata: b\r\n\r\n"  # CRLF, data lines joined by LF
        b"id: 4\n\n"  # no data: not dispatched, but the id counts
        b"data:AAA=\n\n"  # no space after the colon; the last id carries over
        b": comment\nevent: x\ndata\n\n"  # a field with no value
    )
    assert [(e.id, e.event, e.data) for e in events] == [
        ("3", "message", "a\nb"),
        ("4", "message", "AAA="),
        ("4", "x", ""),
    ]
    assert events[1].message() == base64.b64decode("AAA=")
    assert parser.comments == 1
    with pytest.raises(ProtocolError):
        events[0].message()
    with pytest.raises(ProtocolError):
        events[0].close()
