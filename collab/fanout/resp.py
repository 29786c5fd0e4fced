"""The Redis protocol (RESP2), as much of it as pub/sub needs, sans I/O.

:func:`command` encodes a command; :class:`Parser` turns the bytes a connection
receives into replies, however the bytes were cut. A reply is ``bytes`` (a bulk or
simple string), ``int``, ``None`` (a null), a :class:`ReplyError`, or a list of
replies (pub/sub's pushes are three-element lists: kind, channel, data).

Why not redis-py for this: its asyncio pub/sub costs a task wake-up, a timeout and
some forty Python calls per message, and its pipeline about as much per publish;
at phase A's load that was most of what a second process added (docs/performance.md).
"""

from __future__ import annotations

from typing import TypeAlias

from collab.errors import ProtocolError

__all__ = ["Parser", "Reply", "ReplyError", "command"]


class ReplyError(str):
    """An error reply (``-ERR ...``): the command failed; the connection is still usable."""

    __slots__ = ()


Reply: TypeAlias = "bytes | int | ReplyError | list[Reply] | None"

_CRLF = b"\r\n"
#: Pub/sub's replies nest one array deep; deeper than this is not Redis talking.
_MAX_DEPTH = 32


def command(*args: bytes) -> bytes:
    """``args`` as one RESP command (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(_CRLF)
    return b"".join(parts)


class _Incomplete(Exception):
    """The buffer ends inside a reply; wait for more bytes."""


class Parser:
    """Replies out of a byte stream, fed in pieces of any size.

    Raises :class:`~collab.errors.ProtocolError` from :meth:`feed` on bytes that are
    not RESP2; the stream cannot be trusted after that (close the connection).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Reply]:
        """Every reply that ``data`` completes, in order (none if it completes none)."""
        buffer = self._buffer
        buffer += data
        replies: list[Reply] = []
        pos = 0
        end = len(buffer)
        while pos < end:
            try:
                reply, pos = self._parse(buffer, pos)
            except _Incomplete:
                break
            except ValueError:  # a length or an integer that is not a number
                raise ProtocolError("not a Redis reply: a bad number") from None
            replies.append(reply)
        del buffer[:pos]
        return replies

    def _parse(self, buffer: bytearray, pos: int, depth: int = 0) -> tuple[Reply, int]:
        if depth > _MAX_DEPTH:
            raise ProtocolError(f"not a Redis reply: arrays nested over {_MAX_DEPTH} deep")
        eol = buffer.find(_CRLF, pos)
        if eol < 0:
            raise _Incomplete
        kind = buffer[pos]
        if kind == 0x24:  # $ bulk string
            length = int(buffer[pos + 1 : eol])
            if length < 0:
                return None, eol + 2
            start = eol + 2
            stop = start + length
            if stop + 2 > len(buffer):
                raise _Incomplete
            if buffer[stop : stop + 2] != _CRLF:
                raise ProtocolError("not a Redis reply: a bulk string longer than it said")
            return bytes(buffer[start:stop]), stop + 2
        if kind == 0x2A:  # * array
            count = int(buffer[pos + 1 : eol])
            if count < 0:
                return None, eol + 2
            items: list[Reply] = []
            pos = eol + 2
            for _ in range(count):
                item, pos = self._parse(buffer, pos, depth + 1)
                items.append(item)
            return items, pos
        if kind == 0x3A:  # : integer
            return int(buffer[pos + 1 : eol]), eol + 2
        if kind == 0x2B:  # + simple string
            return bytes(buffer[pos + 1 : eol]), eol + 2
        if kind == 0x2D:  # - error
            return ReplyError(buffer[pos + 1 : eol].decode(errors="replace")), eol + 2
        raise ProtocolError(f"not a Redis reply: {bytes(buffer[pos : pos + 16])!r}")
