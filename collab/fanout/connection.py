"""One connection to Redis as an asyncio protocol: bytes out, replies in, no task per message.

:func:`open_connection` connects to a ``redis://``, ``rediss://`` or ``unix://`` URL
(redis-py parses it), authenticates if the URL names a password, and returns a
:class:`RespConnection`. From then on every reply Redis sends is handed, in
order, to the ``on_reply`` callback, straight from ``data_received``: a pub/sub
message costs a parse and a call, not an await. :meth:`RespConnection.write`
queues bytes (commands from :func:`collab.fanout.resp.command`) without blocking.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from typing import cast

from redis.asyncio.connection import parse_url

from collab.errors import ProtocolError
from collab.fanout.resp import Parser, Reply, ReplyError, command

__all__ = ["RespConnection", "open_connection"]

#: How much may wait in a connection's write buffer before :attr:`RespConnection.paused`.
WRITE_BUFFER_LIMIT = 16 * 1024 * 1024


class RespConnection(asyncio.Protocol):
    """See the module docstring. ``on_resume`` is called when a full write buffer drained."""

    def __init__(
        self, on_reply: Callable[[Reply], None], on_resume: Callable[[], None] | None = None
    ) -> None:
        self._on_reply = on_reply
        self._on_resume = on_resume
        self._parser = Parser()
        self._transport: asyncio.Transport | None = None
        #: Set once the connection is gone (closed by either side, or broken).
        self.closed = asyncio.get_running_loop().create_future()
        #: True while the write buffer is over WRITE_BUFFER_LIMIT: the caller should hold back.
        self.paused = False
        self._handshake: asyncio.Future[Reply] | None = None
        #: ``time.monotonic()`` when Redis last sent anything (or when we connected).
        self.heard_at = time.monotonic()

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, hence the cast).
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_LIMIT)

    def data_received(self, data: bytes) -> None:
        self.heard_at = time.monotonic()
        try:
            replies = self._parser.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        for reply in replies:
            handshake = self._handshake
            if handshake is not None:
                self._handshake = None
                if not handshake.done():
                    handshake.set_result(reply)
            else:
                self._on_reply(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.closed.done():
            self.closed.set_result(exc)
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(exc or ConnectionError("Redis closed the connection"))

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._on_resume is not None:
            self._on_resume()

    # -- use --------------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def write(self, data: bytes) -> None:
        """Queue ``data`` for Redis. Raises ConnectionError if the connection is gone."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionError("the connection to Redis is closed")
        transport.write(data)

    def close(self) -> None:
        """Close once what was written is sent; :attr:`closed` is set when it is gone."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection now, unsent bytes and all (Redis stopped answering)."""
        if self._transport is not None:
            self._transport.abort()

    async def _authenticate(self, username: str | None, password: str) -> None:
        self._handshake = asyncio.get_running_loop().create_future()
        args = [b"AUTH", *([username.encode()] if username else []), password.encode()]
        self.write(command(*args))
        reply = await self._handshake
        if isinstance(reply, ReplyError):
            raise ConnectionRefusedError(f"Redis refused AUTH: {reply}")

    def _fail(self, exc: Exception) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)
        if self._transport is not None:
            self._transport.abort()


async def open_connection(
    url: str,
    on_reply: Callable[[Reply], None],
    *,
    timeout: float,
    on_resume: Callable[[], None] | None = None,
) -> RespConnection:
    """A connection to the Redis at ``url``, authenticated, within ``timeout`` seconds.

    Raises:
        OSError: cannot connect (ConnectionRefusedError also when AUTH is refused),
            or TimeoutError past ``timeout``.
    """
    options = parse_url(url)
    loop = asyncio.get_running_loop()

    def protocol() -> RespConnection:
        return RespConnection(on_reply, on_resume)

    async with asyncio.timeout(timeout):
        if "path" in options:
            _, conn = await loop.create_unix_connection(protocol, str(options["path"]))
        else:
            host = str(options.get("host", "localhost"))
            port = int(options.get("port", 6379))
            tls = _tls(options) if url.startswith("rediss://") else None
            _, conn = await loop.create_connection(protocol, host, port, ssl=tls)
        try:
            password = options.get("password")
            if password:
                username = options.get("username")
                await conn._authenticate(str(username) if username else None, str(password))
        except BaseException:
            conn.close()
            raise
    return conn


def _tls(options: Mapping[str, object]) -> ssl.SSLContext:
    """The TLS context of a ``rediss://`` URL: the system's CAs, or ``ssl_ca_certs``;
    ``ssl_cert_reqs=none`` turns verification off (as in redis-py)."""
    ca_file = options.get("ssl_ca_certs")
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if str(options.get("ssl_cert_reqs", "required")).lower() == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
