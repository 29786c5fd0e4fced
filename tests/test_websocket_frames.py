"""WebSocket framing as a client may send it, byte for byte, against both servers.

A stock client sends one whole binary frame per message, but TCP may cut a
frame anywhere or glue several together, a ping may sit between two updates,
and a client may fragment a message. Each of those must arrive as the same
messages; each malformed frame must close that one connection with its code.
The client here writes raw bytes on a TCP socket and reads the server's frames
with websockets' sans-I/O client protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pycrdt import Doc, Text
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from collab.client import Client, connect
from collab.config import Config
from collab.transports.websocket import wire_frame
from collab.wire import protocol
from collab.wire.protocol import Update
from tests import servers
from tests.conftest import ServeKind, doc_url, eventually
from tests.servers import RunningServer


class RawClient:
    """A WebSocket client that writes whatever bytes it is given."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: ClientProtocol
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._protocol = proto
        self._frames: list[Frame] = []

    @classmethod
    async def open(cls, url: str) -> RawClient:
        uri = parse_uri(url)
        reader, writer = await asyncio.open_connection(uri.host, uri.port)
        proto = ClientProtocol(uri, max_size=None)
        proto.send_request(proto.connect())
        client = cls(reader, writer, proto)
        client._flush()
        while True:
            for event in await client._events():
                if isinstance(event, Response):
                    assert event.status_code == 101, event
                    return client
                if isinstance(event, Frame):
                    client._frames.append(event)

    async def write(self, data: bytes, chunk: int | None = None) -> None:
        """Send ``data`` as it is, in TCP writes of ``chunk`` bytes (all at once: None)."""
        step = chunk or len(data)
        for start in range(0, len(data), step):
            self._writer.write(data[start : start + step])
            await self._writer.drain()
            if chunk is not None:
                await asyncio.sleep(0.002)  # so that the pieces arrive apart

    async def frame(self, opcode: Opcode) -> Frame:
        """The next frame of that kind the server sent (others are skipped)."""
        async with asyncio.timeout(5):
            while True:
                while self._frames:
                    frame = self._frames.pop(0)
                    if frame.opcode is opcode:
                        return frame
                self._frames.extend(e for e in await self._events() if isinstance(e, Frame))

    async def close_code(self) -> int:
        return Close.parse(bytes((await self.frame(Opcode.CLOSE)).data)).code

    async def _events(self) -> list[Any]:
        data = await self._reader.read(65536)
        if data:
            self._protocol.receive_data(data)
        else:
            self._protocol.receive_eof()
        self._flush()
        return list(self._protocol.events_received())

    def _flush(self) -> None:
        for data in self._protocol.data_to_send():
            if data:
                self._writer.write(data)

    def abort(self) -> None:
        self._writer.transport.abort()


def client_frame(
    opcode: Opcode, data: bytes, *, fin: bool = True, rsv1: bool = False, mask: bool = True
) -> bytes:
    frame = Frame(opcode, data, fin=fin).serialize(mask=mask)
    if rsv1:  # websockets will not write it: set the bit by hand
        frame = bytes([frame[0] | 0x40]) + frame[1:]
    return frame


class Typist:
    """Updates that each append ``text`` to the document "text", in order."""

    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.text = self.doc.get("text", type=Text)

    def update(self, text: str) -> bytes:
        before = self.doc.get_state()
        self.text.insert(len(self.text), text)
        return protocol.encode(Update(self.doc.get_update(before)))


def text_of(client: Client) -> str:
    return str(client.doc.get("text", type=Text))


@pytest.fixture(name="running")
async def running_fixture(config: Config, serve_kind: ServeKind) -> AsyncIterator[RunningServer]:
    async with serve_kind(config.replace(max_message_size=256 * 1024)) as server:
        yield server


@pytest.fixture(name="watcher")
async def watcher_fixture(running: RunningServer) -> AsyncIterator[Client]:
    async with connect(doc_url(running, "framing")) as watcher:
        await watcher.wait_synced()
        yield watcher


