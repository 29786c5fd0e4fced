"""The y-websocket wire protocol, sans I/O: bytes in, messages out, and back.

This module is the one place in collab that knows bytes. It never awaits and
knows no socket, event loop or ``Doc``: :func:`decode` turns one binary frame
into a message object, :func:`encode` turns a message object into one frame.
Payloads (state vectors, updates, awareness JSON) are carried as opaque bytes
here; whether *they* are valid is for the room to find out (pycrdt decodes them).

Frame layout (integers are lib0 varUint, unsigned LEB128)::

    0 sync       varUint sub-type (0 step 1, 1 step 2, 2 update), varUint8Array payload
    1 awareness  varUint8Array awareness update
    2 auth       varUint 0 (permission denied), varString reason
    3 query awareness (no body)

and our extension (sent only to clients that ask for it, see docs/protocol.md)::

    100 saved    varUint count of this client's updates that are now durable
    101 event    varString JSON: a typed room event (collab.core.events has its shape)

Every read is bounds-checked. Bad input raises :class:`~collab.errors.ProtocolError`
and nothing else: no ``IndexError``, no ``UnicodeDecodeError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from pycrdt import YMessageType, YSyncMessageType

from collab.errors import ProtocolError

__all__ = [
    "Auth",
    "Awareness",
    "AwarenessEntry",
    "Event",
    "Message",
    "MessageType",
    "QueryAwareness",
    "Saved",
    "SyncStep1",
    "SyncStep2",
    "SyncType",
    "Update",
    "decode",
    "decode_awareness",
    "decode_delete_set",
    "decode_state_vector",
    "encode",
    "encode_awareness",
    "read_var_uint",
    "write_var_uint",
]

#: varUints larger than this do not fit in a JavaScript safe integer (lib0's limit).
MAX_VAR_UINT: Final = 2**53 - 1


class MessageType(IntEnum):
    """The first varUint of every frame."""

    SYNC = YMessageType.SYNC
    AWARENESS = YMessageType.AWARENESS
    AUTH = 2
    QUERY_AWARENESS = 3
    #: collab extension: durability acknowledgement (docs/protocol.md).
    SAVED = 100
    #: collab extension: a typed room event, relayed between editors (docs/protocol.md).
    EVENT = 101


class SyncType(IntEnum):
    """The second varUint of a sync frame."""

    STEP1 = YSyncMessageType.SYNC_STEP1
    STEP2 = YSyncMessageType.SYNC_STEP2
    UPDATE = YSyncMessageType.SYNC_UPDATE


@dataclass(frozen=True, slots=True)
class SyncStep1:
    """The sender's state vector; the receiver answers with a :class:`SyncStep2`."""

    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    """Everything the receiver of a step 1 lacked, as one update."""

    update: bytes


@dataclass(frozen=True, slots=True)
class Update:
    """An incremental document update."""

    update: bytes


@dataclass(frozen=True, slots=True)
class Awareness:
    """An encoded awareness update (decode its entries with :func:`decode_awareness`)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    """A request for every awareness state the receiver knows."""


@dataclass(frozen=True, slots=True)
class Auth:
    """Permission denied, with a human-readable reason (the only auth message y-websocket has)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Saved:
    """collab extension: the first ``count`` updates this client sent are durable."""

    count: int


@dataclass(frozen=True, slots=True)
class Event:
    """collab extension: a room event, as JSON text (its shape is collab.core.events')."""

    payload: str


Message = SyncStep1 | SyncStep2 | Update | Awareness | QueryAwareness | Auth | Saved | Event


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's presence: ``state`` is its JSON text, ``"null"`` when it left."""

    client_id: int
    clock: int
    state: str

    @property
    def removed(self) -> bool:
        return self.state == "null"


# --- primitives ---------------------------------------------------------------------------


