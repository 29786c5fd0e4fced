"""The journal: accepted updates go in without waiting; one task commits them in groups.

Rooms call :meth:`DocumentLog.append` for every accepted update. It never blocks,
never awaits and never drops: the entry joins one FIFO queue shared by every
document. A single committer task takes *everything* queued once the first
entry has waited ``Config.commit_interval`` seconds (or as soon as
``Config.commit_max_updates`` are queued) and writes it with **one**
``Store.append()`` — one transaction, one fsync. Entries appended while that
commit runs go into the next one. When the commit returns, the entries are
durable and their ``on_durable`` callbacks run, in append order.

Snapshots ride along. When a document has gathered ``Config.snapshot_every_updates``
entries or ``Config.snapshot_every_seconds`` since its last snapshot, its live
state is captured *at the instant the batch is taken off the queue* (no await in
between), so the snapshot covers exactly the entries up to that document's last
entry in the batch, and it is stored in the same transaction as those entries.

When the store fails, the journal says so loudly (an ERROR record on the
``collab.journal`` logger), fires no ``on_durable``, keeps every entry in order
and retries with exponential backoff (up to ``Config.commit_retry_max_delay``).
``flush()`` raises :class:`~collab.errors.StoreError` while that lasts. Nothing is
dropped, so each entry is committed exactly once when the store comes back.

Usage::

    async with Journal(store, config) as journal:
        log = journal.open("notes", state=doc.get_update, last_seq=loaded.last_seq)
        log.append(update, client="c1", on_durable=lambda: ack(...))
        await log.flush()      # durable now
        await log.close()      # flush + final snapshot; detach
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from collab.config import Config
from collab.core import metrics
from collab.core.observer import Committed, DocumentObserver
from collab.errors import CloseCode, CollabError, StoreError
from collab.store import NewEntry, Store

logger = logging.getLogger("collab.journal")

#: First retry delay after a failed commit; doubles up to ``Config.commit_retry_max_delay``.
_FIRST_RETRY_DELAY = 0.05


class JournalClosed(CollabError):
    """An update was appended to a :class:`DocumentLog` that is closing or closed.

    The room unloads a document only when nobody edits it, so this is a race on
    unload: the editor is told to go away and, on reconnect, resyncs with a fresh
    log. Nothing it sent is lost: its own Doc still has it.
    """

    close_code = CloseCode.GOING_AWAY


@dataclass(slots=True)
class _Pending:
    log: DocumentLog
    entry: NewEntry
    on_durable: Callable[[], None] | None
    ticket: int  # global append order


class DocumentLog:
    """One open document's handle on the journal. Build it with :meth:`Journal.open`."""

    def __init__(
        self,
        journal: Journal,
        doc: str,
        state: Callable[[], bytes],
        last_seq: int,
        incarnation: int = 0,
    ) -> None:
        self.doc = doc
        #: ``Loaded.incarnation`` of the load: the store fences this log's writes with it.
        self.incarnation = incarnation
        #: The store refused an append: the document was deleted since it was loaded.
        self.ended = False
        self._ending: asyncio.Future[None] | None = None
        self._journal = journal
        self._state = state
        self._last_seq = last_seq
        self._appended = 0  # entries appended through this log, ever
        self._durable = 0  # of which committed
        self._last_ticket = 0  # ticket of the latest append
        self._snapshot_mark = 0  # value of _appended covered by the latest snapshot
        self._snapshot_time = time.monotonic()
        self._closing = False
        self._superseded = False  # never snapshot: see Journal.open

    @property
    def ending(self) -> asyncio.Future[None]:
        """Done once the log has :attr:`ended`: the store refused its appends, because
        the document was deleted since this log's load. Its refused updates are never
        acknowledged; whoever waits for one waits on this too. One future per log."""
        if self._ending is None:
            self._ending = asyncio.get_running_loop().create_future()
            if self.ended:
                self._ending.set_result(None)
        return self._ending

    @property
    def pending(self) -> int:
        """Entries appended but not yet durable."""
        return self._appended - self._durable

    @property
    def last_seq(self) -> int:
        """The seq of this document's latest durable entry (as given at open, then by commits)."""
        return self._last_seq

    def append(
        self,
        update: bytes,
        client: str,
        user: str | None = None,
        on_durable: Callable[[], None] | None = None,
    ) -> None:
        """Queue ``update`` for the log. Returns at once; never drops it.

        ``on_durable`` is called (from the committer task, in append order) once
        the transaction holding the update has committed; never if it did not.
        While it runs, :attr:`last_seq` is the seq the store gave this update.
        Raises :class:`JournalClosed` once :meth:`close` has begun.
        """
        if self._closing:
            raise JournalClosed(f"the log of {self.doc!r} is closed")
        self._appended += 1
        entry = NewEntry(doc=self.doc, update=update, at=time.time(), client=client, user=user)
        self._journal._enqueue(self, entry, on_durable)

    def when_durable(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once everything appended so far is durable (now if it is).

        For an update that changed nothing (the document already had it): it is
        as durable as the log it is already in.
        """
        if not self.pending:
            callback()
        else:
            self._journal._when_committed(self._last_ticket, callback)

    async def flush(self) -> None:
        """Return once everything appended so far is durable.

        Raises ``StoreError`` if the store is failing (the entries stay queued
        and are retried; call again to keep waiting).
        """
        if self.pending:
            await self._journal._wait_committed(self._last_ticket)

    async def close(self, snapshot: bool = True) -> None:
        """Flush, write a final snapshot if anything changed since the last one, and detach.

        ``snapshot=False`` skips the snapshot: for a document about to be deleted,
        where writing one would put the document back in the store, if only until
        the deletion (a deletion made elsewhere already removed it).
        Appends are refused from the moment this is called. Raises ``StoreError``
        if the store is failing; the log then stays attached and may be closed again.
        """
        self._closing = True
        await self.flush()
        if snapshot and self._appended > self._snapshot_mark:
            await self._journal._request_snapshot(self)
        self._journal._detach(self)

    def _wants_snapshot(self, now: float, forced: bool) -> bool:
        changed = self._appended - self._snapshot_mark
        if changed <= 0 or self._superseded or self.ended:
            return False
        config = self._journal.config
        return (
            forced
            or changed >= config.snapshot_every_updates
            or now - self._snapshot_time >= config.snapshot_every_seconds
        )


@dataclass(slots=True)
class _Batch:
    count: int  # queue items taken
    last_ticket: int
    snapshots: dict[str, bytes]
    marks: dict[DocumentLog, int]  # log -> its _appended value the snapshot covers
    requests: dict[DocumentLog, list[asyncio.Future[None]]]
    incarnations: dict[str, int]  # doc -> Loaded.incarnation: the store's fence


class Journal:
    """Group commit between rooms and the store; see the module docstring.

    Use it as an async context manager: entering starts the committer task,
    leaving commits everything still queued (and snapshots every open document
    that changed) before stopping it. If the store is still failing after
    ``Config.shutdown_flush_timeout`` seconds, leaving logs an ERROR naming how
    many entries were not made durable and raises ``StoreError``.
    """

    def __init__(
        self, store: Store, config: Config, observer: DocumentObserver | None = None
    ) -> None:
        self.store = store
        self.config = config
        #: Told of every durable batch (collab.core.observer); never blocks a commit.
        self.observer = observer
        self._logs: dict[str, DocumentLog] = {}
        self._queue: deque[_Pending] = deque()
        self._tickets = 0
        self._committed = 0  # every ticket <= this is durable
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._ticket_callbacks: list[tuple[int, Callable[[], None]]] = []
        self._snapshot_requests: dict[DocumentLog, list[asyncio.Future[None]]] = {}
        self._failure: StoreError | None = None
        self._work = asyncio.Event()  # something is queued or requested
        self._full = asyncio.Event()  # commit_max_updates reached, or stopping
        self._stopping = False
        self._hurried = False  # a flush is waiting: skip the gathering window once
        self._stop = asyncio.Event()  # set once, when leaving the context
        self._task: asyncio.Task[None] | None = None
        #: Transactions committed (successful ``Store.append`` calls), for observability.
        self.commits = 0

    @property
    def pending(self) -> int:
        """Entries appended (to any document) but not yet durable."""
        return len(self._queue)

    @property
    def failing(self) -> bool:
        """True while the latest commit attempt failed."""
        return self._failure is not None

    def open(
        self,
        doc: str,
        state: Callable[[], bytes],
        last_seq: int,
        entries_since_snapshot: int = 0,
        incarnation: int = 0,
    ) -> DocumentLog:
        """Start logging ``doc``. ``state()`` must return the live Doc's full state, synchronously.

        ``last_seq`` is the seq the document was loaded at, ``incarnation`` its
        ``Loaded.incarnation``: once the document is deleted (by anyone), the store
        writes nothing more of this log (:meth:`~collab.store.Store.append`), the
        log is :attr:`~DocumentLog.ended` and its updates are never acknowledged.
        ``entries_since_snapshot`` (``len(loaded.entries)``) counts toward the next
        snapshot, so a document loaded from a long log without a snapshot gets one
        soon (at its next commit, or when its log is closed) and the next load is fast.
        Raises ``ValueError`` if ``doc`` is already open in this journal (a log
        whose ``close()`` failed may be replaced: its entries still commit first).
        """
        previous = self._logs.get(doc)
        if previous is not None and not previous._closing:
            raise ValueError(f"{doc!r} is already open in this journal")
        log = self._logs[doc] = DocumentLog(self, doc, state, last_seq, incarnation)
        log._snapshot_mark = -entries_since_snapshot
        if previous is not None:
            # Its close() failed (the store is failing) and it still holds entries. They
            # will commit, in order, before this log's; but this Doc was loaded without
            # them, so a snapshot of it could claim seqs whose content it lacks. The
            # log itself stays complete: this log just never snapshots.
            previous._superseded = True
            log._superseded = previous.pending > 0 or previous._superseded
        return log

    async def __aenter__(self) -> Journal:
        self._task = asyncio.create_task(self._run(), name="collab.journal")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        for log in list(self._logs.values()):
            if log._appended > log._snapshot_mark:
                self._snapshot_requests.setdefault(log, [])
        self._stopping = True
        self._stop.set()
        self._work.set()
        self._full.set()
        try:
            async with asyncio.timeout(self.config.shutdown_flush_timeout):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            lost = len(self._queue)
            metrics.UPDATES_PENDING.value -= lost  # not pending any more: lost to this process
            logger.error(
                "journal stopped with the store still failing: %d entries were not made durable",
                lost,
            )
            if exc is None:
                raise StoreError(f"{lost} entries could not be made durable") from self._failure
        finally:
            if not task.done():
                task.cancel()

    # -- called by DocumentLog -------------------------------------------------------------

    def _enqueue(
        self, log: DocumentLog, entry: NewEntry, on_durable: Callable[[], None] | None
    ) -> None:
        self._tickets += 1
        log._last_ticket = self._tickets
        self._queue.append(_Pending(log, entry, on_durable, self._tickets))
        metrics.UPDATES_PENDING.value += 1
        self._work.set()
        if len(self._queue) >= self.config.commit_max_updates:
            self._full.set()

    def _when_committed(self, ticket: int, callback: Callable[[], None]) -> None:
        self._ticket_callbacks.append((ticket, callback))

    async def _wait_committed(self, ticket: int) -> None:
        if ticket <= self._committed:
            return
        if self._failure is not None:
            raise StoreError(f"the store is failing: {self._failure.reason}") from self._failure
        self._check_running()
        self._hurry()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((ticket, future))
        await future

    async def _request_snapshot(self, log: DocumentLog) -> None:
        if self._failure is not None:
            raise StoreError(f"the store is failing: {self._failure.reason}") from self._failure
        self._check_running()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._snapshot_requests.setdefault(log, []).append(future)
        self._work.set()
        self._hurry()
        await future

    def _hurry(self) -> None:
        """Someone awaits durability: commit what is queued without waiting for more."""
        self._hurried = True
        self._full.set()

    def _detach(self, log: DocumentLog) -> None:
        if self._logs.get(log.doc) is log:
            del self._logs[log.doc]

    def _check_running(self) -> None:
        if self._task is None or self._task.done():
            raise StoreError("the journal is not running (use it as `async with Journal(...)`)")

    # -- the committer -----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = _FIRST_RETRY_DELAY
        while True:
            if not self._queue and not self._snapshot_requests:
                if self._stopping:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            await self._gather()
            batch = self._take()
            started = time.perf_counter()
            try:
                seqs = await self.store.append(
                    [p.entry for p in list(self._queue)[: batch.count]],
                    batch.snapshots,
                    batch.incarnations,
                )
            except StoreError as exc:
                metrics.STORE_COMMIT_SECONDS.observe(time.perf_counter() - started)
                self._fail(batch, exc)
                await self._backoff(delay)
                delay = min(delay * 2, self.config.commit_retry_max_delay)
                continue
            except Exception as exc:  # a bug in a store: treat it as a failure, keep the entries
                metrics.STORE_COMMIT_SECONDS.observe(time.perf_counter() - started)
                self._fail(batch, StoreError(f"unexpected {type(exc).__name__}: {exc}"))
                logger.exception("the store raised something other than StoreError")
                await self._backoff(delay)
                delay = min(delay * 2, self.config.commit_retry_max_delay)
                continue
            metrics.STORE_COMMIT_SECONDS.observe(time.perf_counter() - started)
            delay = _FIRST_RETRY_DELAY
            self._succeed(batch, seqs)

    async def _gather(self) -> None:
        """Give more entries ``commit_interval`` to arrive, unless the batch is already full."""
        if self._stopping or self._hurried or len(self._queue) >= self.config.commit_max_updates:
            return
        self._full.clear()
        try:
            async with asyncio.timeout(self.config.commit_interval):
                await self._full.wait()
        except TimeoutError:
            pass

    def _take(self) -> _Batch:
        """Everything queued now, plus the snapshots due, captured at this same instant."""
        count = len(self._queue)
        now = time.monotonic()
        self._hurried = False
        requests, self._snapshot_requests = self._snapshot_requests, {}
        snapshots: dict[str, bytes] = {}
        marks: dict[DocumentLog, int] = {}
        logs = dict.fromkeys(p.log for p in self._queue) | dict.fromkeys(requests)
        for log in logs:
            if not log._wants_snapshot(now, forced=log in requests):
                continue
            try:
                snapshots[log.doc] = log._state()
            except Exception:  # the log is still complete; the snapshot can wait
                logger.exception("could not capture the state of %r for a snapshot", log.doc)
                continue
            marks[log] = log._appended
        last_ticket = self._queue[-1].ticket if count else self._committed
        # The newest log of a name wins: a superseded log's entries (see open) were
        # loaded before it, so they cannot be of a later incarnation.
        incarnations = {log.doc: log.incarnation for log in logs}
        return _Batch(count, last_ticket, snapshots, marks, requests, incarnations)

    def _succeed(self, batch: _Batch, seqs: list[int]) -> None:
        self.commits += 1
        if self._failure is not None:
            logger.warning("the store works again; %d queued entries committed", batch.count)
        self._failure = None
        now = time.monotonic()
        done = [self._queue.popleft() for _ in range(batch.count)]
        metrics.UPDATES_PENDING.value -= batch.count
        metrics.UPDATES_COMMITTED.value += batch.count
        self._committed = batch.last_ticket
        latest: dict[DocumentLog, int] = {}
        refused = False
        for pending, seq in zip(done, seqs, strict=True):
            pending.log._durable += 1  # settled: written, or refused for good
            if seq:
                latest[pending.log] = seq
            else:
                refused = True
                self._end(pending.log)
        if refused:
            done, seqs = self._written(done, seqs)
        for log, mark in batch.marks.items():
            log._snapshot_mark = mark
            log._snapshot_time = now
        for pending, seq in zip(done, seqs, strict=True):
            if pending.on_durable is not None:
                pending.log._last_seq = seq  # what the callback reads as its update's seq
                try:
                    pending.on_durable()
                except Exception:
                    logger.exception("an on_durable callback of %r failed", pending.entry.doc)
        for log, seq in latest.items():
            log._last_seq = seq
        if self.observer is not None and done:
            self._tell_observer(self.observer, done, seqs)
        if self._ticket_callbacks:
            due = [cb for ticket, cb in self._ticket_callbacks if ticket <= self._committed]
            self._ticket_callbacks = [
                (t, cb) for t, cb in self._ticket_callbacks if t > self._committed
            ]
            for callback in due:
                try:
                    callback()
                except Exception:
                    logger.exception("a durability callback failed")
        for futures in batch.requests.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)
        waiting = []
        for ticket, future in self._waiters:
            if future.done():
                continue
            if ticket <= self._committed:
                future.set_result(None)
            else:
                waiting.append((ticket, future))
        self._waiters = waiting

    @staticmethod
    def _end(log: DocumentLog) -> None:
        if not log.ended:
            log.ended = True
            logger.warning(
                "%r was deleted since this process loaded it: its updates are not stored", log.doc
            )
            if log._ending is not None and not log._ending.done():
                log._ending.set_result(None)

    @staticmethod
    def _written(done: list[_Pending], seqs: list[int]) -> tuple[list[_Pending], list[int]]:
        """``done`` and ``seqs`` without the entries the store refused (seq 0)."""
        kept = [(pending, seq) for pending, seq in zip(done, seqs, strict=True) if seq]
        return [pending for pending, _ in kept], [seq for _, seq in kept]

    @staticmethod
    def _tell_observer(observer: DocumentObserver, done: list[_Pending], seqs: list[int]) -> None:
        committed = []
        for pending, seq in zip(done, seqs, strict=True):
            entry = pending.entry
            # Seq 1, not "this process loaded it empty": with several processes (one store)
            # each may have loaded the new document, and the store gives seq 1 to one commit.
            first = seq == 1
            committed.append(Committed(entry.doc, seq, entry.client, entry.user, entry.at, first))
        try:
            observer.committed(committed)
        except Exception:
            logger.exception("the document observer failed")

    def _fail(self, batch: _Batch, exc: StoreError) -> None:
        self._failure = exc
        metrics.STORE_COMMITS_FAILED.value += 1
        logger.error(
            "commit of %d entries (%d snapshots) failed; keeping them and retrying: %s",
            batch.count,
            len(batch.snapshots),
            exc.reason,
        )
        # Requests whose snapshot was not written are asked again in the next batch.
        for log, futures in batch.requests.items():
            self._snapshot_requests.setdefault(log, []).extend(futures)
        error = StoreError(f"the store is failing: {exc.reason}")
        error.__cause__ = exc
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(error)
        self._waiters = []
        for futures in self._snapshot_requests.values():
            for future in futures:
                if not future.done():
                    future.set_exception(error)
        # Keep the requests themselves (without their failed waiters) so they are retried.
        self._snapshot_requests = {log: [] for log in self._snapshot_requests}

    async def _backoff(self, delay: float) -> None:
        """Wait before retrying; cut short when the journal is stopping (then retry quickly)."""
        if self._stopping:
            delay = min(delay, _FIRST_RETRY_DELAY * 4)
            await asyncio.sleep(delay)
            return
        try:
            async with asyncio.timeout(delay):
                await self._stop.wait()
        except TimeoutError:
            pass
