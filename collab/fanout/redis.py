"""Redis pub/sub between the processes that hold the same documents.

:class:`RedisRelay` is the :class:`~collab.core.relay.RoomRelay` of ``--redis-url``;
with :mod:`collab.fanout.connection` the only importer of redis-py. Each loaded
document is a channel (``Config.redis_channel_prefix`` + name) that its process
subscribes to while the room is loaded; messages are :mod:`collab.wire.relay` envelopes carrying the
publishing process's id, so a process skips its own.

- **Fan-out.** Each update a local editor sent (exactly what the Doc integrated)
  and each presence change is published once: whatever queued during one
  event-loop turn goes out in one write on the publishing connection. Other
  processes apply it with :meth:`Room.receive_remote`: forwarded to their
  editors, never logged there. Both connections (publishing, subscribed) are
  :mod:`collab.fanout.connection` protocols: a message received is parsed and
  dispatched in ``data_received``, with no task, await or timeout per message;
  redis-py serves only the few commands that wait for an answer (``PING``,
  ``PUBSUB NUMSUB``).
- **Catching up.** A process that loads a document asks how many processes hold
  it (``PUBSUB NUMSUB``), publishes its state vector (step 1) and waits, up to
  ``Config.redis_sync_timeout``, for each of them to answer with what it lacks
  (step 2) and their own state vector, to which it answers with what *they* lack.
  So the first editor there never sees an older document than editors elsewhere.
- **Self-healing.** Pub/sub drops what is published while a subscriber is away.
  Each message carries a per-process, per-document sequence number; a receiver
  that sees one skipped resyncs that document, and a process whose connection
  comes back (or whose publishes failed) resyncs every document it holds, by
  state vectors. While Redis is down the rooms serve their editors and the
  journal logs as usual; nothing is queued for Redis meanwhile (the resync sends
  differences, which also repairs updates a Doc is holding past a gap). A
  connection that goes silent without closing (a dropped NAT entry, a failover)
  is found by a heartbeat: a ``PING`` on the subscribed connection every
  ``Config.redis_heartbeat`` seconds; a connection that owes Redis's answer for
  twice as long is dropped, so the loops above reconnect and resync.
- Presence crosses the same way. A process renews (in batches) and removes only
  the states its own editors own; states from a process that died expire on the
  others after ``awareness_timeout``, like those of a silent editor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from collab.config import Config
from collab.core import metrics
from collab.core.room import Room
from collab.errors import CollabError, ProtocolError
from collab.fanout.connection import RespConnection, open_connection
from collab.fanout.resp import Reply, ReplyError, command
from collab.wire import relay as wire
from collab.wire.relay import BROADCAST, Kind

__all__ = ["RedisRelay", "RelayStats"]

log = logging.getLogger("collab.fanout")

#: An update that holds nothing: a step 2 answering a state vector that lacks nothing.
_EMPTY_UPDATE = b"\x00\x00"
_FIRST_RETRY_DELAY = 0.05
_MAX_RETRY_DELAY = 2.0
_FAILURES = (RedisError, OSError)
_CONNECT_TIMEOUT = 2.0
_PUBLISH = b"PUBLISH"
_PING = command(b"PING")


@dataclass(slots=True)
class RelayStats:
    """Counters for observability (collab.http's /metrics reads them)."""

    published: int = 0  # messages handed to Redis
    received: int = 0  # messages from other processes applied
    dropped: int = 0  # messages not published: Redis was down or the publish failed
    resyncs: int = 0  # documents resynced by state vectors (returns, gaps, failed publishes)
    gaps: int = 0  # sequence gaps noticed
    ups: int = 0  # (re)connections
    downs: int = 0  # connections lost


@dataclass(slots=True)
class _CatchUp:
    """The answers a loading document waits for."""

    expected: int
    origins: set[bytes]
    done: asyncio.Event


class RedisRelay:
    """Joins the rooms of every process that uses the same Redis (see the module docstring).

    Use it as an async context manager: entering starts the tasks that keep the
    subscribed and the publishing connections open (it does not wait for Redis: a
    process starts, and serves, with Redis down); leaving closes them. :meth:`join`,
    :meth:`leave`, :meth:`update` and :meth:`awareness` are what rooms call.
    """

    def __init__(self, config: Config) -> None:
        if not config.redis_url:
            raise ValueError("RedisRelay needs Config.redis_url")
        self._config = config
        #: This process, in every message it publishes.
        self.origin = os.urandom(wire.ORIGIN_BYTES)
        self._prefix = config.redis_channel_prefix.encode()
        self._control = self._prefix + b"\x00processes"
        # No retries inside redis-py: a lost connection must surface here, so that the
        # subscriber notices it and resyncs once it is back.
        self._url = config.redis_url
        self._client = aioredis.Redis.from_url(
            config.redis_url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=_CONNECT_TIMEOUT
        )
        self._sub: RespConnection | None = None  # subscribed, while connected
        self._pub: RespConnection | None = None  # publishing, while connected
        self._rooms: dict[str, Room] = {}
        self._sent: dict[str, int] = {}  # doc -> seq of our latest message
        self._seen: dict[tuple[bytes, str], int] = {}  # (origin, doc) -> latest seq
        self._confirmed: dict[bytes, asyncio.Event] = {}  # channel -> subscription confirmed
        self._catching_up: dict[str, _CatchUp] = {}
        self._outbox: list[bytes] = []  # PUBLISH commands not yet written
        self._flush_scheduled = False
        self._unanswered = 0  # publishes written that Redis has not answered yet
        self._waiting_since = 0.0  # monotonic time _unanswered last rose from 0
        self._answered = asyncio.Event()  # set whenever _unanswered drops to 0
        self._publish_failed = False
        self._publish_error_logged = False
        self._tasks: list[asyncio.Task[None]] = []
        self._went_up_on: RespConnection | None = None  # the connection we last went up on
        #: The channels of the first SUBSCRIBE on the subscribed connection.
        self._subscribed_first: set[bytes] = set()
        self._closing = False
        #: True while subscribed (Redis answers).
        self.up = False
        self.stats = RelayStats()

    # -- lifetime -------------------------------------------------------------------------------

    async def __aenter__(self) -> RedisRelay:
        self._tasks = [
            asyncio.create_task(self._subscriber(), name="collab.fanout subscriber"),
            asyncio.create_task(self._publisher(), name="collab.fanout publisher"),
        ]
        if self._config.redis_heartbeat > 0:
            heartbeat = self._heartbeat(self._config.redis_heartbeat)
            self._tasks.append(asyncio.create_task(heartbeat, name="collab.fanout heartbeat"))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        if self._sub is not None:
            self._sub.close()
        # Whatever local editors did last (their departures, say) still goes out.
        self._flush()
        if self._unanswered and self._pub is not None:
            self._answered.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._answered.wait()
        if self._pub is not None:
            self._pub.close()
        for task in self._tasks:
            task.cancel()
        for _ in range(3):
            _, pending = await asyncio.wait(self._tasks, timeout=2.0)
            if not pending:
                break
            for task in pending:
                task.cancel()
        with contextlib.suppress(*_FAILURES):
            await self._client.aclose()

    async def ping(self) -> bool:
        """True if Redis answers now (for readiness checks). Never raises."""
        try:
            return bool(await self._client.ping())
        except _FAILURES:
            return False

    # -- what rooms call (collab.core.relay) -------------------------------------------------------

    async def join(self, room: Room) -> None:
        name = room.name
        self._rooms[name] = room
        sub = self._sub
        if not self.up or sub is None:
            return  # the resync when Redis is back catches up
        channel = self._channel(name)
        confirmed = self._confirmed[channel] = asyncio.Event()
        catch_up = _CatchUp(0, set(), asyncio.Event())
        try:
            async with asyncio.timeout(self._config.redis_sync_timeout):
                sub.write(command(b"SUBSCRIBE", channel))
                await confirmed.wait()
                [(_, subscribers)] = await self._client.pubsub_numsub(channel)
                catch_up.expected = int(subscribers) - 1
                if catch_up.expected <= 0:
                    return  # nobody else holds it: the store has everything
                self._catching_up[name] = catch_up
                self._publish(name, Kind.SYNC_REQUEST, room.doc.get_state())
                await catch_up.done.wait()
        except TimeoutError:
            log.warning(
                "catching up on %r: %d of %d processes answered within %.1f s",
                name,
                len(catch_up.origins),
                catch_up.expected,
                self._config.redis_sync_timeout,
            )
        except _FAILURES as exc:
            log.warning("catching up on %r failed (resync when Redis is back): %s", name, exc)
        finally:
            if self._catching_up.get(name) is catch_up:
                del self._catching_up[name]

    def leave(self, room: Room) -> None:
        name = room.name
        if self._rooms.get(name) is not room:
            return
        del self._rooms[name]
        for key in [k for k in self._seen if k[1] == name]:
            del self._seen[key]
        channel = self._channel(name)
        self._confirmed.pop(channel, None)
        sub = self._sub
        if sub is not None and sub.open:
            sub.write(command(b"UNSUBSCRIBE", channel))

    def update(self, doc: str, update: bytes) -> None:
        self._publish(doc, Kind.UPDATE, update)

    def awareness(self, doc: str, payload: bytes) -> None:
        self._publish(doc, Kind.AWARENESS, payload)

    # -- publishing ------------------------------------------------------------------------------

    def _channel(self, doc: str) -> bytes:
        return self._prefix + doc.encode()

    def _publish(
        self, doc: str, kind: Kind, payload: bytes, target: bytes = BROADCAST, reply: bytes = b""
    ) -> None:
        # Every message takes a seq, published or not: receivers see the gap and resync.
        seq = self._sent[doc] = self._sent.get(doc, 0) + 1
        pub = self._pub
        if not self.up or pub is None or pub.paused:
            self.stats.dropped += 1
            if self.up:
                # Subscribed but not publishing: what is lost is resynced once we publish.
                self._publish_failed = True
            return
        if kind is Kind.SYNC_REPLY:
            data = wire.encode_reply(self.origin, seq, target, payload, reply)
        else:
            data = wire.encode(kind, self.origin, seq, payload, target)
        self._outbox.append(command(_PUBLISH, self._channel(doc), data))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write what queued during this event-loop turn, in one write."""
        self._flush_scheduled = False
        batch, self._outbox = self._outbox, []
        if not batch:
            return
        pub = self._pub
        try:
            if pub is None:
                raise ConnectionError("not connected")
            pub.write(b"".join(batch))
        except ConnectionError:
            self.stats.dropped += len(batch)
            self._publish_failed = True
            return
        if not self._unanswered:
            self._waiting_since = time.monotonic()
        self._unanswered += len(batch)

    def _on_publish_reply(self, reply: Reply) -> None:
        self._unanswered -= 1
        if self._unanswered <= 0:
            self._unanswered = 0
            self._answered.set()
        if isinstance(reply, ReplyError):
            # That message is lost: reconnect (with backoff) and resync then.
            self.stats.dropped += 1
            self._publish_failed = True
            if not self._publish_error_logged:
                self._publish_error_logged = True
                log.warning("publishing to Redis failed (resync when it works): %s", reply)
            if self._pub is not None:
                self._pub.close()
            return
        self.stats.published += 1
        metrics.REDIS_PUBLISHED.value += 1

    def _on_publish_resume(self) -> None:
        if self._publish_failed and self.up:
            self._publish_failed = False
            self._resync_all("publishes were held back")

    async def _publisher(self) -> None:
        """Keep the publishing connection open; resync after publishes were lost."""
        delay = _FIRST_RETRY_DELAY
        while not self._closing:
            try:
                pub = await open_connection(
                    self._url,
                    self._on_publish_reply,
                    timeout=_CONNECT_TIMEOUT,
                    on_resume=self._on_publish_resume,
                )
            except _FAILURES as exc:
                if not self._publish_failed:
                    log.warning("publishing to Redis failed (resync when it works): %s", exc)
                self._publish_failed = True
            else:
                self._pub = pub
                self._publish_error_logged = False
                delay = _FIRST_RETRY_DELAY
                if self._publish_failed and self.up:
                    self._publish_failed = False
                    self._resync_all("publishes failed")
                try:
                    await asyncio.shield(pub.closed)
                finally:
                    self._pub = None
                    pub.close()
                if self._unanswered:
                    # Written but never answered: they may be lost.
                    self._unanswered = 0
                    self._answered.set()
                    self._publish_failed = True
                if self._outbox:
                    self._flush()  # counts them dropped
            if self._closing:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_DELAY)

    async def _heartbeat(self, interval: float) -> None:
        """Every ``interval`` seconds: PING the subscribed connection, and drop a
        connection on which Redis owes an answer (a PING's, or a publish's) and has
        been silent for ``2 * interval``. Dropped, it is reconnected by its loop, which
        resyncs; without this a connection that died silently would never be noticed."""
        limit = 2 * interval
        while not self._closing:
            await asyncio.sleep(interval)
            now = time.monotonic()
            sub = self._sub
            if sub is not None and sub.open:
                if now - sub.heard_at > limit:
                    log.warning(
                        "Redis silent for %.1f s (subscribed): reconnecting", now - sub.heard_at
                    )
                    sub.abort()
                else:
                    sub.write(_PING)  # answered by ["pong", ""] (ignored by _on_push)
            pub = self._pub
            if pub is not None and self._unanswered:
                silent = now - max(pub.heard_at, self._waiting_since)
                if silent > limit:
                    log.warning("Redis silent for %.1f s (publishing): reconnecting", silent)
                    pub.abort()

    # -- subscribing ------------------------------------------------------------------------------

    async def _subscriber(self) -> None:
        """Keep the subscribed connection open: subscribe (the control channel and every
        document held), then dispatch each message as it arrives (``_on_push``)."""
        delay = _FIRST_RETRY_DELAY
        while not self._closing:
            try:
                sub = await open_connection(self._url, self._on_push, timeout=_CONNECT_TIMEOUT)
            except _FAILURES as exc:
                self._went_down(exc)
            else:
                try:
                    self._sub = sub
                    channels = [self._control, *(self._channel(n) for n in self._rooms)]
                    self._subscribed_first = set(channels)
                    sub.write(command(b"SUBSCRIBE", *channels))
                    lost = await asyncio.shield(sub.closed)
                    if not self._closing:
                        self._went_down(lost or ConnectionError("Redis closed the connection"))
                finally:
                    self._sub = None
                    self.up = False
                    sub.close()
                if self.stats.ups and self._went_up_on is sub:
                    delay = _FIRST_RETRY_DELAY
            if self._closing:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_DELAY)

    def _went_down(self, exc: BaseException) -> None:
        if self.up or self.stats.downs == 0:
            self.stats.downs += 1
            log.warning("lost Redis (serving local editors; resync when it is back): %s", exc)
        self.up = False
        metrics.REDIS_UP.set(0)

    def _went_up(self) -> None:
        self._went_up_on = self._sub
        self.up = True
        # A room that joined after the first SUBSCRIBE went out, while Redis had not
        # confirmed it (join returns at once then), is subscribed now, before the
        # resync below asks other processes for what it lacks.
        late = [c for c in map(self._channel, self._rooms) if c not in self._subscribed_first]
        if late and self._sub is not None:
            self._sub.write(command(b"SUBSCRIBE", *late))
        # The resync below repairs whatever was lost so far (if it cannot be published
        # either, _publish marks the failure again).
        self._publish_failed = False
        metrics.REDIS_UP.set(1)
        self.stats.ups += 1
        if self.stats.ups > 1:
            log.info("Redis is back: resyncing %d documents", len(self._rooms))
        else:
            log.info("connected to Redis")
        # Whatever was published while we were away is lost to us: resync rather than
        # wait for a gap, and start counting sequences afresh.
        self._seen.clear()
        self._resync_all("connected")

    def _resync_all(self, why: str) -> None:
        for name, room in list(self._rooms.items()):
            self._resync(name, room, why)

    def _resync(self, name: str, room: Room, why: str) -> None:
        log.debug("resyncing %r (%s)", name, why)
        self.stats.resyncs += 1
        metrics.REDIS_RESYNCS.value += 1
        self._publish(name, Kind.SYNC_REQUEST, room.doc.get_state())
        presence = room.local_awareness()
        if presence is not None:
            self._publish(name, Kind.AWARENESS, presence)

    def _on_push(self, reply: Reply) -> None:
        """One reply on the subscribed connection: a message, or a (un)subscription."""
        if not isinstance(reply, list) or len(reply) != 3:
            if isinstance(reply, ReplyError):
                log.warning("Redis refused a subscription: %s", reply)
            return
        kind, channel, data = reply
        if not isinstance(channel, bytes):
            return
        if kind == b"message":
            if isinstance(data, bytes):
                self._dispatch(channel, data)
        elif kind == b"subscribe":
            if channel == self._control:
                self._went_up()
            else:
                confirmed = self._confirmed.get(channel)
                if confirmed is not None:
                    confirmed.set()

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        """Handle one message published on ``channel``."""
        # Our own publishes come back to us too: skip them before anything else.
        if data[2 : 2 + wire.ORIGIN_BYTES] == self.origin or not channel.startswith(self._prefix):
            return
        name = channel[len(self._prefix) :].decode(errors="replace")
        room = self._rooms.get(name)
        if room is None:
            return
        try:
            envelope = wire.decode(data)
        except ProtocolError as exc:
            log.warning("ignoring a bad message on %r: %s", name, exc.reason)
            return
        if envelope.origin == self.origin:
            return
        key = (envelope.origin, name)
        last = self._seen.get(key)
        self._seen[key] = envelope.seq
        if last is not None and envelope.seq != last + 1:
            self.stats.gaps += 1
            self._resync(name, room, f"{envelope.seq - last - 1} messages lost")
        if envelope.target not in (BROADCAST, self.origin):
            return
        try:
            self._apply(name, room, envelope)
        except (CollabError, ValueError) as exc:
            # Bad bytes from another process harm nothing here: the room is unchanged.
            reason = exc.reason if isinstance(exc, CollabError) else str(exc)
            log.warning(
                "ignoring a %s on %r from another process: %s", envelope.kind.name, name, reason
            )

    def _apply(self, name: str, room: Room, envelope: wire.Envelope) -> None:
        self.stats.received += 1
        match envelope.kind:
            case Kind.UPDATE | Kind.SYNC_DIFF:
                room.receive_remote(envelope.payload)
            case Kind.AWARENESS:
                room.receive_remote_awareness(envelope.payload)
            case Kind.SYNC_REQUEST:
                missing = room.doc.get_update(envelope.payload)
                self._publish(name, Kind.SYNC_REPLY, missing, envelope.origin, room.doc.get_state())
                presence = room.local_awareness()
                if presence is not None:
                    self._publish(name, Kind.AWARENESS, presence)
            case Kind.SYNC_REPLY:
                update, state = envelope.reply()
                room.receive_remote(update)
                back = room.doc.get_update(state)
                if back != _EMPTY_UPDATE:
                    self._publish(name, Kind.SYNC_DIFF, back, envelope.origin)
                catch_up = self._catching_up.get(name)
                if catch_up is not None:
                    catch_up.origins.add(envelope.origin)
                    if len(catch_up.origins) >= catch_up.expected:
                        catch_up.done.set()
