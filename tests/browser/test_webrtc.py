"""Two Chromium pages co-edit over WebRTC (stock npm y-webrtc), with collab as their only
signaling server.

Chromium gathers no loopback ICE candidates, so WebRTC between two pages would
use this machine's own network address. Instead everything runs inside a
network namespace the test makes (tests/netns.py): the collab server (``python
-m collab serve``), a static server for the page, and Chromium itself (through a
wrapper that starts /usr/bin/chromium with ``ip netns exec``). The namespace's
only interfaces are ``lo`` and a veth pair whose two ends are both inside it, so
no packet leaves it; it is deleted afterwards.

The pages have no WebSocket provider and ``iceServers: []``: the text can only
travel over a WebRTC data channel, and the peers can only have met through
collab's ``/signal``. The two pages live in separate browser contexts, so
y-webrtc's BroadcastChannel between tabs cannot carry anything either.
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
from pathlib import Path

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
    for package in ("y-webrtc", "yjs", "esbuild"):
        if not (WEBRTC / "node_modules" / package / "package.json").exists():
            missing(f"npm package {package!r} (run `npm ci` in {WEBRTC})")
    subprocess.run([str(node), "build.mjs", str(site)], cwd=WEBRTC, check=True, timeout=120)


def chromium_in(ns: str, tmp_path: Path, chromium: Path) -> Path:
    """A wrapper that Playwright starts as "the browser": Chromium inside ``ns``."""
    wrapper = tmp_path / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {chromium} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


async def open_peer(browser: Browser, url: str, consoles: list[Console]) -> Page:
    context = await browser.new_context()  # no shared storage, no BroadcastChannel
    page = await context.new_page()
    console = Console()
    consoles.append(console)
    page.on("console", lambda m: _log_error(console, m))
    page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
    await page.goto(url)
    await page.wait_for_function("() => window.webrtc !== undefined", timeout=WAIT_MS)
    return page


async def text_of(page: Page) -> str:
    return str(await page.evaluate("() => webrtc.text()"))


async def test_two_chromium_pages_coedit_over_webrtc_with_collab_as_the_only_signaling(
    chromium: Path, tmp_path: Path
) -> None:
    reason = netns_unavailable()
    if reason is not None:
        missing(reason)
    site = tmp_path / "site"
    build_page(site)
    with network_namespace() as ns:
        env_python = [sys.executable, "-u"]
        collab = exec_in(
            ns,
            *env_python,
            "-m",
            "collab",
            "serve",
            "--host",
            HOST_A,
            "--port",
            str(COLLAB_PORT),
            "--db",
            f"sqlite:///{tmp_path / 'collab.db'}",
        )
        pages_server = exec_in(
            ns,
            *env_python,
            "-m",
            "http.server",
            "--bind",
            HOST_A,
            "--directory",
            str(site),
            str(PAGE_PORT),
        )
        async with (
            started(collab, tmp_path / "collab.log", "collab serving on"),
            started(pages_server, tmp_path / "pages.log", "Serving HTTP on"),
            async_playwright() as playwright,
        ):
            browser = await playwright.chromium.launch(
                executable_path=str(chromium_in(ns, tmp_path, chromium)),
                args=CHROMIUM_ARGS,
                headless=True,
            )
            consoles: list[Console] = []
            try:
                signal_url = f"ws://{HOST_A}:{COLLAB_PORT}/signal"
                url = f"http://{HOST_A}:{PAGE_PORT}/?room=p2p/notes&signal={signal_url}"
                a = await open_peer(browser, url, consoles)
                b = await open_peer(browser, url, consoles)
                for page in (a, b):
                    await page.wait_for_function(
                        "() => webrtc.signalingConnected() && webrtc.webrtcPeers() === 1",
                        timeout=WAIT_MS,
                    )
                    assert await page.evaluate("() => webrtc.broadcastPeers()") == 0

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
                    await page.wait_for_function(
                        "() => webrtc.text().length === 17", timeout=WAIT_MS
                    )
                merged = await text_of(a)
                assert merged == await text_of(b)
                assert merged == "cbahello worldxyz"
                assert [c.unexpected() for c in consoles] == [[], []], "console errors"
            finally:
                await browser.close()
    log = (tmp_path / "collab.log").read_text()
    assert "closing signaling peer" not in log, log  # y-webrtc stayed within every bound
