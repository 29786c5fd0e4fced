"""Send hostile frames (scripts/fuzz/frames.py) to a live collab server and count what happens.

:func:`attack` sends each frame on a WebSocket to one document, then pings: the
pongs prove the server handled the frame and kept the connection; a close instead
is counted under that frame's kind with its close code, and the next frame goes
on a new connection. Nothing here knows the server's insides, so the same code
drives the in-process servers of tests/test_fuzz.py and the server process of
scripts/fuzz/run.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from frames import Frame, frame
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

__all__ = ["Outcome", "attack"]

#: How long one frame may take to be answered (a pong or a close) before it counts as a hang.
ANSWER_TIMEOUT = 10.0


@dataclass
class Outcome:
    """What the frames did: per (kind, close code) counts; code 0 means "still open"."""

    sent: int = 0
    by_kind: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: Frames with no answer within ANSWER_TIMEOUT, and handshakes the server refused.
    hangs: int = 0
    refused: int = 0

    @property
    def closes(self) -> Counter[int]:
        """Connections closed, by close code."""
        out: Counter[int] = Counter()
        for (_, code), count in self.by_kind.items():
            if code:
                out[code] += count
        return out

    def merge(self, other: Outcome) -> None:
        self.sent += other.sent
        self.by_kind.update(other.by_kind)
        self.hangs += other.hangs
        self.refused += other.refused


async def _open(url: str) -> ClientConnection:
    return await connect(
        url, max_size=None, compression=None, ping_interval=None, open_timeout=ANSWER_TIMEOUT
    )


async def _drain(ws: ClientConnection) -> None:
    try:
        async for _ in ws:
            pass
    except ConnectionClosed:
        pass


async def attack(
    url: str,
    rng: random.Random,
    count: int,
    *,
    max_size: int | None = None,
    deadline: float | None = None,
) -> Outcome:
    """Send ``count`` frames from ``rng`` to ``url`` (``ws://host:port/doc``), one at a time;
    stop early at ``deadline`` (``time.monotonic()``), if given."""
    outcome = Outcome()
    ws: ClientConnection | None = None
    reader: asyncio.Task[None] | None = None
    try:
        for _ in range(count):
            if deadline is not None and time.monotonic() >= deadline:
                break
            hostile: Frame = frame(rng, max_size)
            if ws is None:
                try:
                    ws = await _open(url)
                except (InvalidHandshake, OSError, TimeoutError):
                    outcome.refused += 1
                    await asyncio.sleep(0.05)
                    continue
                reader = asyncio.create_task(_drain(ws))
            outcome.sent += 1
            code = 0
            try:
                await ws.send(hostile.data)
                # Two round trips: a server parses the ping that follows the frame in the
                # same read, and may answer it before it has handled the frame; the second
                # ping leaves after the first pong, so the frame was handled by then.
                for _ in range(2):
                    pong = await ws.ping()
                    async with asyncio.timeout(ANSWER_TIMEOUT):
                        await pong
            except ConnectionClosed:
                code = ws.close_code or 1006
            except TimeoutError:
                outcome.hangs += 1
                code = -1
            outcome.by_kind[(hostile.kind, code)] += 1
            if code:
                await ws.close()
                if reader is not None:
                    await reader
                ws = reader = None
    finally:
        if ws is not None:
            await ws.close()
        if reader is not None:
            await reader
    return outcome
