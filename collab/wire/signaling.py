"""y-webrtc's signaling messages, sans I/O: JSON text in, typed messages out, and back.

y-webrtc peers find each other through a signaling server that relays small JSON
messages between the subscribers of a *topic* (y-webrtc's room name; for collab
a document name). Every message is one JSON object with a ``"type"``::

    {"type": "subscribe",   "topics": ["notes", ...]}
    {"type": "unsubscribe", "topics": ["notes", ...]}
    {"type": "publish",     "topic": "notes", "data": <any JSON>}
    {"type": "ping"}                      answered by {"type": "pong"}

The server adds ``"clients"`` (how many peers the topic has) to each publish it
relays, as y-webrtc's own server (bin/server.js) does. This module only knows
the shapes: :func:`decode` turns one frame into a message, :func:`encode` a
message into the text of one frame. It never awaits and knows no topic table
(that is :mod:`collab.core.signaling`).

Bad input raises :class:`~collab.errors.InvalidSignal` (close code 1007) and
nothing else: not JSON, not UTF-8, not an object, a field of the wrong type,
``NaN``/``Infinity``, nesting deeper than :data:`MAX_DEPTH`. A well-formed
message of a type this server does not know decodes to :class:`Unknown`, which
the server ignores, as the reference server does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Final, TypeAlias

from collab.errors import InvalidSignal

__all__ = [
    "MAX_DEPTH",
    "JSONValue",
    "Message",
    "Ping",
    "Pong",
    "Publish",
    "Subscribe",
    "Unknown",
    "Unsubscribe",
    "decode",
    "encode",
    "strict_json",
]

#: Deepest nesting of arrays and objects accepted in ``data``. y-webrtc's deepest
#: message (an ICE candidate inside a signal) is 3 levels; the bound keeps the
#: re-encoding of a relayed message far from Python's recursion limit.
MAX_DEPTH: Final = 32

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Relay to this connection what is published to ``topics`` from now on."""

    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop relaying ``topics`` to this connection."""

    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Publish:
    """``data`` for every subscriber of ``topic``, the sender included.

    ``clients`` is set by the server on what it relays (the topic's subscriber
    count); what a peer sends in it is ignored.
    """

    topic: str
    data: JSONValue = None
    clients: int | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """An application-level keepalive: y-webrtc reconnects after 30 s without a message."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a :class:`Ping`."""


@dataclass(frozen=True, slots=True)
class Unknown:
    """A well-formed message of a type this server does not handle (ignored)."""

    type: str


Message = Subscribe | Unsubscribe | Publish | Ping | Pong | Unknown


def decode(frame: bytes | str) -> Message:
    """Decode one signaling frame (a text frame, or a binary one holding UTF-8 JSON).

    Raises:
        InvalidSignal: the frame is not one JSON object of the shapes above.
    """
    if isinstance(frame, bytes):
        try:
            frame = frame.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSignal("signaling frame is not UTF-8") from None
    try:
        value = json.loads(frame, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise InvalidSignal("signaling frame is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidSignal("signaling message is not a JSON object")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise InvalidSignal("signaling message has no string 'type'")
    if kind == "subscribe":
        return Subscribe(_topics(value))
    if kind == "unsubscribe":
        return Unsubscribe(_topics(value))
    if kind == "publish":
        topic = value.get("topic")
        if not isinstance(topic, str):
            raise InvalidSignal("publish has no string 'topic'")
        data = value.get("data")
        if _depth(data) > MAX_DEPTH:
            raise InvalidSignal(f"publish data nests deeper than {MAX_DEPTH} levels")
        clients = value.get("clients")
        if clients is not None and (type(clients) is not int or clients < 0):
            raise InvalidSignal("publish 'clients' is not a count")
        return Publish(topic, data, clients)
    if kind == "ping":
        return Ping()
    if kind == "pong":
        return Pong()
    return Unknown(kind)


def encode(message: Message) -> str:
    """The text of one frame carrying ``message`` (the inverse of :func:`decode`).

    Non-ASCII characters are escaped, so that a lone surrogate a peer sent as
    ``"\\ud800"`` is relayed as that escape and never breaks the UTF-8 of a frame.
    """
    body: dict[str, JSONValue]
    match message:
        case Subscribe(topics):
            body = {"type": "subscribe", "topics": list(topics)}
        case Unsubscribe(topics):
            body = {"type": "unsubscribe", "topics": list(topics)}
        case Publish(topic, data, clients):
            body = {"type": "publish", "topic": topic, "data": data}
            if clients is not None:
                body["clients"] = clients
        case Ping():
            body = {"type": "ping"}
        case Pong():
            body = {"type": "pong"}
        case Unknown(kind):
            body = {"type": kind}
        case _:
            raise TypeError(f"not a signaling message: {message!r}")
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def _topics(value: dict[str, JSONValue]) -> tuple[str, ...]:
    topics = value.get("topics", [])  # absent means none, as in y-webrtc's server
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise InvalidSignal(f"{value['type']} 'topics' is not a list of strings")
    return tuple(topics)  # type: ignore[arg-type]  # checked just above


def _depth(value: JSONValue) -> int:
    """How deeply ``value`` nests arrays and objects (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[JSONValue, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: list[JSONValue] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest


def strict_json(text: str) -> JSONValue:
    """``text`` as JSON that can be relayed as it is: no ``NaN``/``Infinity``, finite
    numbers, nesting at most :data:`MAX_DEPTH` deep (room events use it too).

    Raises:
        ValueError: anything else.
    """
    try:
        value: JSONValue = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if _depth(value) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400: JSON, but no number a peer can be sent back
        raise ValueError(f"{text} is out of range")
    return number
