"""The editor page over https:// and wss:// (collab serve --certfile/--keyfile) in Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, WebSocket, expect
from pycrdt import Text

from collab.client import connect
from collab.config import Config
from collab.server import serve
from tests.tls import make_certificate, trusting

from .conftest import Console, Editor, _log_error

pytestmark = pytest.mark.browser


async def open_editor(browser: Browser, url: str, sockets: list[str]) -> Editor:
    # The certificate is the test's own: this context trusts it (and only this context).
    context = await browser.new_context(ignore_https_errors=True)
    page = await context.new_page()
    console = Console()
    page.on("console", lambda m: _log_error(console, m))
    page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))

    def opened(ws: WebSocket) -> None:
        sockets.append(ws.url)

    page.on("websocket", opened)
    await page.goto(url)
    editor = Editor(context, page, console)
    await editor.wait_synced()
    return editor


async def test_the_editor_works_over_tls(
    browser: Browser, tmp_path: Path, db_url: str, screenshot_dir: Path
) -> None:
    cert, key = make_certificate(tmp_path)
    config = Config(port=0, db_url=db_url, ping_interval=None, certfile=str(cert), keyfile=str(key))
    async with serve(config) as server:
        url = f"https://127.0.0.1:{server.port}/d/notes"
        sockets: list[str] = []
        ada = await open_editor(browser, url, sockets)
        grace = await open_editor(browser, url, sockets)
        try:
            await expect(ada.status).to_have_text("connected · synced")
            await ada.textarea.click()
            await ada.page.keyboard.type("Sent over wss")
            await grace.wait_value("Sent over wss")
            async with connect(
                f"wss://127.0.0.1:{server.port}/notes", ssl=trusting(cert)
            ) as python:
                await python.wait_synced()
                assert str(python.doc.get("text", type=Text)) == "Sent over wss"
            await grace.page.screenshot(path=screenshot_dir / "editor-tls.png")
            assert sockets and all(s.startswith("wss://127.0.0.1:") for s in sockets), sockets
            assert ada.console.unexpected() == [] and grace.console.unexpected() == []
        finally:
            await ada.context.close()
            await grace.context.close()
