"""Signed webhooks: document events POSTed to the URLs of ``--webhook-url``.

:class:`Webhooks` is a :class:`~collab.core.observer.DocumentObserver`: the
journal tells it of every durable commit, the DELETE path of every deletion,
and it turns them into three events (docs/webhooks.md has the bodies):

- ``document.created``: the first update of a document is durable;
- ``document.changed``: debounced per document, sent ``webhook_debounce_seconds``
  after its last commit, or ``webhook_max_wait_seconds`` after the first commit
  not yet reported while editing goes on; it carries the seq range, the authors
  and, with ``webhook_include_text``, the text;
- ``document.deleted``.

Each body is JSON with ``id`` (the same on every retry and every URL, so a
receiver can drop duplicates), ``event`` and ``doc``, signed as GitHub signs its
webhooks: ``X-Collab-Signature: sha256=<hex HMAC-SHA256 of the raw body under
webhook_secret>``.

Delivery never blocks editing: the observer calls only queue work. Each URL has
its own worker, its own thread for the blocking HTTP call and its own queue of at
most ``webhook_queue_size`` events (when full, the oldest is dropped with a
WARNING), so a slow or dead receiver costs bounded memory and delays no other
URL. A delivery that fails (a connection error, a timeout of
``webhook_timeout``, any status but 2xx) is retried after ``webhook_retry_delay``,
doubling up to a minute, with jitter, until ``webhook_retry_for_seconds`` have
passed since its first attempt; then it is dropped with an ERROR. Events go out
in order per URL: the head of the queue is retried before the next is sent.

Outbound HTTP is the standard library's (``urllib`` in a worker thread), as in
:func:`collab.client.edit`: one POST at a time per URL needs no connection pool,
and the server gains no HTTP client dependency. This is the only module of the
server that makes outbound HTTP requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from collab.config import Config
from collab.core.observer import Committed

__all__ = ["SIGNATURE_HEADER", "Webhooks", "sign"]

log = logging.getLogger("collab.webhooks")

SIGNATURE_HEADER = "X-Collab-Signature"
#: Retries never wait longer than this between two attempts.
_MAX_RETRY_DELAY = 60.0

TextOf = Callable[[str], Awaitable[str]]


def sign(body: bytes, secret: str) -> str:
    """The ``X-Collab-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass(slots=True)
class _Change:
    """What happened to one document since its last ``document.changed``."""

    first_seq: int
    last_seq: int
    started: float  # loop time of the first unreported commit
    updates: int = 0
    authors: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    timer: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class _Delivery:
    id: str
    event: str
    doc: str
    body: bytes


