"""Two Chromium pages co-edit over WebRTC (stock npm y-webrtc), with collab as their only
signaling server.

Chromium gathers no loopback ICE candidates, so WebRTC between two pages would
use this machine's own network address. Instead everything runs inside a
network namespace the test makes (tests/netns.py): the collab server (``python
-m collab serve``), a static server for the page, and Chromium itself (through a
wrapper that starts /usr/bin/chromium with ``ip netns exec``). The namespace's
only interfaces are ``lo`` and a veth pair whose two ends are both inside it, so
no packet leaves it; it is deleted afterwards.

In the first test the pages have no WebSocket provider and ``iceServers: []``:
the text can only travel over a WebRTC data channel, and the peers can only
have met through collab's ``/signal``. The pages live in separate browser
contexts, so y-webrtc's BroadcastChannel between tabs cannot carry anything
either. The second test puts collab's WebSocket provider beside y-webrtc on the
same Y.Doc (docs/webrtc.md) and shows the peer-to-peer document stored, with
history.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.browser.conftest import CHROMIUM_ARGS, Console, _log_error
from tests.conftest import missing
from tests.netns import HOST_A, exec_in, netns_unavailable, network_namespace

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
WEBRTC = Path(__file__).resolve().parent / "webrtc"
COLLAB_PORT = 8000  # the namespace is new: every port in it is free
PAGE_PORT = 8080
WAIT_MS = 30_000


@contextlib.asynccontextmanager
async def started(argv: list[str], log: Path, ready: str) -> AsyncIterator[None]:
    """Run ``argv`` until the block ends; enter once ``ready`` appears in its output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        async with asyncio.timeout(30):
            while ready not in (output := await asyncio.to_thread(log.read_text)):
                if proc.returncode is not None:
                    raise RuntimeError(f"{argv[4:]} exited: {output}")
                await asyncio.sleep(0.02)
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def build_page(site: Path) -> None:
    node = shutil.which("node")
    if node is None:
        missing("node")
    for package in ("y-webrtc", "y-websocket", "yjs", "esbuild"):
        if not (WEBRTC / "node_modules" / package / "package.json").exists():
            missing(f"npm package {package!r} (run `npm ci` in {WEBRTC})")
    subprocess.run([str(node), "build.mjs", str(site)], cwd=WEBRTC, check=True, timeout=120)


def chromium_in(ns: str, tmp_path: Path, chromium: Path) -> Path:
    """A wrapper that Playwright starts as "the browser": Chromium inside ``ns``."""
    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {chromium} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@dataclass
class Lab:
    """Chromium, collab and the page server, all inside one network namespace."""

    browser: Browser
    consoles: list[Console] = field(default_factory=list)
    collab_url: str = f"ws://{HOST_A}:{COLLAB_PORT}"
    page_url: str = f"http://{HOST_A}:{PAGE_PORT}/"

    async def open(self, room: str, with_collab: bool = False) -> Page:
        """A y-webrtc page on ``room`` in a browser context of its own (no shared storage,
        no BroadcastChannel), optionally with collab's WebSocket provider beside it."""
        query = {"room": room, "signal": f"{self.collab_url}/signal"}
        if with_collab:
            query["collab"] = self.collab_url
        context = await self.browser.new_context()
        page = await context.new_page()
        console = Console()
        self.consoles.append(console)
        page.on("console", lambda m: _log_error(console, m))
        page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
        await page.goto(self.page_url + "?" + urlencode(query))
        await page.wait_for_function("() => window.webrtc !== undefined", timeout=WAIT_MS)
        return page

    async def api(self, path: str) -> Any:
        """GET collab's HTTP API from inside the namespace (through a page of its own)."""
        context = await self.browser.new_context()
        try:
            page = await context.new_page()
            response = await page.goto(f"http://{HOST_A}:{COLLAB_PORT}{path}")
            assert response is not None and response.ok, path
            return await response.json()
        finally:
            await context.close()


