"""collab.fanout.resp: RESP2 commands out, replies in, however the bytes are cut."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collab.errors import ProtocolError
from collab.fanout.resp import Parser, Reply, ReplyError, command

#: A pub/sub message, a subscription confirmation, and what PUBLISH, AUTH and a bad
#: command answer, as Redis sends them back to back.
STREAM = (
    b"*3\r\n$7\r\nmessage\r\n$4\r\ndoc1\r\n$5\r\na\r\nbc\r\n"
    b"*3\r\n$9\r\nsubscribe\r\n$4\r\ndoc2\r\n:2\r\n"
    b":1\r\n+OK\r\n-ERR unknown command\r\n$-1\r\n*0\r\n$0\r\n\r\n"
)
REPLIES = [
    [b"message", b"doc1", b"a\r\nbc"],
    [b"subscribe", b"doc2", 2],
    1,
    b"OK",
    ReplyError("ERR unknown command"),
    None,
    [],
    b"",
]


def test_command_is_an_array_of_bulk_strings() -> None:
    assert command(b"PUBLISH", b"ch", b"\x00\r\n") == (
        b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$3\r\n\x00\r\n\r\n"
    )


def test_replies_at_once() -> None:
    assert Parser().feed(STREAM) == REPLIES


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_replies_cut_anywhere(cut: int) -> None:
    parser = Parser()
    assert parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:]) == REPLIES


def test_replies_a_byte_at_a_time() -> None:
    parser = Parser()
    replies = [reply for i in range(len(STREAM)) for reply in parser.feed(STREAM[i : i + 1])]
    assert replies == REPLIES
    assert isinstance(replies[4], ReplyError)


@pytest.mark.parametrize(
    "junk", [b"hello\r\n", b"$x\r\n", b"*1\r\n:1.5\r\n", b"$3\r\nabcXY", b"$1\r\nab\r\n"]
)
def test_not_resp_is_a_protocol_error(junk: bytes) -> None:
    with pytest.raises(ProtocolError):
        Parser().feed(junk)


# -- properties (hypothesis) --------------------------------------------------------------------

_replies = st.recursive(
    st.none()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.binary(max_size=40)
    | st.builds(ReplyError, st.text(alphabet=st.characters(blacklist_characters="\r\n"))),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)


def _encode(reply: Reply) -> bytes:
    """``reply`` as Redis would send it (simple strings are sent as bulk strings here)."""
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, ReplyError):
        return b"-" + str(reply).encode() + b"\r\n"
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    if isinstance(reply, bytes):
        return b"$%d\r\n%s\r\n" % (len(reply), reply)
    return b"*%d\r\n" % len(reply) + b"".join(_encode(item) for item in reply)


@given(replies=st.lists(_replies, max_size=6), data=st.data())
def test_any_replies_cut_anywhere_come_back_whole(
    replies: list[Reply], data: st.DataObject
) -> None:
    stream = b"".join(_encode(reply) for reply in replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser = Parser()
    got: list[Reply] = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += parser.feed(stream[start:stop])
    assert got == replies


@given(junk=st.binary(max_size=200))
def test_any_bytes_are_replies_or_a_protocol_error(junk: bytes) -> None:
    try:
        Parser().feed(junk)
    except ProtocolError:
        pass


def test_arrays_nested_past_any_real_reply_are_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Parser().feed(b"*1\r\n" * 5000 + b":1\r\n")
