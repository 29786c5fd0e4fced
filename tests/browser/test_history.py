"""The start page and the history viewer in real Chromium (they read the HTTP API)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from pycrdt import Text

from collab.client import connect
from collab.config import Config
from collab.server import Server, serve
from tests.interop.node_peer import missing_or_fail

from .conftest import Console, Editors

pytestmark = pytest.mark.browser

FIRST = "Minutes\nAttendees: Ada, Grace\n"
SECOND = "Minutes\nAttendees: Ada, Grace, Linus\nDecision: ship on Friday\n"


@pytest.fixture
async def history_server(db_url: str) -> AsyncIterator[Server]:
    # Every update is its own version, so two saved edits make two versions.
    config = Config(port=0, db_url=db_url, ping_interval=None, version_max_updates=1)
    async with serve(config) as server:
        if not await asyncio.to_thread(_serves_history_api, server.port):
            missing_or_fail("the history HTTP API (/api/docs) is not served here")
        yield server


def _serves_history_api(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/docs", timeout=5) as r:
            json.load(r)
    except (urllib.error.HTTPError, ValueError):
        return False
    return True


async def _write_two_versions(server: Server, doc: str) -> None:
    async with connect(f"ws://127.0.0.1:{server.port}/{doc}", saved_acks=True) as client:
        await client.wait_synced()
        text = client.doc.get("text", type=Text)
        text.insert(0, FIRST)
        await client.wait_saved()
        with client.doc.transaction():
            at = FIRST.index("\n", len("Minutes\n"))
            text.insert(at, ", Linus")
            text.insert(len(text), "Decision: ship on Friday\n")
        await client.wait_saved()
        assert str(text) == SECOND


async def _open(browser: Browser, url: str) -> tuple[Page, Console]:
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    page = await context.new_page()
    console = Console()
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
    await page.goto(url)
    return page, console


async def test_history_page_shows_versions_a_diff_and_downloads_exports(
    history_server: Server, browser: Browser, screenshot_dir: Path
) -> None:
    await _write_two_versions(history_server, "minutes")
    page, console = await _open(browser, f"http://127.0.0.1:{history_server.port}/history/minutes")

    versions = page.locator("#versions li[data-version]")
    await expect(versions.first).to_be_visible()
    assert await versions.count() >= 2
    # The version that holds only the first edit (whatever the server cut around it).
    text = page.locator("#version-text")
    for index in range(await versions.count()):
        await versions.nth(index).click()
        await expect(versions.nth(index)).to_have_attribute("aria-selected", "true")
        await expect(text).not_to_have_text("Loading…")
        if await text.text_content() == FIRST:
            break
    await expect(text).to_have_text(FIRST)
    diff = page.locator("#version-diff")
    await expect(diff.locator(".add")).to_contain_text(["+ Attendees: Ada, Grace, Linus"])
    await expect(diff.locator(".del")).to_contain_text(["- Attendees: Ada, Grace"])
    await expect(diff.locator(".add").last).to_have_text("+ Decision: ship on Friday")
    await page.screenshot(path=screenshot_dir / "history.png", full_page=True)

    async with page.expect_download() as info:
        await page.locator('#downloads a[data-format="txt"]').click()
    download = await info.value
    saved = await download.path()
    assert await asyncio.to_thread(saved.read_text, "utf-8") == FIRST
    assert console.errors == []
    await page.context.close()


async def test_home_page_lists_documents_and_creates_one(
    history_server: Server, browser: Browser, editors: Editors, screenshot_dir: Path
) -> None:
    await _write_two_versions(history_server, "minutes")
    base = f"http://127.0.0.1:{history_server.port}"
    page, console = await _open(browser, base + "/")
    await expect(page.locator("#doc-list a.doc-name")).to_contain_text(["minutes"])
    await page.screenshot(path=screenshot_dir / "home.png", full_page=True)

    await page.locator("#new-name").fill("bad name!")
    await page.locator("#new-doc button").click()
    await expect(page.locator("#new-hint")).to_have_attribute("data-error", "true")
    await page.locator("#new-name").fill("brand-new")
    await page.locator("#new-doc button").click()
    await page.wait_for_url(base + "/d/brand-new")
    await expect(page.locator("#status")).to_have_text("connected · synced")
    assert console.errors == []
    await page.context.close()


async def test_a_name_with_a_slash_and_colons_has_an_editor_and_a_history_page(
    history_server: Server, editors: Editors
) -> None:
    name = "team-a/json:notebook:1234"
    base = f"http://127.0.0.1:{history_server.port}"
    ws = f"ws://127.0.0.1:{history_server.port}"
    page = (await editors.open(base, name)).page
    await page.locator("#editor").click()
    await page.keyboard.type("typed in the page")
    async with (
        connect(f"{ws}/{name}", saved_acks=True) as same,
        connect(f"{ws}/team-b/json:notebook:1234") as other,
    ):
        text = same.doc.get("text", type=Text)
        await same.wait_for(lambda: str(text) == "typed in the page")
        text.insert(len(text), ", and from python")
        await same.wait_saved()
        await page.wait_for_function(
            "() => document.getElementById('editor').value.endsWith(', and from python')"
        )
        await other.wait_synced()
        assert str(other.doc.get("text", type=Text)) == ""

    await page.locator("nav.links a").click()  # "History"
    await page.wait_for_url(base + "/history/team-a/json:notebook:1234")
    await expect(page.locator("h1.doc-title")).to_have_text(name)
    latest = page.locator("#versions li[data-version]").first
    await latest.click()
    await expect(page.locator("#version-text")).to_have_text("typed in the page, and from python")
    async with page.expect_download() as info:
        await page.locator('#downloads a[data-format="txt"]').click()
    download = await info.value
    version = await latest.get_attribute("data-version")
    # The server's file name: '/' and ':' written as escapes, never lost or turned into '_'.
    assert download.suggested_filename == f"team-a%2Fjson%3Anotebook%3A1234@{version}.txt"
    saved = await download.path()
    text_now = await asyncio.to_thread(saved.read_text, "utf-8")
    assert text_now == "typed in the page, and from python"
