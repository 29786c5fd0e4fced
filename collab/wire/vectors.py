"""Yjs state vectors and the client ranges an update carries, sans I/O.

A state vector (lib0 v1, what ``Doc.get_state()`` and a sync step 1 carry) is a
varUint count, then per client a varUint client id and a varUint clock: the
client's structs ``0 .. clock - 1`` are known. Decoding is bounds-checked like
every read in :mod:`collab.wire.protocol`; bad bytes raise
:class:`~collab.errors.InvalidPayload`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from collab.errors import InvalidPayload, ProtocolError
from collab.wire.protocol import read_var_uint, write_var_uint

__all__ = [
    "StateVector",
    "check_update_header",
    "decode_state_vector",
    "encode_state_vector",
    "merge",
    "update_ranges",
]

#: client id -> clock: every struct of that client below the clock is known.
StateVector = dict[int, int]


def decode_state_vector(data: bytes) -> StateVector:
    """The clocks a lib0-encoded state vector holds (a client listed twice keeps its larger).

    Raises:
        InvalidPayload: truncated, trailing bytes, or numbers past 2**53 - 1.
    """
    try:
        count, pos = read_var_uint(data, 0)
        if count > len(data):  # each pair takes at least two bytes: refuse absurd counts early
            raise ProtocolError(f"state vector claims {count} clients in {len(data)} bytes")
        clocks: StateVector = {}
        for _ in range(count):
            client, pos = read_var_uint(data, pos)
            clock, pos = read_var_uint(data, pos)
            clocks[client] = max(clock, clocks.get(client, 0))
    except ProtocolError as exc:
        raise InvalidPayload(f"invalid state vector: {exc.reason}") from None
    if pos != len(data):
        raise InvalidPayload("invalid state vector: trailing bytes")
    return clocks


def encode_state_vector(clocks: Mapping[int, int]) -> bytes:
    """The lib0 encoding of ``clocks`` (clients in ascending order, zero clocks left out)."""
    kept = sorted((client, clock) for client, clock in clocks.items() if clock > 0)
    out = bytearray(write_var_uint(len(kept)))
    for client, clock in kept:
        out += write_var_uint(client)
        out += write_var_uint(clock)
    return bytes(out)


def merge(vectors: Iterable[Mapping[int, int]]) -> StateVector:
    """Per client, the largest clock of any of ``vectors``: what any of them knew."""
    merged: StateVector = {}
    for vector in vectors:
        for client, clock in vector.items():
            if clock > merged.get(client, 0):
                merged[client] = clock
    return merged


def check_update_header(update: bytes) -> None:
    """Refuse an update whose first counts cannot be true, before Yrs reads it.

    A v1 update starts with the number of clients and the first client's number of
    structs; each takes at least a byte of what follows. Yrs sizes its work by the
    counts it reads, so a dozen random bytes claiming 2**50 clients stall the
    process for a second or more (measured with pycrdt 0.14.13: up to 1.8 s for
    14 bytes; state vectors likewise). Two varUint reads: cheap for every update.

    Raises:
        InvalidPayload: a count larger than the update.
    """
    try:
        clients, pos = read_var_uint(update, 0)
        if clients > len(update):
            raise ProtocolError(f"claims {clients} clients in {len(update)} bytes")
        if clients:
            structs, pos = read_var_uint(update, pos)
            if structs > len(update):
                raise ProtocolError(f"claims {structs} structs in {len(update)} bytes")
    except ProtocolError as exc:
        raise InvalidPayload(f"invalid update: {exc.reason}") from None


def update_ranges(update: bytes) -> dict[int, tuple[int, int]]:
    """Per client whose structs ``update`` (lib0 v1) carries, the clocks ``[start, end)`` they span.

    Unlike Yrs's ``get_state(update)``, which leaves out clients whose structs start
    past clock 0, this sees incremental updates too. It walks every struct without
    building anything: the layout is Yjs's ``writeStructs`` (an info byte; origins,
    parent and content by its bits; content lengths counted in UTF-16 code units, as
    Yjs and Yrs count clocks). The delete set after the structs is not read.

    Raises:
        InvalidPayload: the structs do not parse.
    """
    try:
        return _Walker(update).structs()
    except (ProtocolError, UnicodeDecodeError, IndexError) as exc:
        reason = exc.reason if isinstance(exc, ProtocolError) else "bad bytes"
        raise InvalidPayload(f"invalid update: {reason}") from None


class _Walker:
    """A cursor over one update's bytes (bounds-checked by :func:`read_var_uint`)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uint(self) -> int:
        value, self.pos = read_var_uint(self.data, self.pos)
        return value

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ProtocolError("update ends inside a struct")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def skip(self, count: int) -> None:
        if self.pos + count > len(self.data):
            raise ProtocolError("update ends inside a struct")
        self.pos += count

    def string(self) -> str:
        length = self.uint()
        start = self.pos
        self.skip(length)
        return self.data[start : self.pos].decode("utf-8")

    def var_int(self) -> None:
        byte = self.byte()
        while byte & 0x80:
            byte = self.byte()

    def any(self, depth: int = 0) -> None:
        if depth > 64:
            raise ProtocolError("nested too deep")
        kind = self.byte()
        if kind in (127, 126, 121, 120):  # undefined, null, false, true
            return
        if kind == 125:
            self.var_int()
        elif kind == 124:
            self.skip(4)
        elif kind in (123, 122):
            self.skip(8)
        elif kind in (119, 116):  # string, bytes
            self.skip(self.uint())
        elif kind == 118:  # object
            for _ in range(self._count()):
                self.skip(self.uint())
                self.any(depth + 1)
        elif kind == 117:  # array
            for _ in range(self._count()):
                self.any(depth + 1)
        else:
            raise ProtocolError(f"unknown value type {kind}")

    def _count(self) -> int:
        count = self.uint()
        if count > len(self.data) - self.pos:  # every entry takes at least a byte
            raise ProtocolError(f"claims {count} entries in {len(self.data) - self.pos} bytes")
        return count

    def structs(self) -> dict[int, tuple[int, int]]:
        ranges: dict[int, tuple[int, int]] = {}
        for _ in range(self._count()):
            count = self._count()
            client = self.uint()
            start = self.uint()
            clock = start
            for _ in range(count):
                clock += self.struct()
            if clock > start:
                low, high = ranges.get(client, (start, clock))
                ranges[client] = (min(low, start), max(high, clock))
        return ranges

    def struct(self) -> int:
        """Read one struct; return its length in clock units."""
        info = self.byte()
        content = info & 0x1F
        if content in (0, 10):  # GC, Skip
            return self.uint()
        if info & 0x80:  # origin
            self.uint(), self.uint()
        if info & 0x40:  # right origin
            self.uint(), self.uint()
        if not info & 0xC0:  # no origin: the parent is spelled out
            if self.uint() == 1:
                self.skip(self.uint())  # a root type's name
            else:
                self.uint(), self.uint()  # the parent item's id
            if info & 0x20:
                self.skip(self.uint())  # parentSub: a map key
        if content == 1:  # deleted
            return self.uint()
        if content == 2:  # JSON
            count = self._count()
            for _ in range(count):
                self.skip(self.uint())
            return count
        if content in (3, 5):  # binary, embed
            self.skip(self.uint())
            return 1
        if content == 4:  # string: its length in UTF-16 code units
            text = self.string()
            return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)
        if content == 6:  # format
            self.skip(self.uint())
            self.skip(self.uint())
            return 1
        if content == 7:  # type
            if self.uint() in (3, 5):  # XmlElement, XmlHook: a name
                self.skip(self.uint())
            return 1
        if content == 8:  # any
            count = self._count()
            for _ in range(count):
                self.any()
            return count
        if content == 9:  # subdocument
            self.skip(self.uint())
            self.any()
            return 1
        raise ProtocolError(f"unknown content type {content}")
