"""The history page in Chromium: a ProseMirror document's versions read as text, and
"Restore this version" (after a confirmation) brings an old version back for a live editor."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Dialog

from collab import client
from collab.config import Config
from collab.server import serve
from tests.interop.test_bindings import PROSEMIRROR_TEXT
from tests.interop.test_bindings import cases as cases  # the fixture, for this test too

pytestmark = pytest.mark.browser


async def test_history_page_shows_a_prosemirror_document_and_restores_it(
    browser: Browser, db_url: str, cases: dict[str, Any], screenshot_dir: Path
) -> None:
    config = Config(port=0, db_url=db_url, ping_interval=None, version_max_updates=1)
    async with serve(config) as server:
        url = f"http://127.0.0.1:{server.port}"
        for update in cases["prosemirror"]["updates"]:
            await client.edit(url, "pm", update=base64.b64decode(update), author="writer")
        context = await browser.new_context(viewport={"width": 1200, "height": 900})
        await context.add_init_script("localStorage.setItem('collab.name', 'Ada')")
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{url}/history/pm")
        text = page.locator("#version-text")
        # The page opens on the previous version (1); the latest one is the whole document.
        await page.wait_for_function(
            "() => document.getElementById('version-text').textContent.startsWith('Notes')"
        )
        assert await text.text_content() == "Notes\n\nHello world\n"
        await page.locator('#versions li[data-version="2"]').click()
        await page.wait_for_function(
            "() => document.getElementById('version-text').textContent.includes('Lists')"
        )
        assert await text.text_content() == PROSEMIRROR_TEXT
        assert await page.locator("#restore").is_hidden()  # the latest is what it is now

        await page.locator('#versions li[data-version="1"]').click()
        asked: list[str] = []

        async def accept(dialog: Dialog) -> None:
            asked.append(dialog.message)
            await dialog.accept()

        page.on("dialog", accept)
        await page.locator("#restore").click()
        restored = page.locator("#versions li", has_text="restored version 1")
        await restored.wait_for()
        assert asked and asked[0].startswith("Restore version 1?")
        await page.screenshot(path=str(screenshot_dir / "history-restore.png"))
        meta = await restored.locator(".meta").text_content()
        assert meta is not None and "by Ada" in meta
        now, _ = await client_text(server, "pm")
        assert now == "Notes\n\nHello world\n"
        assert errors == []
        await context.close()


async def client_text(server: Any, doc: str) -> tuple[str, Any]:
    from collab.history import versions as history

    return await history.text_at(server.store, server.config, doc)
