"""Real headless Chromium (Debian's package) against a real collab server.

Playwright drives the *system* browser at /usr/bin/chromium (scripts/install-chromium
puts it there); it never downloads its own. Without it these tests skip, except
with CI=true, where they fail. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from collab.config import Config
from collab.server import Server, serve
from tests.interop.node_peer import missing_or_fail

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        missing_or_fail(f"{CHROMIUM} is missing: run scripts/install-chromium (as root)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'collab.db'}"


@pytest.fixture
async def collab_server(db_url: str) -> AsyncIterator[Server]:
    async with serve(Config(port=0, db_url=db_url, ping_interval=None)) as server:
        yield server


@dataclass
class Console:
    """Errors a page logged; a product page logs none."""

    errors: list[str] = field(default_factory=list)
    #: Messages matching one of these are expected (e.g. refused WebSockets while offline).
    allowed: list[Callable[[str], bool]] = field(default_factory=list)

    def allow_network_errors(self) -> None:
        """Expect what Chromium reports while the network is down or refuses WebSockets:
        refused WebSockets, and requests that could not be sent (the HTTP fallback's)."""
        self.allowed.append(lambda m: "WebSocket connection to" in m)
        self.allowed.append(lambda m: "net::ERR_" in m)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(allow(e) for allow in self.allowed)]


@dataclass
class Editor:
    """One browser tab on one document's editor page."""

    context: BrowserContext
    page: Page
    console: Console

    @property
    def textarea(self):  # type: ignore[no-untyped-def]
        return self.page.locator("#editor")

    @property
    def status(self):  # type: ignore[no-untyped-def]
        return self.page.locator("#status")

    async def value(self) -> str:
        return str(await self.textarea.input_value())

    async def selection(self) -> tuple[int, int]:
        start, end = await self.textarea.evaluate("t => [t.selectionStart, t.selectionEnd]")
        return int(start), int(end)

    async def wait_value(self, expected: str, ms: float = 10_000) -> None:
        await self.page.wait_for_function(
            "expected => document.getElementById('editor').value === expected",
            arg=expected,
            timeout=ms,
        )

    async def wait_synced(self, ms: float = 10_000) -> None:
        await self.page.wait_for_function(
            "() => document.getElementById('status').dataset.state === 'synced'",
            timeout=ms,
        )

    async def record_status(self) -> None:
        """Start keeping every status line text in window.statusLog (in order)."""
        await self.page.evaluate(
            """() => {
              const el = document.getElementById('status')
              window.statusLog = [el.textContent]
              new MutationObserver(() => window.statusLog.push(el.textContent))
                .observe(el, {childList: true, characterData: true, subtree: true})
            }"""
        )

    async def status_log(self) -> list[str]:
        return [str(s) for s in await self.page.evaluate("() => window.statusLog")]


class Editors:
    """Opens editor pages in separate browser contexts (no shared storage or tabs)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.opened: list[Editor] = []

    async def open(self, base_url: str, doc: str, name: str | None = None) -> Editor:
        context = await self.browser.new_context(viewport={"width": 1200, "height": 760})
        if name is not None:
            await context.add_init_script(f"localStorage.setItem('collab.name', {name!r})")
        page = await context.new_page()
        console = Console()
        page.on("console", lambda m: _log_error(console, m))
        page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
        await page.goto(f"{base_url}/d/{doc}")
        editor = Editor(context, page, console)
        self.opened.append(editor)
        await editor.wait_synced()
        return editor

    async def close(self) -> None:
        for editor in self.opened:
            with contextlib.suppress(Exception):
                await editor.context.close()


def _log_error(console: Console, message: ConsoleMessage) -> None:
    if message.type == "error":
        console.errors.append(message.text)


@pytest.fixture
async def editors(browser: Browser) -> AsyncIterator[Editors]:
    opened = Editors(browser)
    try:
        yield opened
        for editor in opened.opened:
            assert editor.console.unexpected() == [], "console errors on the page"
    finally:
        await opened.close()


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"
