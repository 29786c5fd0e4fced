"""collab.fanout.resp: RESP2 commands out, replies in, however the bytes are cut."""

from __future__ import annotations

import pytest

from collab.errors import ProtocolError
from collab.fanout.resp import Parser, ReplyError, command

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


@pytest.mark.parametrize("junk", [b"hello\r\n", b"$x\r\n", b"*1\r\n:1.5\r\n"])
def test_not_resp_is_a_protocol_error(junk: bytes) -> None:
    with pytest.raises(ProtocolError):
        Parser().feed(junk)
