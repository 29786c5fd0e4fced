"""Hostile WebSocket frames for a collab server, from a ``random.Random``.

One generator serves both the hypothesis test (tests/test_fuzz.py draws a
``random.Random`` from hypothesis, so failures shrink) and the long run
(scripts/fuzz/run.py). :func:`frame` returns one :class:`Frame`: binary bytes or
a text string, and the kind that made it. The kinds (``KINDS``):

- ``random``: random bytes, 0-64 of them;
- ``truncated_varint``: a frame that ends inside a varUint (type, sub-type or length);
- ``oversize_length``: a length prefix far past the end of the frame (up to 2**53);
- ``huge_varint``: a varUint longer than lib0 allows, or past 2**53 - 1;
- ``wrong_type``: a message type no one defined, or a sync sub-type past 2, with a body;
- ``text``: a text frame (the protocol is binary only);
- ``garbage_awareness``: awareness updates with random entries, bad JSON, bad UTF-8,
  absurd counts;
- ``garbage_sync``: a step 1, step 2 or update whose payload is random bytes, or a
  state vector / update claiming absurd counts;
- ``cut_update``: a real Yjs update (made by pycrdt) cut short, its length prefix
  either kept (the frame ends early) or fixed (the update itself ends early);
- ``corrupt_update``: a real Yjs update with a few bytes changed;
- ``trailing``: a valid empty message with bytes after it;
- ``big``: a frame over ``max_size`` bytes, when one is given (the server closes with 1009).

Every frame is one a server must survive: it may close that one connection (and
should say why), and must never apply anything of it to the document that an
honest editor would not see.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Text

from collab.wire.protocol import write_var_uint

__all__ = ["KINDS", "Frame", "frame"]


@dataclass(frozen=True, slots=True)
class Frame:
    kind: str
    data: bytes | str


def _u(value: int) -> bytes:
    """A varUint of any size (lib0 refuses past 2**53 - 1; hostile peers need not)."""
    if value <= 2**53 - 1:
        return write_var_uint(value)
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def _bytes(rng: random.Random, low: int = 0, high: int = 64) -> bytes:
    return rng.randbytes(rng.randint(low, high))


def _huge(rng: random.Random) -> int:
    return rng.choice([2**31, 2**32 - 1, 2**40, 2**53 - 1, rng.randint(2**20, 2**53 - 1)])


def _random(rng: random.Random) -> bytes:
    return _bytes(rng)


def _truncated_varint(rng: random.Random) -> bytes:
    prefix = rng.choice([b"", b"\x00", b"\x00\x02", b"\x00\x01", b"\x01", b"\x00\x00"])
    return prefix + bytes(0x80 | rng.randint(0, 0x7F) for _ in range(rng.randint(1, 7)))


def _oversize_length(rng: random.Random) -> bytes:
    head = rng.choice([b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x01", b"\x02\x00", b"\x65"])
    return head + _u(_huge(rng)) + _bytes(rng, 0, 16)


def _huge_varint(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        varint = b"\xff" * rng.randint(8, 12) + b"\x01"  # longer than 53 bits
    else:
        varint = _u(2**53 + rng.randint(0, 2**60))
    return rng.choice([b"", b"\x00", b"\x00\x02", b"\x01"]) + varint + _bytes(rng, 0, 8)


def _wrong_type(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        kind = rng.choice([4, 5, 99, 102, 127, 128, 300, 2**20, 2**53 - 1])
        return _u(kind) + _bytes(rng, 0, 32)
    sub = rng.choice([3, 4, 7, 100, 2**30])
    return b"\x00" + _u(sub) + _u(4) + _bytes(rng, 4, 4)


def _text(rng: random.Random) -> str:
    pieces = [
        "",
        "hello",
        json.dumps({"type": "subscribe", "topics": ["notes"]}),
        "\x00\x02\x01",
        "\ud7ff\ue000 ✓ 🙂",
    ]
    return rng.choice(pieces) + "".join(
        chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 20))
    )


def _awareness_payload(rng: random.Random) -> bytes:
    choice = rng.randint(0, 5)
    if choice == 0:
        return _bytes(rng)
    if choice == 1:  # absurd count
        return _u(_huge(rng)) + _bytes(rng, 0, 8)
    entries = rng.randint(1, 3)
    out = _u(entries)
    for _ in range(entries):
        out += _u(rng.randint(0, 2**32)) + _u(rng.randint(0, 2**53 - 1))
        if choice == 2:
            state = b"{not json"
        elif choice == 3:
            state = b"\xff\xfe\xfd"  # not UTF-8
        elif choice == 4:
            state = json.dumps({"user": {"name": "x" * rng.randint(0, 40)}}).encode()
        else:
            state = _bytes(rng, 0, 12)
        out += _u(len(state)) + state
    return out


def _garbage_awareness(rng: random.Random) -> bytes:
    payload = _awareness_payload(rng)
    if rng.random() < 0.2:
        return b"\x01" + payload  # no length prefix at all
    return b"\x01" + _u(len(payload)) + payload


def _garbage_sync(rng: random.Random) -> bytes:
    sub = rng.randint(0, 2)
    choice = rng.randint(0, 2)
    if choice == 0:
        payload = _bytes(rng)
    elif choice == 1:  # a count no payload this size can hold
        payload = _u(_huge(rng)) + _bytes(rng, 0, 12)
    else:  # plausible counts, random structs
        payload = _u(rng.randint(1, 3)) + _u(rng.randint(1, 3)) + _bytes(rng, 2, 40)
    return b"\x00" + _u(sub) + _u(len(payload)) + payload


def _real_update(rng: random.Random) -> bytes:
    doc: Doc[Any] = Doc(client_id=rng.randint(1, 2**32))
    text = doc.get("text", type=Text)
    for _ in range(rng.randint(1, 4)):
        text.insert(rng.randint(0, len(text)), "".join(rng.choice("abc ✓🙂") for _ in range(5)))
    if len(text) > 2 and rng.random() < 0.5:
        del text[0 : rng.randint(1, len(text) - 1)]
    return doc.get_update()


def _cut_update(rng: random.Random) -> bytes:
    update = _real_update(rng)
    cut = rng.randint(1, len(update) - 1)
    sub = rng.choice([1, 2])
    if rng.random() < 0.5:
        return b"\x00" + _u(sub) + _u(len(update)) + update[:cut]  # the frame ends early
    return b"\x00" + _u(sub) + _u(cut) + update[:cut]  # the update ends early


def _corrupt_update(rng: random.Random) -> bytes:
    update = bytearray(_real_update(rng))
    for _ in range(rng.randint(1, 3)):
        update[rng.randrange(len(update))] = rng.randint(0, 255)
    return b"\x00\x02" + _u(len(update)) + bytes(update)


def _trailing(rng: random.Random) -> bytes:
    valid = rng.choice([b"\x03", b"\x00\x00\x01\x00", b"\x01\x01\x00"])
    return valid + _bytes(rng, 1, 8)


GENERATORS: dict[str, Callable[[random.Random], bytes | str]] = {
    "random": _random,
    "truncated_varint": _truncated_varint,
    "oversize_length": _oversize_length,
    "huge_varint": _huge_varint,
    "wrong_type": _wrong_type,
    "text": _text,
    "garbage_awareness": _garbage_awareness,
    "garbage_sync": _garbage_sync,
    "cut_update": _cut_update,
    "corrupt_update": _corrupt_update,
    "trailing": _trailing,
}

KINDS = (*GENERATORS, "big")


def frame(rng: random.Random, max_size: int | None = None) -> Frame:
    """One hostile frame. With ``max_size`` (the server's ``max_message_size``), about
    one frame in 200 is a binary frame just over it."""
    if max_size is not None and rng.random() < 0.005:
        return Frame("big", b"\x00\x02" + _u(max_size) + bytes(max_size))
    kind = rng.choice(list(GENERATORS))
    return Frame(kind, GENERATORS[kind](rng))
