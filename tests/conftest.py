"""Fixtures shared by the whole suite: real servers on 127.0.0.1, real services.

Services we can run are never mocked. When PostgreSQL, Redis, Node.js or
Chromium is missing, tests that need it are skipped with the reason, except in
CI (``CI=true``), where a missing service is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import settings

from collab.config import Config
from tests import servers
from tests.servers import RunningServer

pytest_plugins = ["tests.store_fixtures"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# No wall-clock deadline per example: this machine is shared, and a slow moment is not a
# failure (Hypothesis's 200 ms default made property tests flaky under load).
settings.register_profile("collab", deadline=None)
settings.load_profile("collab")


def missing(what: str) -> None:
    """Skip (locally) or fail (in CI) because ``what`` is not available."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true)")
    pytest.skip(f"{what} is not available here")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A server config on a random port with a fresh SQLite file."""
    return Config(
        port=0,
        db_url=f"sqlite:///{tmp_path / 'collab.db'}",
        ping_interval=None,
        unload_grace_seconds=0.2,
    )


ServeKind = Callable[..., contextlib.AbstractAsyncContextManager[RunningServer]]


@pytest.fixture(params=servers.KINDS)
def serve_kind(request: pytest.FixtureRequest) -> ServeKind:
    """Starts a server of each kind in turn: ``collab serve``'s and the ASGI app under uvicorn."""
    kind: str = request.param
    return functools.partial(servers.serve, kind)


@pytest.fixture
async def server(config: Config, serve_kind: ServeKind) -> AsyncIterator[RunningServer]:
    async with serve_kind(config) as running:
        yield running


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds, re-checking every few milliseconds.

    For server-side state that has no event to wait on; fails after ``timeout``.
    """
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def doc_url(server: RunningServer, name: str) -> str:
    return f"ws://127.0.0.1:{server.port}/{name}"
