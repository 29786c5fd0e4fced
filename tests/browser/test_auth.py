"""The pages with tokens in real headless Chromium: ?token= travels to the WebSocket, the
HTTP fallback and the API; a read token shows the text read-only; a permanent close code
stops the retrying and the status line says why."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import expect
from pycrdt import Text

from collab.client import connect
from collab.config import Config
from collab.policy.tokens import mint
from collab.server import Server, serve

from .conftest import Editors

pytestmark = pytest.mark.browser

SECRET = "browser-secret-0123456789abcdef0123456789abcdef"


def token(doc: str, mode: str, ttl: float = 3600, user: str | None = None) -> str:
    return mint(SECRET, doc, mode, now=time.time(), ttl=ttl, user=user)


@pytest.fixture
async def secured(db_url: str) -> AsyncIterator[Server]:
    config = Config(port=0, db_url=db_url, ping_interval=None, auth_secret=SECRET)
    async with serve(config) as server:
        yield server


def http(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


async def test_a_read_token_shows_the_text_read_only_and_writes_nothing(
    secured: Server, editors: Editors, screenshot_dir: Path
) -> None:
    writer = await editors.open(http(secured), f"notes?token={token('notes', 'write', user='wri')}")
    await writer.textarea.click()
    await writer.page.keyboard.type("Written with a write token")
    reader = await editors.open(http(secured), f"notes?token={token('notes', 'read')}")
    await reader.wait_value("Written with a write token")
    await expect(reader.status).to_have_text("connected · synced · read-only")
    assert await reader.textarea.evaluate("t => t.readOnly") is True
    # Typing does nothing; an edit forced into its Y.Doc is refused by the server.
    await reader.textarea.click()
    await reader.page.keyboard.type("typed")
    assert await reader.value() == "Written with a write token"
    await reader.page.evaluate("() => window.collabEditor.text.insert(0, 'FORCED ')")
    await writer.page.keyboard.type(", and more")
    await reader.wait_value("FORCED Written with a write token, and more")
    await writer.wait_value("Written with a write token, and more")
    room = secured.rooms.get("notes")
    assert room is not None and str(room.doc.get("text", type=Text)) == (
        "Written with a write token, and more"
    )
    assert (await reader.page.evaluate("() => window.collabEditor.state().status")) == "connected"
    await reader.page.screenshot(path=screenshot_dir / "editor-read-only.png")


async def test_the_pages_pass_the_token_to_the_api(secured: Server, editors: Editors) -> None:
    base = f"ws://127.0.0.1:{secured.port}"
    for doc in ("team-a/plan", "team-b/secret"):
        async with connect(f"{base}/{doc}", token=token(doc, "write"), saved_acks=True) as c:
            await c.wait_synced()
            c.doc.get("text", type=Text).insert(0, f"text of {doc}")
            await c.wait_saved()
    context = await editors.browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{http(secured)}/?token={token('team-a/*', 'read')}")
        names = page.locator(".doc-name")
        await expect(names).to_have_text(["team-a/plan"])  # the list is filtered by the token
        href = await names.first.get_attribute("href")
        assert href is not None and "token=" in href
        await names.first.click()
        await page.wait_for_function(
            "() => document.getElementById('editor').value === 'text of team-a/plan'"
        )
        await page.locator(".links a").click()  # the history page keeps the token too
        await expect(page.locator("a[href*='/export?']").first).to_have_attribute(
            "href", re.compile(r"[?&]token=")
        )
    finally:
        await context.close()


async def test_a_permanent_close_stops_retrying_and_says_why(
    secured: Server, editors: Editors
) -> None:
    context = await editors.browser.new_context()
    page = await context.new_page()
    try:
        # No token at all: the refused upgrade, then the fallback's probe hears why.
        await page.goto(f"{http(secured)}/d/notes")
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-state", "closed", timeout=20_000)
        await expect(status).to_contain_text("token is required")
        await expect(status).to_contain_text("4401")
        # An expiring token: connected, then closed with 4401, and it stays closed.
        await page.goto(f"{http(secured)}/d/notes?token={token('notes', 'write', ttl=2)}")
        await expect(status).to_have_text("connected · synced")
        await page.evaluate(
            """() => {
              const el = document.getElementById('status')
              window.statusLog = [el.textContent]
              new MutationObserver(() => window.statusLog.push(el.textContent))
                .observe(el, {childList: true, characterData: true, subtree: true})
            }"""
        )
        await expect(status).to_have_text("disconnected · token expired (4401)", timeout=15_000)
        await page.wait_for_timeout(1500)  # a retrying page would be connecting again by now
        # Straight from synced to closed: no reconnecting, offline or fallback in between.
        log = await page.evaluate("() => window.statusLog")
        assert log == ["connected · synced", "disconnected · token expired (4401)"], log
    finally:
        await context.close()
