"""Convergence: random concurrent edits by several clients end in one text."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Text

from collab.client import Client, connect
from collab.config import Config
from collab.server import serve
from tests.conftest import eventually

CLIENTS = 3
alphabet = st.sampled_from([*"abcxyz \n", "\u00e9", "日本", "👍", "e\u0301"])
operations = st.lists(
    st.tuples(
        st.integers(0, CLIENTS - 1),  # which client
        st.booleans(),  # insert (True) or delete
        st.floats(0, 1),  # where, as a fraction of the client's current text
        st.lists(alphabet, min_size=1, max_size=3).map("".join),
        st.integers(0, 3),  # how many event-loop turns to let pass afterwards
    ),
    min_size=1,
    max_size=40,
)


def text(client: Client) -> Text:
    value: Text = client.doc.get("text", type=Text)
    return value


async def scenario(ops: list[tuple[int, bool, float, str, int]], db: Path) -> None:
    config = Config(port=0, db_url=f"sqlite:///{db}", ping_interval=None)
    async with serve(config) as server:
        url = f"ws://127.0.0.1:{server.port}/converge"
        clients = [connect(url) for _ in range(CLIENTS)]
        editors = [await c.__aenter__() for c in clients]
        try:
            await asyncio.gather(*(e.wait_synced() for e in editors))
            for who, insert, where, content, turns in ops:
                t = text(editors[who])
                current = str(t)
                index = int(where * len(current))
                # pycrdt's Text counts UTF-8 bytes: convert character offsets.
                offset = len(current[:index].encode())
                if insert:
                    t.insert(offset, content)
                elif current:
                    index = min(index, len(current) - 1)
                    end = len(current[: index + len(content)].encode())
                    del t[len(current[:index].encode()) : end]
                for _ in range(turns):
                    await asyncio.sleep(0)
            first = editors[0]
            await eventually(
                lambda: (
                    len({str(text(e)) for e in editors}) == 1
                    and str(server.rooms.get("converge").doc.get("text", type=Text))  # type: ignore[union-attr]
                    == str(text(first))
                ),
                timeout=10,
            )
            async with connect(url) as late:
                await late.wait_synced()
                assert str(text(late)) == str(text(first))
        finally:
            for c in clients:
                await c.__aexit__(None, None, None)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_random_concurrent_edits_converge(ops: list[tuple[int, bool, float, str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(ops, Path(tmp) / "c.db"))
