"""Yjs state vectors and the client ranges an update carries, sans I/O.

A state vector (lib0 v1, what ``Doc.get_state()`` and a sync step 1 carry) is a
varUint count, then per client a varUint client id and a varUint clock: the
client's structs ``0 .. clock - 1`` are known. Decoding is bounds-checked like
every read in :mod:`collab.wire.protocol`; bad bytes raise
:class:`~collab.errors.InvalidPayload`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pycrdt import get_state

from collab.errors import InvalidPayload, ProtocolError
from collab.wire.protocol import read_var_uint, write_var_uint

__all__ = [
    "StateVector",
    "check_update_header",
    "decode_state_vector",
    "encode_state_vector",
    "merge",
    "update_ends",
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


def update_ends(update: bytes) -> StateVector:
    """Per client whose structs in ``update`` start at clock 0, the clock past its last one.

    Computed by Yrs (``pycrdt.get_state``), which parses the whole update. Like
    Yjs's ``encodeStateVectorFromUpdate`` it leaves out clients whose structs start
    later (an incremental update): those are not a state, only a range.

    Raises:
        InvalidPayload: ``update`` is not a Yjs v1 update.
    """
    try:
        vector = get_state(update)
    except Exception:  # pycrdt raises bare ValueError / RuntimeError / PanicException
        raise InvalidPayload("invalid update") from None
    return decode_state_vector(vector)


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
