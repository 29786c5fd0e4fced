"""Errors collab raises, each with the WebSocket close code and HTTP status it maps to.

Every error a connection or a request can cause is a :class:`CollabError`. Each
carries a ``close_code`` (how a WebSocket session ends), an ``http_status`` (how a
plain HTTP request is answered) and a ``reason`` that is safe to send to the peer
(no internals). The session core (:mod:`collab.core.session`) holds the single
``except`` that turns them into a close frame and the HTTP router
(:mod:`collab.http.router`) the single one that turns them into a JSON error;
the CLI prints the reason. Anything that is *not* a ``CollabError`` is a bug: it
closes with 1011 or answers 500, without details, because details could be
sensitive.

    CollabError                                           close  HTTP
    ├── ProtocolError        bytes that are not a         1002   400
    │   │                    y-websocket message
    │   ├── InvalidPayload   a well-framed message whose  1007   400
    │   │                    content is garbage: a bad state
    │   │                    vector, update or awareness
    │   └── InvalidSignal    a signaling frame that is    1007   400
    │                        not a y-webrtc JSON message
    ├── MessageTooBig        a frame or body over the     1009   413
    │                        configured maximum
    ├── InvalidName          a path that is not a         1008   400
    │                        document name
    ├── Unauthorized         no token, a bad signature,   4401   401
    │                        or an expired token
    ├── Forbidden            a valid token for another    4403   403
    │   │                    document or mode, an Origin not
    │   │                    allowed, a signaling topic the
    │   │                    peer may not see
    │   └── ReadOnly         a read-only editor's change  (none) 403
    │                        (never closes: answered with the
    │                        auth message, see core/session.py)
    ├── LimitExceeded        a connection passed a bound: 1008   429
    │                        messages/second, signaling topics
    ├── SlowConsumer         an editor's outbox           1013   503
    │                        overflowed
    ├── ServerBusy           too many connections, in all 1013   503
    │                        or on one document (handshake)
    ├── TooManyConnections   too many connections from    1008   429
    │                        one client IP (handshake)
    ├── DocumentTooLarge     an update would grow the     4413   413
    │                        document past max_doc_bytes
    ├── SessionExpired       an HTTP fallback session     4408   404
    │                        that no longer exists
    ├── StoreError           the database failed; never   1013   503
    │                        sent to editors as-is
    ├── UnknownDocument      a history lookup for a       1008   404
    │                        document that does not exist
    ├── NotFound             an HTTP path nothing answers 1008   404
    ├── DocumentExists       an archive import into a     1008   409
    │                        document the store holds
    ├── DocumentDeleted      the document was deleted, or 4404   410
    │                        the client holds content of a
    │                        deleted incarnation of it
    └── InvalidRequest       a bad version, time, format  1008   400
                             or archive (also a ValueError)
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """WebSocket close codes collab uses (RFC 6455 plus 4000 + HTTP status).

    4400-4499 are permanent (do not retry with the same request); 1011 and 1013
    are transient (retry with backoff). docs/protocol.md has the table.
    """

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
    DELETED = 4404  # the document was deleted; the client's copy is of a deleted incarnation
    TOO_LARGE = 4413  # the document would pass max_doc_bytes: do not resend the same update
    TIMEOUT = 4408


class CollabError(Exception):
    """Base class of every error collab raises on purpose."""

    close_code: CloseCode = CloseCode.INTERNAL_ERROR
    http_status: int = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProtocolError(CollabError):
    """Raised by :mod:`collab.wire.protocol` when bytes are not a valid message.

    Covers truncated varUints, length prefixes that run past the end of the
    frame, unknown message types and trailing bytes.
    """

    close_code = CloseCode.PROTOCOL_ERROR
    http_status = 400


class InvalidPayload(ProtocolError):
    """Raised by the room when a message's payload cannot be used.

    A state vector or update that pycrdt cannot decode, or an awareness update
    whose entries are not JSON.
    """

    close_code = CloseCode.INVALID_DATA


class InvalidSignal(ProtocolError):
    """Raised by :mod:`collab.wire.signaling`: a frame on ``/signal`` that is not one
    JSON message of y-webrtc's signaling protocol (not UTF-8, not JSON, wrong shape)."""

    close_code = CloseCode.INVALID_DATA


