"""A bare HTTP fallback client on the wire (httpx), for tests: one session, its stream, its POSTs.

It speaks docs/protocol.md's "HTTP fallback" by hand, with no retry logic of its
own, so each test decides what is lost, cut, repeated or resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from pycrdt import Doc, Text

from collab.wire import protocol
from collab.wire.fallback import CLOSE_EVENT, Event, EventStreamParser, encode_batch
from collab.wire.protocol import Awareness, AwarenessEntry, Message, SyncStep1, SyncStep2, Update


class FallbackPeer:
    """One fallback session of document ``doc`` (its path, as a WebSocket would use)."""

    def __init__(self, http: httpx.AsyncClient, doc: str, **query: str) -> None:
        self.http = http
        self.path = f"/_http/{doc}"
        self.query = query
        self.key = ""
        self.seq = 0
        self.doc: Doc[Any] = Doc()
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        #: Every event id received, in order, over every stream of this session.
        self.ids: list[int] = []
        self.parser = EventStreamParser()
        self.response: httpx.Response | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return str(self.doc.get("text", type=Text))

    async def open(self) -> httpx.Response:
        response = await self.http.post(self.path, params=self.query)
        if response.status_code == 201:
            self.key = response.json()["session"]
        return response

    async def listen(self, last_event_id: int | None = None) -> httpx.Response:
        """Open the event stream (resuming after ``last_event_id``); read it in the background."""
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        request = self.http.build_request(
            "GET", self.path, params={"session": self.key}, headers=headers
        )
        response = await self.http.send(request, stream=True)
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            return response
        self.response = response
        self.parser = EventStreamParser()
        self._reader = asyncio.create_task(self._read(response))
        return response

    async def _read(self, response: httpx.Response) -> None:
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_raw():
                for event in self.parser.feed(chunk):
                    if event.id is not None:
                        self.ids.append(int(event.id))
                    self.events.put_nowait(event)

    async def ended(self) -> None:
        """Wait until the server ended the event stream (or the connection went)."""
        if self._reader is not None:
            await self._reader

    async def cut(self) -> None:
        """Drop the event stream (the connection goes, as when a network cuts it)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self.response is not None:
            await self.response.aclose()
            self.response = None

    async def post(self, *messages: bytes, seq: int | None = None) -> httpx.Response:
        """POST ``messages`` as one batch with ``seq`` (default: the next one, then counted)."""
        number = self.seq if seq is None else seq
        response = await self.http.post(
            self.path,
            params={"session": self.key, "seq": str(number)},
            content=encode_batch(messages),
        )
        if seq is None and response.status_code == 200:
            self.seq += 1
        return response

    async def next_event(self, timeout: float = 10.0) -> Event:
        async with asyncio.timeout(timeout):
            return await self.events.get()

    async def next_message(self, timeout: float = 10.0) -> Message:
        event = await self.next_event(timeout)
        assert event.event == "message", f"expected a message, got {event}"
        return protocol.decode(event.message())

    async def closed(self, timeout: float = 10.0) -> tuple[int, str]:
        """Skip messages until the close event; its ``(code, reason)``."""
        while True:
            event = await self.next_event(timeout)
            if event.event == CLOSE_EVENT:
                return event.close()

    async def sync(self) -> None:
        """The y-websocket handshake over the fallback; returns once the server's step 2 is in."""
        await self.open()
        assert (await self.listen()).status_code == 200
        await self.post(protocol.encode(SyncStep1(self.doc.get_state())))
        while True:
            message = await self.next_message()
            if isinstance(message, SyncStep1):
                await self.post(
                    protocol.encode(SyncStep2(self.doc.get_update(message.state_vector)))
                )
            elif isinstance(message, SyncStep2):
                self.doc.apply_update(message.update)
                return

    async def wait_text(self, expected: str, timeout: float = 10.0) -> None:
        """Apply incoming updates until the text is ``expected``."""
        async with asyncio.timeout(timeout):
            while self.text != expected:
                message = await self.next_message()
                if isinstance(message, Update | SyncStep2):
                    self.doc.apply_update(message.update)

    async def insert(self, index: int, content: str) -> httpx.Response:
        """Edit the local doc and POST the update."""
        before = self.doc.get_state()
        self.doc.get("text", type=Text).insert(index, content)
        return await self.post(protocol.encode(Update(self.doc.get_update(before))))


def sessions(server: object) -> int:
    """How many fallback sessions ``server`` (either kind, tests/servers.py) has open."""
    runtime = getattr(server, "runtime", None) or server.app.runtime  # type: ignore[attr-defined]
    return int(runtime.fallback.sessions)


def awareness_message(client_id: int, clock: int, state: dict[str, Any] | None) -> bytes:
    import json

    entry = AwarenessEntry(client_id, clock, json.dumps(state))
    return protocol.encode(Awareness(protocol.encode_awareness([entry])))