@pytest.mark.parametrize("size", [10, 300, 70_000], ids=["7-bit", "16-bit", "64-bit length"])
async def test_a_frame_cut_anywhere_arrives_whole(
    running: RunningServer, watcher: Client, size: int
) -> None:
    raw = await RawClient.open(doc_url(running, "framing"))
    typist = Typist()
    first, second = "a" * size, "b" * size
    frames = client_frame(Opcode.BINARY, typist.update(first)) + client_frame(
        Opcode.BINARY, typist.update(second)
    )
    # Small frames byte by byte; the big one in pieces that cut its header and mask too.
    await raw.write(frames, chunk=1 if size < 1000 else 4093)
    await eventually(lambda: text_of(watcher) == first + second)
    raw.abort()


async def test_frames_and_a_ping_in_one_write_are_all_answered(
    running: RunningServer, watcher: Client
) -> None:
    raw = await RawClient.open(doc_url(running, "framing"))
    typist = Typist()
    await raw.write(
        client_frame(Opcode.BINARY, typist.update("one "))
        + client_frame(Opcode.PING, b"between")
        + client_frame(Opcode.BINARY, typist.update("two"))
    )
    pong = await raw.frame(Opcode.PONG)
    assert bytes(pong.data) == b"between"
    await eventually(lambda: text_of(watcher) == "one two")
    raw.abort()


async def test_a_fragmented_message_is_reassembled_and_framing_goes_on(
    running: RunningServer, watcher: Client
) -> None:
    raw = await RawClient.open(doc_url(running, "framing"))
    typist = Typist()
    message = typist.update("fragmented ")
    half = len(message) // 2
    await raw.write(
        client_frame(Opcode.BINARY, message[:half], fin=False)
        + client_frame(Opcode.PING, b"inside")
        + client_frame(Opcode.CONT, message[half:])
    )
    assert bytes((await raw.frame(Opcode.PONG)).data) == b"inside"
    await raw.write(client_frame(Opcode.BINARY, typist.update("then whole")), chunk=3)
    await eventually(lambda: text_of(watcher) == "fragmented then whole")
    raw.abort()


#: Each bad frame carries a valid update ("!"): applied, it would show in the text.
_UPDATE = Typist().update("!")
BAD_FRAMES = {
    "reserved bit": (client_frame(Opcode.BINARY, _UPDATE, rsv1=True), 1002),
    "not masked": (client_frame(Opcode.BINARY, _UPDATE, mask=False), 1002),
    "continuation first": (client_frame(Opcode.CONT, _UPDATE), 1002),
    "ping over 125 bytes": (b"\x89\xfe\x00\x7e" + bytes(4) + bytes(126), 1002),
    "message over max_message_size": (
        client_frame(Opcode.BINARY, _UPDATE + bytes(256 * 1024)),
        1009,
    ),
}


@pytest.mark.parametrize("kind", list(BAD_FRAMES))
async def test_a_malformed_frame_after_good_ones_closes_only_its_connection(
    config: Config, kind: str
) -> None:
    """On ``collab serve``'s own listener (under uvicorn, framing is uvicorn's: it drops
    the connection without a close frame)."""
    async with (
        servers.serve("native", config.replace(max_message_size=256 * 1024)) as running,
        connect(doc_url(running, "framing")) as watcher,
    ):
        await watcher.wait_synced()
        await _malformed_frame(running, watcher, kind)


async def _malformed_frame(running: RunningServer, watcher: Client, kind: str) -> None:
    raw = await RawClient.open(doc_url(running, "framing"))
    typist = Typist()
    bad, code = BAD_FRAMES[kind]
    # A good update, then the bad frame, then another update the server must not apply.
    await raw.write(
        client_frame(Opcode.BINARY, typist.update("kept"))
        + bad
        + client_frame(Opcode.BINARY, typist.update(" dropped"))
    )
    assert await raw.close_code() == code
    await eventually(lambda: text_of(watcher) == "kept")
    async with connect(doc_url(running, "framing")) as other:
        await other.wait_synced()
        other.doc.get("text", type=Text).insert(0, "still ")
        await eventually(lambda: text_of(watcher) == "still kept")
    assert text_of(watcher) == "still kept"
    raw.abort()


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_wire_frame_is_the_frame_websockets_would_serialize(length: int) -> None:
    # Around each of RFC 6455's length encodings (7 bits, 16 bits, 64 bits).
    message = bytes(range(256)) * (length // 256) + bytes(length % 256)
    expected = Frame(Opcode.BINARY, message).serialize(mask=False)
    assert wire_frame(message) == expected
    assert wire_frame(message) == expected  # from the cache: the same frame
    assert wire_frame(bytes(message)) == expected  # an equal message, another object
