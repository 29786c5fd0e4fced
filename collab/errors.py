"""Errors collab raises, and the WebSocket close code each one maps to.

Every error a connection can cause is a :class:`CollabError`. Each carries a
``close_code`` and a ``reason`` that is safe to send to the peer (no internals);
``server.py`` holds the single ``except`` that turns them into a close frame.
Anything that is *not* a ``CollabError`` is a bug and closes with 1011 and no
details, because details could be sensitive.

    CollabError
    ├── ProtocolError        bytes that are not a y-websocket message (1002)
    │   └── InvalidPayload   a well-framed message whose content is garbage:
    │                        a bad state vector, update or awareness (1007)
    ├── MessageTooBig        a frame over the configured maximum (1009)
    ├── Forbidden            a read-only editor tried to write (4403)
    ├── SlowConsumer         an editor's outbox overflowed (1013)
    ├── StoreError           the database failed; never sent to editors as-is
    ├── UnknownDocument      a history lookup for a document that does not exist
    ├── DocumentExists       an archive import into a document the store already holds
    └── InvalidRequest       a bad version, time, format or archive (also a ValueError)
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """WebSocket close codes collab uses (RFC 6455 plus 4000 + HTTP status)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down
    PROTOCOL_ERROR = 1002  # not a y-websocket frame, or a text frame
    INVALID_DATA = 1007  # a frame that decodes but whose payload is garbage
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011  # a bug: sent without details
    TRY_AGAIN_LATER = 1013  # the client could not keep up; it resyncs on return
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    TIMEOUT = 4408


class CollabError(Exception):
    """Base class of every error collab raises on purpose."""

    close_code: CloseCode = CloseCode.INTERNAL_ERROR

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProtocolError(CollabError):
    """Raised by :mod:`collab.protocol` when bytes are not a valid message.

    Covers truncated varUints, length prefixes that run past the end of the
    frame, unknown message types and trailing bytes.
    """

    close_code = CloseCode.PROTOCOL_ERROR


class InvalidPayload(ProtocolError):
    """Raised by the room when a message's payload cannot be used.

    A state vector or update that pycrdt cannot decode, or an awareness update
    whose entries are not JSON.
    """

    close_code = CloseCode.INVALID_DATA


class MessageTooBig(CollabError):
    """A frame larger than ``Config.max_message_size``."""

    close_code = CloseCode.MESSAGE_TOO_BIG


class Forbidden(CollabError):
    """A read-only editor sent a document update."""

    close_code = CloseCode.FORBIDDEN


class SlowConsumer(CollabError):
    """An editor's outbox is full: it stopped reading, or reads too slowly.

    The editor is closed so that server memory stays bounded; its client
    reconnects and resyncs with a state vector, so nothing is lost.
    """

    close_code = CloseCode.TRY_AGAIN_LATER


class StoreError(CollabError):
    """The database refused or failed an operation. Raised by ``collab.store``."""

    close_code = CloseCode.INTERNAL_ERROR


class UnknownDocument(CollabError):
    """A history or export request named a document the store does not hold."""

    close_code = CloseCode.POLICY_VIOLATION


class DocumentExists(CollabError):
    """Raised by ``collab.archive.import_archive`` when the target document already exists.

    An archive is restored only into an empty document: merging two histories
    would give log entries that no editor ever saw in that order.
    """

    close_code = CloseCode.POLICY_VIOLATION


class InvalidRequest(CollabError, ValueError):
    """A history request the caller got wrong: a version or time that does not exist,
    an unknown export format, a malformed archive. The reason is safe to show."""

    close_code = CloseCode.POLICY_VIOLATION
