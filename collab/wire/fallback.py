"""The HTTP fallback's framing, sans I/O: y-websocket messages in POST bodies and event streams.

The fallback carries the y-websocket messages of :mod:`collab.wire.protocol`
byte for byte; this module only says how they are packed into HTTP
(docs/protocol.md, "HTTP fallback", has the whole exchange):

- **client to server**, a POST body is a *batch*: one or more messages, each
  as a lib0 varUint8Array (varUint length, then the message's bytes);
- **server to client**, a ``text/event-stream`` carries one event per message,
  its ``data`` the standard base64 of the message, its ``id`` a number that
  counts the session's events from 1::

      id: 7
      data: AAAFAQIDBAU=

  and a final ``close`` event whose data is JSON ``{"code": 1002, "reason": "..."}``;
  an idle stream carries a comment line (:data:`KEEPALIVE`) now and then.

:class:`EventStreamParser` reads such a stream back (Python clients, tests).
Nothing here awaits or knows a socket.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from collab.errors import ProtocolError
from collab.wire.protocol import read_var_uint, write_var_uint

__all__ = [
    "CLOSE_EVENT",
    "KEEPALIVE",
    "Event",
    "EventStreamParser",
    "close_event",
    "decode_batch",
    "encode_batch",
    "message_event",
]

#: The comment an idle event stream carries (every ``fallback_keepalive_seconds``).
KEEPALIVE: Final = b": keepalive\n\n"
#: The ``event`` field of the last event of a closed session.
CLOSE_EVENT: Final = "close"


# --- POST bodies ---------------------------------------------------------------------------


def encode_batch(messages: Iterable[bytes]) -> bytes:
    """A POST body holding ``messages``, in order."""
    return b"".join(write_var_uint(len(m)) + m for m in messages)


def decode_batch(body: bytes) -> list[bytes]:
    """The messages of a POST body, in order (each still to be :func:`~protocol.decode`\\ d).

    Raises:
        ProtocolError: the body is empty, or a length prefix is cut off or runs
            past the end of the body.
    """
    if not body:
        raise ProtocolError("an empty batch")
    messages: list[bytes] = []
    pos = 0
    while pos < len(body):
        length, pos = read_var_uint(body, pos)
        end = pos + length
        if end > len(body):
            raise ProtocolError(f"length prefix {length} runs past the end of the batch")
        messages.append(body[pos:end])
        pos = end
    return messages


# --- event streams -------------------------------------------------------------------------


def message_event(event_id: int, message: bytes) -> bytes:
    """One y-websocket message as a server-sent event numbered ``event_id``."""
    return b"id: %d\ndata: %s\n\n" % (event_id, base64.b64encode(message))


def close_event(event_id: int, code: int, reason: str) -> bytes:
    """The final event of a session: how it closed (the WebSocket close code and reason)."""
    data = json.dumps({"code": code, "reason": reason}, ensure_ascii=True)
    return f"id: {event_id}\nevent: {CLOSE_EVENT}\ndata: {data}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched server-sent event."""

    #: The ``id`` field, or ``None`` when the event had none.
    id: str | None
    #: The ``event`` field (``"message"`` when absent).
    event: str
    data: str

    def message(self) -> bytes:
        """The y-websocket message a ``message`` event carries.

        Raises:
            ProtocolError: the data is not base64.
        """
        try:
            return base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("event data is not base64") from None

    def close(self) -> tuple[int, str]:
        """``(code, reason)`` of a ``close`` event.

        Raises:
            ProtocolError: the data is not the JSON object a close event holds.
        """
        try:
            value = json.loads(self.data)
            return int(value["code"]), str(value.get("reason", ""))
        except (ValueError, TypeError, KeyError):
            raise ProtocolError("close event data is not {code, reason}") from None


class EventStreamParser:
    """Reads ``text/event-stream`` bytes as they arrive, chunk boundaries anywhere.

    Follows the WHATWG rules that matter here: lines end with LF or CRLF; a blank
    line dispatches the event; ``data`` lines are joined with LF; lines starting
    with ``:`` are comments (counted in :attr:`comments`); an event without data
    is not dispatched. The last ``id`` seen is kept in :attr:`last_event_id`, as a
    browser's ``EventSource`` does, for the ``Last-Event-ID`` of a resume.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self.last_event_id: str | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by ``chunk``."""
        self._buffer += chunk
        events: list[Event] = []
        while True:
            line, found, rest = self._buffer.partition(b"\n")
            if not found:
                return events
            self._buffer = rest
            event = self._line(line.removesuffix(b"\r").decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> Event | None:
        if self._id is not None:
            self.last_event_id = self._id
        data, self._data = self._data, []
        event, self._event = self._event or "message", ""
        event_id, self._id = self._id, None
        if not data:
            return None
        return Event(
            event_id if event_id is not None else self.last_event_id, event, "\n".join(data)
        )
