"""One WebSocket connection of the native server, over websockets' sans-I/O protocol.

:class:`WebSocket` drives a ``websockets.server.ServerProtocol`` (already past the
opening handshake) from asyncio callbacks: bytes from the socket go in
(:meth:`WebSocket.data_received`), whole messages go to the receiver (a
:class:`~collab.core.session.Session`), control frames and the close handshake
come out of the protocol and are written at once. There is no task and no
queue per connection: outgoing messages are serialized once per broadcast
(:func:`wire_frame`) and written straight into the transport, whose buffer is
what the session's flow control counts. Keepalive is two timers.

This is sound because collab never fragments what it sends and negotiates no
extension: whole frames interleave safely with the pongs and the close frame
the protocol writes.

Incoming frames take a shortcut while the connection is OPEN: the common frame (a
whole binary or text message, masked, no reserved bit, within the size limit) is
cut out of the stream and unmasked here (:class:`_Frames`): websockets'
generator-based parser costs ~19,000 instructions per frame, this ~1,000 (callgrind;
8-11 % of all the server does per edit, docs/performance.md). Control frames still
go to the protocol, whole, so that its parser always sits at a frame boundary;
anything else (a fragment, a reserved bit, an unmasked or oversized frame) hands
the rest of the stream to the protocol for good, which answers it as before.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Iterator

from websockets.frames import CloseCode as WsCloseCode
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.speedups import apply_mask

from collab.config import Config
from collab.core.gate import Receiver
from collab.core.session import CONGESTION_BYTES
from collab.errors import CloseCode

__all__ = ["WebSocket", "wire_frame"]

log = logging.getLogger("collab.websocket")


class WebSocket:
    """An open WebSocket: a :class:`~collab.core.session.Transport` for the session core.

    Call :meth:`attach` once the receiver exists; feed :meth:`data_received`,
    :meth:`eof_received` and :meth:`connection_lost` from the asyncio protocol.
    """

    def __init__(
        self, transport: asyncio.Transport, protocol: ServerProtocol, config: Config
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        #: The protocol is OPEN: data frames may go out. A mirror of ``protocol.state``
        #: (a property: ~500 instructions a read, once per delivery), refreshed after
        #: every call that can move it: receive_data, receive_eof, send_close.
        self._sending = protocol.state is State.OPEN
        #: More than CONGESTION_BYTES wait unsent (the transport paused us); see
        #: :attr:`collab.core.session.Transport.congested`.
        self.congested = False
        self._config = config
        self._receiver: Receiver | None = None
        self._ended = False
        self._closed_here = False  # close() was called: what arrives after is dropped
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._loop = asyncio.get_running_loop()
        self._ping: asyncio.TimerHandle | None = None
        self._pong_deadline: asyncio.TimerHandle | None = None
        self._abort: asyncio.TimerHandle | None = None
        #: The shortcut for incoming frames; None once the protocol parses everything.
        self._frames: _Frames | None = _Frames(protocol.max_message_size)

    # -- the session core's Transport ---------------------------------------------------------

    def write(self, message: bytes) -> None:
        if self._sending:
            # wire_frame's cache, read here: a broadcast's every write after the first
            # finds its frame without a call (one call less per delivery).
            if message is _last_message:
                self._transport.write(_last_frame)
            else:
                self._transport.write(wire_frame(message))

    def write_text(self, message: str) -> None:
        """Send one text message (signaling speaks JSON text frames)."""
        if self._sending:
            self._protocol.send_text(message.encode())
            self._flush()

    def close(self, code: int, reason: str) -> None:
        if not self._sending:
            return
        self._closed_here = True
        self._protocol.send_close(code, reason)
        self._sending = False
        self._flush()
        # Called from inside a broadcast (a slow consumer) or a session's receive:
        # the session leaves its room on the next loop turn, not while the room
        # iterates its editors.
        self._closing(defer=True)

    @property
    def buffered(self) -> int:
        return self._transport.get_write_buffer_size()

    @property
    def open(self) -> bool:
        """True until the session ended (the TCP connection may linger a moment)."""
        return not self._ended

    # -- driven by the asyncio protocol ---------------------------------------------------------

    def attach(self, receiver: Receiver, pending: bytes = b"") -> None:
        """Start delivering to ``receiver``; ``pending`` is what arrived with the handshake."""
        self._receiver = receiver
        self._transport.set_write_buffer_limits(high=CONGESTION_BYTES)
        self._arm_ping()
        if pending:
            self.data_received(pending)
        elif not self._sending:
            self._end()

    def data_received(self, data: bytes) -> None:
        frames = self._frames
        if frames is not None:
            data = self._take_frames(frames, data)
            if not data:
                return
        self._feed(data)

    def eof_received(self) -> None:
        frames, self._frames = self._frames, None
        if frames is not None:
            rest = frames.rest()
            if rest:  # a frame cut short: the protocol sees it, then the end
                self._protocol.receive_data(rest)
        self._protocol.receive_eof()
        self._sending = self._protocol.state is State.OPEN
        self._flush()
        self._end()

    def connection_lost(self) -> None:
        for timer in (self._ping, self._pong_deadline, self._abort):
            if timer is not None:
                timer.cancel()
        self._end()

    # -- internals ------------------------------------------------------------------------------

    def _take_frames(self, frames: _Frames, data: bytes) -> bytes:
        """Deliver the common frames at the front of ``data``; return what the protocol
        must parse from now on (empty while the shortcut lasts)."""
        for kind, payload in frames.split(data):
            if kind is _Kind.REST:
                self._frames = None
                return payload
            if kind is _Kind.CONTROL:
                self._feed(payload)
            else:
                self._deliver(payload, kind is _Kind.TEXT)
            if self._closed_here or not self._sending:
                # Closing: the protocol parses what follows (it awaits the close frame).
                self._frames = None
                self._flush()
                return frames.rest()
        return b""

    def _feed(self, data: bytes) -> None:
        protocol = self._protocol
        protocol.receive_data(data)
        self._sending = protocol.state is State.OPEN
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._on_frame(event)
        self._flush()
        if not self._sending:
            self._closing()

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
            if frame.fin:
                self._deliver(bytes(frame.data), opcode is Opcode.TEXT)
            else:
                self._fragments = [bytes(frame.data)]
                self._fragment_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            # The protocol bounds the whole message by max_size, fragments included.
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), []
                self._deliver(data, self._fragment_text)
        elif opcode is Opcode.PONG:
            if self._pong_deadline is not None:
                self._pong_deadline.cancel()
                self._pong_deadline = None
                self._arm_ping()

    def _deliver(self, data: bytes, text: bool) -> None:
        receiver = self._receiver
        # Not the protocol's state: a peer's close frame parsed in the same read as its
        # last update has already left OPEN, and that update must still count.
        if receiver is None or self._closed_here:
            return
        if text:
            try:
                message: bytes | str = data.decode()
            except UnicodeDecodeError:
                self.close(CloseCode.INVALID_DATA, "invalid UTF-8 in a text frame")
                return
        else:
            message = data
        receiver.receive(message)

    def _flush(self) -> None:
        for data in self._protocol.data_to_send():
            if data:
                self._transport.write(data)
            else:
                # The protocol says: the closing handshake is done, close TCP.
                self._transport.close()

    def _closing(self, defer: bool = False) -> None:
        """The WebSocket left OPEN: end the session, and bound the wait for TCP."""
        if defer:
            self._loop.call_soon(self._end)
        else:
            self._end()
        if self._abort is None:
            self._abort = self._loop.call_later(self._config.close_timeout, self._transport.abort)

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        receiver = self._receiver
        if receiver is None:
            return
        protocol = self._protocol
        first = protocol.close_rcvd if protocol.close_rcvd_then_sent else protocol.close_sent
        if first is None:
            receiver.end()  # the TCP connection just went: nothing to say
        else:
            receiver.end(first.code, first.reason)

    def _arm_ping(self) -> None:
        interval = self._config.ping_interval
        if interval is not None:
            self._ping = self._loop.call_later(interval, self._send_ping)

    def _send_ping(self) -> None:
        if not self._sending:
            return
        self._protocol.send_ping(os.urandom(4))
        self._flush()
        timeout = self._config.ping_timeout
        if timeout is not None:
            self._pong_deadline = self._loop.call_later(timeout, self._keepalive_failed)
        else:
            self._arm_ping()

    def _keepalive_failed(self) -> None:
        self._pong_deadline = None
        log.debug("keepalive ping timeout")
        self.close(WsCloseCode.INTERNAL_ERROR, "keepalive ping timeout")


class _Kind(enum.Enum):
    BINARY = 1
    TEXT = 2
    CONTROL = 3  # a whole ping, pong or close frame, for the protocol
    REST = 4  # from here on the protocol parses everything


class _Frames:
    """Cuts whole client data frames out of a byte stream (RFC 6455 section 5.2).

    :meth:`split` yields ``(BINARY or TEXT, unmasked payload)`` for each final,
    masked binary or text frame with no reserved bit and at most ``max_size``
    bytes, ``(CONTROL, frame)`` for each whole control frame of at most 125 bytes,
    and at most one ``(REST, bytes)``: everything from the first frame it does not
    handle on, which the caller hands (with all that follows) to the protocol. A
    frame cut short waits, in chunks joined once it is whole, for the next call.
    """

    def __init__(self, max_size: int | None) -> None:
        self._max_size = max_size
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._wanted = 0  # the length of the frame cut short, once its header is in
        self._data = b""
        self._pos = 0  # self._data[self._pos:] is not split yet

    def rest(self) -> bytes:
        """What was received and not yielded yet; the buffer is emptied."""
        rest = b"".join([self._data[self._pos :], *self._chunks])
        self._data, self._pos = b"", 0
        self._chunks.clear()
        self._buffered = 0
        return rest

    def split(self, data: bytes) -> Iterator[tuple[_Kind, bytes]]:
        if self._chunks:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered < self._wanted:
                return
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._buffered = 0
        self._data, self._pos = data, 0
        end = len(data)
        pos = 0
        while pos < end:
            kind, mask, stop = _header(data, pos, self._max_size)
            if kind is _Kind.REST:
                self._data, self._pos = b"", 0
                yield kind, data[pos:]
                return
            if stop > end:  # cut short: wait for the rest
                self._chunks.append(data[pos:])
                self._buffered = end - pos
                self._wanted = stop - pos if mask else 0
                break
            self._pos = stop
            if kind is _Kind.CONTROL:
                yield kind, data[pos:stop]
            else:
                yield kind, apply_mask(data[mask + 4 : stop], data[mask : mask + 4])
            pos = stop
        self._data, self._pos = b"", 0


def _header(data: bytes, pos: int, max_size: int | None) -> tuple[_Kind, int, int]:
    """The frame at ``data[pos:]``: its kind, where its mask starts and where it ends.

    Returns ``(kind, 0, pos + 14)`` when the header itself is cut short (``kind`` is
    then meaningless), and ``(REST, 0, 0)`` for a frame :class:`_Frames` leaves alone.
    """
    end = len(data)
    if end - pos < 2:
        return _Kind.BINARY, 0, pos + 14
    first, second = data[pos], data[pos + 1]
    opcode = first & 0x0F
    if first & 0x70 or not second & 0x80:
        return _Kind.REST, 0, 0  # a reserved bit, or not masked: the protocol fails it
    if opcode >= 0x8:
        kind = _Kind.CONTROL
    elif first & 0x80 and opcode == 0x2:
        kind = _Kind.BINARY
    elif first & 0x80 and opcode == 0x1:
        kind = _Kind.TEXT
    else:
        return _Kind.REST, 0, 0  # a fragment or an unknown opcode
    length = second & 0x7F
    mask = pos + 2
    if length == 126:
        if end - pos < 4:
            return kind, 0, pos + 14
        length = int.from_bytes(data[mask : mask + 2])
        mask += 2
    elif length == 127:
        if end - pos < 10:
            return kind, 0, pos + 14
        length = int.from_bytes(data[mask : mask + 8])
        mask += 8
    if kind is _Kind.CONTROL and length > 125:
        return _Kind.REST, 0, 0  # the protocol fails it (1002)
    if max_size is not None and length > max_size:
        return _Kind.REST, 0, 0  # the protocol closes with 1009
    return kind, mask, mask + 4 + length


def wire_frame(message: bytes) -> bytes:
    """``message`` as a WebSocket binary frame, serialized once for every recipient.

    A room hands the same bytes object to each of its editors; server frames are
    unmasked and we negotiate no extension, so the frame is identical for all of
    them: it is serialized once, not once per connection as ``websockets.broadcast``
    does.
    """
    global _last_message, _last_frame
    if message is _last_message:
        return _last_frame
    # RFC 6455 section 5.2: FIN and the binary opcode, no mask, the shortest length.
    length = len(message)
    if length < 126:
        frame = bytes((0x82, length)) + message
    elif length < 65536:
        frame = b"\x82\x7e" + length.to_bytes(2) + message
    else:
        frame = b"\x82\x7f" + length.to_bytes(8) + message
    if len(message) <= _CACHED_FRAME_MAX:  # never pin a big first sync in memory
        _last_message, _last_frame = message, frame
    return frame


_CACHED_FRAME_MAX = 64 * 1024
_last_message: bytes = b""
_last_frame: bytes = b"\x82\x00"