@pytest.fixture
async def lab(chromium: Path, tmp_path: Path) -> AsyncIterator[Lab]:
    reason = netns_unavailable()
    if reason is not None:
        missing(reason)
    site = tmp_path / "site"
    build_page(site)
    python = [sys.executable, "-u"]
    collab_log = tmp_path / "collab.log"
    with network_namespace() as ns:
        collab = [
            *python,
            *("-m", "collab", "serve", "--host", HOST_A, "--port", str(COLLAB_PORT)),
            *("--db", f"sqlite:///{tmp_path / 'collab.db'}"),
        ]
        pages = [*python, "-m", "http.server", "--bind", HOST_A, "--directory", str(site)]
        async with (
            started(exec_in(ns, *collab), collab_log, "collab serving on"),
            started(exec_in(ns, *pages, str(PAGE_PORT)), tmp_path / "pages.log", "Serving HTTP"),
            async_playwright() as playwright,
        ):
            browser = await playwright.chromium.launch(
                executable_path=str(chromium_in(ns, tmp_path, chromium)),
                args=CHROMIUM_ARGS,
                headless=True,
            )
            running = Lab(browser)
            try:
                yield running
                assert [c.unexpected() for c in running.consoles] == [[]] * len(running.consoles), (
                    "console errors"
                )
            finally:
                await browser.close()
    log = collab_log.read_text()
    assert "closing signaling peer" not in log, log  # y-webrtc stayed within every bound


async def connected(*pages: Page) -> None:
    """Each page has its signaling connection and one WebRTC peer (not a tab channel)."""
    for page in pages:
        await page.wait_for_function(
            "() => webrtc.signalingConnected() && webrtc.webrtcPeers() === 1", timeout=WAIT_MS
        )
        assert await page.evaluate("() => webrtc.broadcastPeers()") == 0


async def text_of(page: Page) -> str:
    return str(await page.evaluate("() => webrtc.text()"))


async def test_two_chromium_pages_coedit_over_webrtc_with_collab_as_the_only_signaling(
    lab: Lab,
) -> None:
    a = await lab.open("p2p/notes")
    b = await lab.open("p2p/notes")
    await connected(a, b)
    await a.evaluate("() => webrtc.append('hello')")
    await b.wait_for_function("() => webrtc.text() === 'hello'", timeout=WAIT_MS)
    await b.evaluate("() => webrtc.append(' world')")
    await a.wait_for_function("() => webrtc.text() === 'hello world'", timeout=WAIT_MS)
    # Concurrent edits from both sides converge, each applied once.
    await asyncio.gather(
        a.evaluate("() => { for (const c of 'abc') webrtc.insert(0, c) }"),
        b.evaluate("() => { for (const c of 'xyz') webrtc.append(c) }"),
    )
    for page in (a, b):
        await page.wait_for_function("() => webrtc.text().length === 17", timeout=WAIT_MS)
    merged = await text_of(a)
    assert merged == await text_of(b)
    assert merged == "cbahello worldxyz"
    # Nothing went through collab but signaling: it never heard of the document.
    assert "p2p/notes" not in [d["name"] for d in (await lab.api("/api/docs"))["docs"]]


async def test_beside_collabs_websocket_provider_a_p2p_document_is_stored_with_history(
    lab: Lab,
) -> None:
    a = await lab.open("p2p/stored", with_collab=True)
    b = await lab.open("p2p/stored", with_collab=True)
    await connected(a, b)
    for page in (a, b):
        await page.wait_for_function("() => webrtc.serverSynced()", timeout=WAIT_MS)
    await a.evaluate("() => webrtc.append('peer to peer, ')")
    await b.wait_for_function("() => webrtc.text() === 'peer to peer, '", timeout=WAIT_MS)
    await b.evaluate("() => webrtc.append('and stored')")
    await a.wait_for_function("() => webrtc.text() === 'peer to peer, and stored'", timeout=WAIT_MS)
    async with asyncio.timeout(WAIT_MS / 1000):  # durable within a commit or two
        while (stored := await lab.api("/api/docs/p2p/stored/text"))[
            "text"
        ] != "peer to peer, and stored":
            await asyncio.sleep(0.05)
    assert stored["version"] is not None
    versions = (await lab.api("/api/docs/p2p/stored/versions"))["versions"]
    assert len(versions) >= 1
