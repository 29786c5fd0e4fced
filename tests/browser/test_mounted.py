"""collab's pages in Chromium when its ASGI app is mounted below a prefix of a FastAPI app.

docs/asgi.md mounts collab at ``/collab``: the pages must load their bundle, open their
WebSocket, read the HTTP API and link each other below it. What the page typed is
read back by a client that never saw the page, through the same prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, expect
from pycrdt import Text

from collab.asgi import create_app
from collab.client import connect
from collab.config import Config
from tests.servers import running

from .conftest import Console

pytestmark = pytest.mark.browser

DOC = "team-a/notes"


@contextlib.asynccontextmanager
async def host_app_with_collab_at(prefix: str, db_url: str) -> AsyncIterator[int]:
    """A FastAPI app with collab mounted at ``prefix``, under uvicorn; yields its port."""
    collab_app = create_app(Config(db_url=db_url, ping_interval=None, version_max_updates=1))
    app = FastAPI(lifespan=collab_app.lifespan)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.mount(prefix, collab_app)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, ws="websockets-sansio", lifespan="on")
    async with running(config) as server:
        yield server.servers[0].sockets[0].getsockname()[1]


async def test_the_pages_work_below_a_mount_prefix(
    browser: Browser, db_url: str, screenshot_dir: Path
) -> None:
    async with host_app_with_collab_at("/collab", db_url) as port:
        root = f"http://127.0.0.1:{port}"
        context = await browser.new_context(viewport={"width": 1200, "height": 800})
        page = await context.new_page()
        console = Console()
        page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))

        await page.goto(f"{root}/collab/d/{DOC}")
        await expect(page.locator("#status")).to_have_text("connected · synced")
        assert sockets == [f"ws://127.0.0.1:{port}/collab/{DOC}?events=1"]
        await page.locator("#editor").click()
        await page.keyboard.type("typed below /collab")

        # Read back from outside the page, through the same prefix.
        async with connect(f"ws://127.0.0.1:{port}/collab/{DOC}") as reader:
            await reader.wait_synced()
            text = reader.doc.get("text", type=Text)
            async with asyncio.timeout(10):
                while str(text) != "typed below /collab":
                    await asyncio.sleep(0.05)
        await page.screenshot(path=screenshot_dir / "mounted-editor.png")

        # The editor links its history below the prefix, which reads the API there.
        await page.locator("nav.links a").click()
        await page.wait_for_url(f"{root}/collab/history/{DOC}")
        await expect(page.locator("#versions li[data-version]").first).to_be_visible()

        # The start page lists the document and links its editor below the prefix.
        await page.goto(f"{root}/collab/")
        link = page.locator("#doc-list a.doc-name")
        await expect(link).to_have_text([DOC])
        assert await link.get_attribute("href") == f"/collab/d/{DOC}"
        assert console.errors == []
        await context.close()
