"""A TCP proxy a test controls, to take a browser's network away for real.

The page is loaded *through* the proxy, so its WebSocket goes through it too.
``cut()`` resets every proxied connection (SO_LINGER 0: an RST, no WebSocket
close frame, no FIN) and closes the listening socket, so reconnect attempts are
refused by the kernel exactly as with a dead host. ``restore()`` listens again
on the same port. Bytes are counted each way, so a test can check that nothing
crossed while the network was down.

With ``refuse_upgrades``, the proxy plays a corporate proxy that forbids
WebSockets: it reads the browser's requests one by one and answers each that
carries an ``Upgrade`` header with 403, passing everything else through.
With ``silence_upgrades`` it is the subtler kind: it completes the handshake itself
(101), then swallows every frame and sends none, so the WebSocket opens and carries
nothing. ``reset()`` drops the open connections (an RST each) but keeps listening,
as when a flaky link cuts a long-lived event stream. ``blackhole()`` is the
silent kind of death: the open connections stay open on both ends and carry
nothing more, either way (a NAT entry dropped); new ones work.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import socket
import struct
from collections.abc import AsyncIterator


class TcpProxy:
    def __init__(
        self, target_port: int, refuse_upgrades: bool = False, silence_upgrades: bool = False
    ) -> None:
        self.target_port = target_port
        self.refuse_upgrades = refuse_upgrades
        self.silence_upgrades = silence_upgrades
        self.port = 0
        self.bytes_up = 0  # browser -> server
        self.bytes_down = 0  # server -> browser
        self.accepted = 0
        self.blocked_upgrades = 0
        self._listener: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._muted: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def up(self) -> bool:
        return self._listener is not None

    @property
    def open_connections(self) -> int:
        return len(self._writers)

    async def start(self) -> None:
        self._listener = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._listener.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones, with no close frame."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            await listener.wait_closed()
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def reset(self) -> None:
        """Reset every open connection (no FIN, no close frame); new ones are accepted."""
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    def blackhole(self) -> None:
        """From now on, drop whatever the open connections carry; close none of them."""
        self._muted.update(self._writers)

    async def restore(self) -> None:
        """Accept connections again, on the same port."""
        if self._listener is None:
            await self.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._listener is None:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return
        self.accepted += 1
        self._writers.update((writer, up_writer))
        upstream = (
            self._requests(reader, up_writer, writer)
            if self.refuse_upgrades or self.silence_upgrades
            else self._pipe(reader, up_writer, True)
        )
        for pipe in (upstream, self._pipe(up_reader, writer, False)):
            task = asyncio.create_task(pipe)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _requests(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, client: asyncio.StreamWriter
    ) -> None:
        """Browser -> server, request by request (heads and Content-Length bodies)."""
        try:
            while True:
                head = await src.readuntil(b"\r\n\r\n")
                fields = _fields(head)
                if "upgrade" in fields and self.silence_upgrades:
                    self.blocked_upgrades += 1
                    client.write(_switching(head))
                    while await src.read(65536):  # frames in, nothing out
                        pass
                    return
                if "upgrade" in fields and self.refuse_upgrades:
                    self.blocked_upgrades += 1
                    client.write(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
                        b"Content-Length: 22\r\nConnection: close\r\n\r\nWebSockets not allowed"
                    )
                    await client.drain()
                    for writer in (client, dst):
                        writer.close()
                        self._writers.discard(writer)
                    return
                if "chunked" in fields.get("transfer-encoding", ""):
                    raise ConnectionError("this proxy does not pass chunked request bodies")
                body = await src.readexactly(int(fields.get("content-length", "0")))
                if dst not in self._writers:
                    return
                self.bytes_up += len(head) + len(body)
                dst.write(head + body)
                await dst.drain()
        except asyncio.IncompleteReadError:
            if dst in self._writers and dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            if dst in self._writers:
                _reset(dst)
                self._writers.discard(dst)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
        try:
            while data := await src.read(65536):
                if dst not in self._writers:
                    break  # cut: drop what is in flight, as a dead link would
                if dst in self._muted:
                    continue  # a black hole: read, never delivered
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                dst.write(data)
                await dst.drain()
            # A clean end on one side is passed on as a clean end (FIN), like a router would.
            if dst in self._writers and dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            if dst in self._writers:
                _reset(dst)
                self._writers.discard(dst)


def _switching(head: bytes) -> bytes:
    """A 101 answer to the WebSocket handshake in ``head`` (RFC 6455 section 4.2.2)."""
    key = next(
        line.partition(":")[2].strip()
        for line in head.decode("latin-1").split("\r\n")
        if line.lower().startswith("sec-websocket-key:")
    )
    guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    accept = base64.b64encode(hashlib.sha1((key + guid).encode()).digest()).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode()


def _fields(head: bytes) -> dict[str, str]:
    """The header fields of a request head, names in lower case."""
    lines = head.decode("latin-1").split("\r\n")[1:]
    pairs = (line.partition(":") for line in lines if ":" in line)
    return {name.strip().lower(): value.strip().lower() for name, _, value in pairs}


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.asynccontextmanager
async def tcp_proxy(
    target_port: int, refuse_upgrades: bool = False, silence_upgrades: bool = False
) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(target_port, refuse_upgrades, silence_upgrades)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.cut()