def write_var_uint(value: int) -> bytes:
    """Encode a non-negative integer as a lib0 varUint."""
    if 0 <= value < 0x80:  # one byte: message types, counts, short lengths (most calls)
        return _ONE_BYTE[value]
    if value < 0 or value > MAX_VAR_UINT:
        raise ValueError(f"varUint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def read_var_uint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Read a varUint at ``pos``; return ``(value, next_pos)``.

    Raises:
        ProtocolError: the frame ends inside the varUint, or it exceeds 2**53 - 1.
    """
    if pos < len(data):
        first = data[pos]
        if first < 0x80:  # one byte (most calls): no loop
            return first, pos + 1
    value = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise ProtocolError("truncated varUint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 53:
            raise ProtocolError("varUint too long")
    if value > MAX_VAR_UINT:
        raise ProtocolError("varUint too large")
    return value, pos


_ONE_BYTE = tuple(bytes([n]) for n in range(0x80))


def _read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = read_var_uint(data, pos)
    end = pos + length
    if end > len(data):
        raise ProtocolError(f"length prefix {length} runs past the end of the frame")
    return data[pos:end], end


def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _read_bytes(data, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError:
        raise ProtocolError("string is not UTF-8") from None


def _write_bytes(payload: bytes) -> bytes:
    return write_var_uint(len(payload)) + payload


def _write_string(text: str) -> bytes:
    return _write_bytes(text.encode("utf-8"))


def _expect_end(data: bytes, pos: int) -> None:
    if pos != len(data):
        raise ProtocolError(f"{len(data) - pos} trailing bytes after the message")


# --- frames -------------------------------------------------------------------------------


def decode(frame: bytes) -> Message:
    """Decode one binary WebSocket frame into a message.

    Raises:
        ProtocolError: the frame is empty, truncated, of an unknown type, or has
            trailing bytes. Payload *content* is not checked here.
    """
    kind, pos = read_var_uint(frame, 0)
    message: Message
    if kind == MessageType.SYNC:
        sub, pos = read_var_uint(frame, pos)
        payload, pos = _read_bytes(frame, pos)
        if sub == SyncType.STEP1:
            message = SyncStep1(payload)
        elif sub == SyncType.STEP2:
            message = SyncStep2(payload)
        elif sub == SyncType.UPDATE:
            message = Update(payload)
        else:
            raise ProtocolError(f"unknown sync message type {sub}")
    elif kind == MessageType.AWARENESS:
        payload, pos = _read_bytes(frame, pos)
        message = Awareness(payload)
    elif kind == MessageType.QUERY_AWARENESS:
        message = QueryAwareness()
    elif kind == MessageType.AUTH:
        sub, pos = read_var_uint(frame, pos)
        if sub != 0:
            raise ProtocolError(f"unknown auth message type {sub}")
        reason, pos = _read_string(frame, pos)
        message = Auth(reason)
    elif kind == MessageType.SAVED:
        count, pos = read_var_uint(frame, pos)
        message = Saved(count)
    elif kind == MessageType.EVENT:
        payload_text, pos = _read_string(frame, pos)
        message = Event(payload_text)
    else:
        raise ProtocolError(f"unknown message type {kind}")
    _expect_end(frame, pos)
    return message


def encode(message: Message) -> bytes:
    """Encode a message as one binary frame (the inverse of :func:`decode`)."""
    match message:
        case SyncStep1(state_vector):
            return bytes((MessageType.SYNC, SyncType.STEP1)) + _write_bytes(state_vector)
        case SyncStep2(update):
            return bytes((MessageType.SYNC, SyncType.STEP2)) + _write_bytes(update)
        case Update(update):
            return bytes((MessageType.SYNC, SyncType.UPDATE)) + _write_bytes(update)
        case Awareness(payload):
            return bytes((MessageType.AWARENESS,)) + _write_bytes(payload)
        case QueryAwareness():
            return bytes((MessageType.QUERY_AWARENESS,))
        case Auth(reason):
            return bytes((MessageType.AUTH, 0)) + _write_string(reason)
        case Saved(count):
            return write_var_uint(MessageType.SAVED) + write_var_uint(count)
        case Event(payload):
            return write_var_uint(MessageType.EVENT) + _write_string(payload)
    raise TypeError(f"not a message: {message!r}")


# --- state vectors and delete sets (what a read-only editor's update would change) -------


def decode_state_vector(payload: bytes) -> dict[int, int]:
    """A lib0 state vector (varUint count, then client and clock varUints) as a dict.

    Raises:
        ProtocolError: truncated, or trailing bytes.
    """
    count, pos = read_var_uint(payload, 0)
    found: dict[int, int] = {}
    for _ in range(count):
        client, pos = read_var_uint(payload, pos)
        clock, pos = read_var_uint(payload, pos)
        found[client] = clock
    _expect_end(payload, pos)
    return found


def decode_delete_set(update: bytes) -> dict[int, list[tuple[int, int]]] | None:
    """The delete set of a v1 update that holds no structs (``(clock, length)`` ranges
    per client), or ``None`` when it holds structs (its delete set is not read then).

    A step 2 that brings nothing new, and a Yjs deletion, are such updates.

    Raises:
        ProtocolError: truncated, or trailing bytes.
    """
    structs, pos = read_var_uint(update, 0)
    if structs:
        return None
    clients, pos = read_var_uint(update, pos)
    ranges: dict[int, list[tuple[int, int]]] = {}
    for _ in range(clients):
        client, pos = read_var_uint(update, pos)
        count, pos = read_var_uint(update, pos)
        mine = ranges.setdefault(client, [])
        for _ in range(count):
            clock, pos = read_var_uint(update, pos)
            length, pos = read_var_uint(update, pos)
            mine.append((clock, length))
    _expect_end(update, pos)
    return ranges


# --- awareness payloads --------------------------------------------------------------------


def decode_awareness(payload: bytes) -> list[AwarenessEntry]:
    """Decode and validate an awareness update.

    Each state must be JSON (an object, or ``null`` for a client that left), so
    that garbage is never relayed to other editors.

    Raises:
        ProtocolError: truncated, trailing bytes, or a state that is not JSON.
    """
    count, pos = read_var_uint(payload, 0)
    entries: list[AwarenessEntry] = []
    for _ in range(count):
        client_id, pos = read_var_uint(payload, pos)
        clock, pos = read_var_uint(payload, pos)
        state, pos = _read_string(payload, pos)
        try:
            parsed = json.loads(state)
        except ValueError:
            raise ProtocolError("awareness state is not JSON") from None
        if parsed is not None and not isinstance(parsed, dict):
            raise ProtocolError("awareness state is neither an object nor null")
        entries.append(AwarenessEntry(client_id, clock, state))
    _expect_end(payload, pos)
    return entries


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    """Encode awareness entries as one awareness update payload."""
    parts = [write_var_uint(len(entries))]
    for entry in entries:
        parts.append(write_var_uint(entry.client_id))
        parts.append(write_var_uint(entry.clock))
        parts.append(_write_string(entry.state))
    return b"".join(parts)