class _Target:
    """One URL: a bounded queue, a worker task and a thread for its blocking POSTs."""

    def __init__(self, url: str, config: Config) -> None:
        self.url = url
        self._config = config
        self._queue: deque[_Delivery] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collab-webhook")
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0  # attempts that failed
        self.dropped = 0  # deliveries given up on, or pushed out of a full queue

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"webhook {self.url}")

    def put(self, delivery: _Delivery) -> None:
        """Queue ``delivery``; never blocks. A full queue loses its oldest delivery."""
        if len(self._queue) >= self._config.webhook_queue_size:
            oldest = self._queue.popleft()
            self.dropped += 1
            log.warning(
                "webhook queue for %s is full (%d): dropped %s %s of %r",
                self.url,
                self._config.webhook_queue_size,
                oldest.event,
                oldest.id,
                oldest.doc,
            )
        self._queue.append(delivery)
        self._idle.clear()
        self._ready.set()

    @property
    def waiting(self) -> int:
        """Deliveries queued, not counting the one being attempted."""
        return len(self._queue)

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every queued delivery to be done."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A POST still running in the thread ends by its own timeout; nobody waits for it.
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._queue:
            log.warning("webhooks to %s: %d not delivered at shutdown", self.url, len(self._queue))

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._ready.clear()
                await self._ready.wait()
                continue
            # Out of the queue while it is attempted: the queue bounds what waits.
            await self._deliver(self._queue.popleft())

    async def _deliver(self, delivery: _Delivery) -> None:
        """Attempt ``delivery`` until it succeeds or its retry time is spent."""
        config = self._config
        loop = asyncio.get_running_loop()
        first = loop.time()
        delay = config.webhook_retry_delay
        attempt = 0
        headers = {"Content-Type": "application/json", "User-Agent": "collab-webhooks"}
        if config.webhook_secret:
            headers[SIGNATURE_HEADER] = sign(delivery.body, config.webhook_secret)
        headers["X-Collab-Event"] = delivery.event
        headers["X-Collab-Delivery"] = delivery.id
        while True:
            attempt += 1
            problem = await loop.run_in_executor(
                self._executor, _post, self.url, delivery.body, headers, config.webhook_timeout
            )
            if problem is None:
                self.delivered += 1
                log.info(
                    "webhook %s %s of %r delivered to %s (attempt %d)",
                    delivery.event,
                    delivery.id,
                    delivery.doc,
                    self.url,
                    attempt,
                )
                return
            self.failed += 1
            wait = min(delay, _MAX_RETRY_DELAY) * random.uniform(0.5, 1.5)
            if loop.time() + wait - first > config.webhook_retry_for_seconds:
                self.dropped += 1
                log.error(
                    "webhook %s %s of %r to %s dropped after %d attempts: %s",
                    delivery.event,
                    delivery.id,
                    delivery.doc,
                    self.url,
                    attempt,
                    problem,
                )
                return
            log.warning(
                "webhook %s %s of %r to %s failed (attempt %d): %s; retrying in %.1f s",
                delivery.event,
                delivery.id,
                delivery.doc,
                self.url,
                attempt,
                problem,
                wait,
            )
            await asyncio.sleep(wait)
            delay *= 2


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery: urllib would turn the POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> str | None:
    """POST ``body`` (in a worker thread); ``None`` on a 2xx answer, else what went wrong."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(64 * 1024)  # the answer is not used; read a little so keep-alive ends
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    return None if 200 <= status < 300 else f"HTTP {status}"


class Webhooks:
    """Webhook deliveries for one server. Use ``async with``; it is the journal's observer.

    ``text_of(doc)`` returns a document's current text (``webhook_include_text``);
    it may be set after construction (the runtime builds the rooms later).
    """

    def __init__(self, config: Config, text_of: TextOf | None = None) -> None:
        self.config = config
        self.text_of = text_of
        self._targets = [_Target(url, config) for url in config.webhook_url]
        self._changes: dict[str, _Change] = {}
        self._preparing: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- counts (for logs now, metrics later) ---------------------------------------------

    @property
    def delivered(self) -> int:
        return sum(t.delivered for t in self._targets)

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self._targets)

    @property
    def dropped(self) -> int:
        return sum(t.dropped for t in self._targets)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Webhooks:
        self._loop = asyncio.get_running_loop()
        for target in self._targets:
            target.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Send what is still debounced now, give the queues ``webhook_timeout`` to
        drain, then stop (what is left is logged as not delivered)."""
        for doc in list(self._changes):
            self._fire(doc)
        if self._preparing:
            await asyncio.gather(*self._preparing, return_exceptions=True)
        await asyncio.gather(*(t.drain(self.config.webhook_timeout) for t in self._targets))
        for target in self._targets:
            await target.stop()

    # -- the DocumentObserver interface ----------------------------------------------------

    def committed(self, entries: Sequence[Committed]) -> None:
        """Queue ``document.created`` for new documents; (re)start each one's debounce."""
        loop = self._loop
        if loop is None or not self._targets:
            return
        now = loop.time()
        for entry in entries:
            author = entry.user or entry.client
            if entry.first:
                self._send("document.created", entry.doc, {"author": author, "seq": entry.seq})
            change = self._changes.get(entry.doc)
            if change is None:
                change = self._changes[entry.doc] = _Change(entry.seq, entry.seq, now)
            change.last_seq = entry.seq
            change.updates += 1
            change.authors[author] = None
        for doc in {entry.doc for entry in entries}:
            change = self._changes[doc]
            due = min(
                now + self.config.webhook_debounce_seconds,
                change.started + self.config.webhook_max_wait_seconds,
            )
            if change.timer is not None:
                change.timer.cancel()
            change.timer = loop.call_at(due, self._fire, doc)

    def deleted(self, doc: str) -> None:
        """Queue ``document.deleted`` (a pending ``document.changed`` goes out first)."""
        if self._loop is None or not self._targets:
            return
        if doc in self._changes:
            self._fire(doc)
        self._send("document.deleted", doc, {})

    # -- internals -------------------------------------------------------------------------

    def _fire(self, doc: str) -> None:
        change = self._changes.pop(doc, None)
        if change is None:
            return
        if change.timer is not None:
            change.timer.cancel()
        fields: dict[str, Any] = {
            "seq": {"first": change.first_seq, "last": change.last_seq},
            "updates": change.updates,
            "authors": list(change.authors),
        }
        text_of = self.text_of
        if not (self.config.webhook_include_text and text_of is not None):
            self._send("document.changed", doc, fields)
            return
        task = asyncio.create_task(self._with_text(doc, fields, text_of))
        self._preparing.add(task)
        task.add_done_callback(self._preparing.discard)

    async def _with_text(self, doc: str, fields: dict[str, Any], text_of: TextOf) -> None:
        try:
            fields["text"] = await text_of(doc)
        except Exception:
            # The event still goes out, without the text, rather than not at all.
            log.exception("webhook document.changed of %r: cannot read its text", doc)
            fields["text"] = None
        self._send("document.changed", doc, fields)

    def _send(self, event: str, doc: str, fields: dict[str, Any]) -> None:
        ident = uuid.uuid4().hex
        payload = {"id": ident, "event": event, "doc": doc, "at": time.time(), **fields}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        delivery = _Delivery(ident, event, doc, body)
        for target in self._targets:
            target.put(delivery)
