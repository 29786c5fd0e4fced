"""Opening and closing the runtime: background tasks end before the store closes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from collab.config import Config
from collab.runtime import open_runtime


async def test_shutdown_never_hangs_on_a_task_cancelled_inside_a_query(tmp_path: Path) -> None:
    # The deletion watcher polls the store all the time here, so shutdown nearly always
    # cancels it inside a query; the runtime must let the driver clean up before the
    # engine is disposed, or the event loop's final cancellation waits forever.
    config = Config(db_url=f"sqlite:///{tmp_path / 'collab.db'}", deletion_poll_interval=0.0005)
    for _ in range(30):
        async with asyncio.timeout(20):
            async with open_runtime(config) as runtime:
                await asyncio.sleep(0.005)
                assert runtime.tasks
        # Nothing the runtime started is left behind, running or stuck in cleanup.
        left = [
            task
            for task in asyncio.all_tasks()
            if task is not asyncio.current_task() and not task.done()
        ]
        assert left == [], left