class MessageTooBig(CollabError):
    """A frame or request body larger than ``Config.max_message_size``."""

    close_code = CloseCode.MESSAGE_TOO_BIG
    http_status = 413


class InvalidName(CollabError):
    """A URL path that does not name a document (:func:`collab.names.parse_path`)."""

    close_code = CloseCode.POLICY_VIOLATION
    http_status = 400


class Unauthorized(CollabError):
    """No token where one is required, a token whose signature or claims do not check
    out, or one that expired (at the handshake: 401; while connected: closed with 4401).
    Permanent: the client must not retry with the same token."""

    close_code = CloseCode.UNAUTHORIZED
    http_status = 401


class Forbidden(CollabError):
    """A valid token that does not cover what was asked (another document, a mode it
    lacks), an ``Origin`` that is not allowed, or a signaling peer that subscribed to a
    topic (a document) it may not see."""

    close_code = CloseCode.FORBIDDEN
    http_status = 403


class ReadOnly(Forbidden):
    """A read-only editor sent an update or step 2 that would change the document.

    Raised by the room *before* anything is applied. The session does not close for
    it: it answers the first one with the y-websocket auth message (permission denied,
    ``read-only``) and drops every one, so a stock client stays connected and reading.
    """


class LimitExceeded(CollabError):
    """A connection passed one of its bounds: too many messages per second (an
    editor: ``messages_per_second``; room events and signaling: their own rates), or
    too many signaling topics (``Config.signal_*``). Only that connection is closed."""

    close_code = CloseCode.POLICY_VIOLATION
    http_status = 429


class SlowConsumer(CollabError):
    """An editor's outbox is full: it stopped reading, or reads too slowly.

    The editor is closed so that server memory stays bounded; its client
    reconnects and resyncs with a state vector, so nothing is lost.
    """

    close_code = CloseCode.TRY_AGAIN_LATER
    http_status = 503


class ServerBusy(CollabError):
    """A handshake refused because the server (``max_connections``) or the document
    (``max_connections_per_doc``) has as many connections as it admits. Transient:
    a client retries with backoff."""

    close_code = CloseCode.TRY_AGAIN_LATER
    http_status = 503


class TooManyConnections(CollabError):
    """A handshake refused because its client IP already holds
    ``max_connections_per_ip`` connections. The others from that IP carry on."""

    close_code = CloseCode.POLICY_VIOLATION
    http_status = 429


class DocumentTooLarge(CollabError):
    """An update that would grow a document's state past ``max_doc_bytes``.

    Raised by the room *before* the update touches the document, so the document
    stays as it was, in memory and in the store. Permanent (4413): resending the
    same update fails the same way.
    """

    close_code = CloseCode.TOO_LARGE
    http_status = 413


class SessionExpired(CollabError):
    """An HTTP fallback request named a session that expired or never existed.

    The client starts a new session and resyncs by state vectors, like a reconnect.
    """

    close_code = CloseCode.TIMEOUT
    http_status = 404


class StoreError(CollabError):
    """The database refused or failed an operation. Raised by ``collab.store``."""

    close_code = CloseCode.TRY_AGAIN_LATER
    http_status = 503


class UnknownDocument(CollabError):
    """A history or export request named a document the store does not hold."""

    close_code = CloseCode.POLICY_VIOLATION
    http_status = 404


class NotFound(CollabError):
    """An HTTP request for a path that no route or endpoint answers."""

    close_code = CloseCode.POLICY_VIOLATION
    http_status = 404


class DocumentExists(CollabError):
    """Raised by ``collab.history.export.import_archive`` when the target document exists.

    An archive is restored only into an empty document: merging two histories
    would give log entries that no editor ever saw in that order.
    """

    close_code = CloseCode.POLICY_VIOLATION
    http_status = 409


class DocumentDeleted(CollabError):
    """The document was deleted while this editor had it open, or the editor holds content
    of a deleted incarnation of the name (the deleted-document guard, collab.core.guard).

    Permanent: retrying with the same copy of the document is refused again; the
    client must drop its copy (or keep it elsewhere) before it opens the name anew.
    """

    close_code = CloseCode.DELETED
    http_status = 410


class InvalidRequest(CollabError, ValueError):
    """A history request the caller got wrong: a version or time that does not exist,
    an unknown export format, a malformed archive. The reason is safe to show."""

    close_code = CloseCode.POLICY_VIOLATION
    http_status = 400
