"""The messages processes exchange about one document over Redis, sans I/O.

Every message is published on the document's own channel and starts with a fixed
header, so a receiver can ignore its own messages and notice lost ones before it
looks at the payload::

    version   1 byte   (1)
    kind      1 byte   (Kind)
    origin    16 bytes the publishing process (random at its start)
    seq       8 bytes  big-endian: 1, 2, 3, ... per origin and document
    target    16 bytes the one process a reply is for; zeros: every process
    payload   the rest

Payloads: ``UPDATE`` an update; ``AWARENESS`` an awareness update (the
y-protocols encoding); ``SYNC_REQUEST`` the sender's state vector (step 1);
``SYNC_REPLY`` a length-prefixed update (step 2: what the requester lacks)
followed by the replier's state vector, so the requester can send back what the
replier lacks as a ``SYNC_DIFF`` (an update).

:func:`decode` raises :class:`~collab.errors.ProtocolError` on anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from collab.errors import ProtocolError

__all__ = ["BROADCAST", "ORIGIN_BYTES", "Envelope", "Kind", "decode", "encode", "encode_reply"]

VERSION: Final = 1
ORIGIN_BYTES: Final = 16
#: The target of a message for every process.
BROADCAST: Final = bytes(ORIGIN_BYTES)

_HEADER = struct.Struct(">BB16sQ16s")
_LENGTH = struct.Struct(">I")


class Kind(IntEnum):
    UPDATE = 0
    AWARENESS = 1
    SYNC_REQUEST = 2
    SYNC_REPLY = 3
    SYNC_DIFF = 4


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: Kind
    origin: bytes
    seq: int
    target: bytes
    payload: bytes

    def reply(self) -> tuple[bytes, bytes]:
        """A ``SYNC_REPLY``'s two parts: (update for the requester, replier's state vector).

        Raises:
            ProtocolError: the payload is not two such parts.
        """
        if len(self.payload) < _LENGTH.size:
            raise ProtocolError("truncated sync reply")
        (length,) = _LENGTH.unpack_from(self.payload)
        end = _LENGTH.size + length
        if end > len(self.payload):
            raise ProtocolError("sync reply length runs past the end")
        return self.payload[_LENGTH.size : end], self.payload[end:]


def encode(kind: Kind, origin: bytes, seq: int, payload: bytes, target: bytes = BROADCAST) -> bytes:
    """One message, ready to publish (``payload`` is copied once, behind the header)."""
    return _HEADER.pack(VERSION, kind, origin, seq, target) + payload


def encode_reply(origin: bytes, seq: int, target: bytes, update: bytes, state: bytes) -> bytes:
    """A ``SYNC_REPLY`` for ``target``: ``update`` it lacks and our state vector ``state``."""
    return encode(Kind.SYNC_REPLY, origin, seq, _LENGTH.pack(len(update)) + update + state, target)


def decode(data: bytes) -> Envelope:
    """The message in ``data``.

    Raises:
        ProtocolError: too short, another version, or an unknown kind.
    """
    if len(data) < _HEADER.size:
        raise ProtocolError("relay message shorter than its header")
    version, kind, origin, seq, target = _HEADER.unpack_from(data)
    if version != VERSION:
        raise ProtocolError(f"relay message version {version} (this collab speaks {VERSION})")
    try:
        the_kind = Kind(kind)
    except ValueError:
        raise ProtocolError(f"unknown relay message kind {kind}") from None
    return Envelope(the_kind, origin, seq, target, data[_HEADER.size :])
