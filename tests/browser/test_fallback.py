"""The editor page where WebSockets are refused, and offline edits that outlive the tab.

A page loaded through a proxy that answers every ``Upgrade`` request with 403
(tests/tcp_proxy.py, ``refuse_upgrades``) must fall back to collab's HTTP
transport by itself, say so, and co-edit with a page on WebSocket; IndexedDB
keeps what a page typed offline until the page is opened again. Waits are on
conditions in the page, never on time.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from pycrdt import Text

from collab.server import Server
from tests.conftest import eventually
from tests.tcp_proxy import tcp_proxy

from .conftest import Editor, Editors

pytestmark = pytest.mark.browser

SYNCED_HTTP = "connected · synced · http fallback"
SYNCED_WS = "connected · synced"


def http(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


async def session_id(page: Page) -> str | None:
    return await page.evaluate("() => window.collabEditor.provider.http.session?.id ?? null")  # type: ignore[no-any-return]


async def test_a_page_whose_websockets_are_refused_falls_back_to_http_and_co_edits(
    collab_server: Server, editors: Editors, screenshot_dir: Path
) -> None:
    async with tcp_proxy(collab_server.port, refuse_upgrades=True) as proxy:
        behind = await editors.open(f"http://127.0.0.1:{proxy.port}", "memo", name="Behind")
        behind.console.allow_network_errors()
        await expect(behind.status).to_have_text(SYNCED_HTTP)
        assert await behind.status.get_attribute("data-transport") == "http"
        assert proxy.blocked_upgrades >= 1  # it did try WebSocket first
        direct = await editors.open(http(collab_server), "memo", name="Direct")
        await expect(direct.status).to_have_text(SYNCED_WS)
        assert collab_server.connections == 1  # only the direct page holds a WebSocket
        assert collab_server.runtime.fallback.sessions == 1

        # Presence and text both ways.
        await expect(behind.page.locator("#presence .person")).to_have_text(["Direct"])
        await expect(direct.page.locator("#presence .person")).to_have_text(["Behind"])
        await behind.textarea.click()
        await behind.page.keyboard.type("Over HTTP. ")
        await direct.wait_value("Over HTTP. ")
        await direct.textarea.click()
        await direct.page.keyboard.press("ControlOrMeta+End")
        await direct.page.keyboard.type("Over WebSocket.")
        await behind.wait_value("Over HTTP. Over WebSocket.")
        await behind.page.screenshot(path=screenshot_dir / "editor-http-fallback.png")

        # The event stream is cut (an RST, the proxy keeps listening): the page resumes the
        # same session with Last-Event-ID while both keep typing.
        before = await session_id(behind.page)
        streams: list[dict[str, str]] = []  # the headers of each event stream the page opens
        behind.page.on(
            "request",
            lambda r: (
                streams.append(r.headers) if r.method == "GET" and "/_http/" in r.url else None
            ),
        )
        await proxy.reset()
        await behind.page.keyboard.press("ControlOrMeta+Home")
        await behind.page.keyboard.type("[b] ")
        await direct.page.keyboard.type(" [d]")
        expected = "[b] Over HTTP. Over WebSocket. [d]"
        await behind.wait_value(expected, ms=15_000)
        await direct.wait_value(expected)
        await expect(behind.status).to_have_text(SYNCED_HTTP)
        assert await session_id(behind.page) == before  # resumed, not resynced
        assert streams and int(streams[0]["last-event-id"]) > 0
        assert collab_server.runtime.fallback.sessions == 1

        # Every edit once, in both pages and on the server.
        room = collab_server.rooms.get("memo")
        assert room is not None and str(room.doc.get("text", type=Text)) == expected


async def test_a_websocket_that_opens_and_stays_silent_is_given_up_for_http(
    collab_server: Server, editors: Editors
) -> None:
    async with tcp_proxy(collab_server.port, silence_upgrades=True) as proxy:
        page = await editors.open(f"http://127.0.0.1:{proxy.port}", "quiet")
        page.console.allow_network_errors()
        await expect(page.status).to_have_text(SYNCED_HTTP)
        assert proxy.blocked_upgrades >= 1 and collab_server.connections == 0
        await page.textarea.click()
        await page.page.keyboard.type("heard over HTTP")
        witness = await editors.open(http(collab_server), "quiet")
        await witness.wait_value("heard over HTTP")


async def test_the_fallback_page_moves_back_to_websocket_when_the_way_opens(
    collab_server: Server, editors: Editors
) -> None:
    async with tcp_proxy(collab_server.port, refuse_upgrades=True) as proxy:
        page = await editors.open(f"http://127.0.0.1:{proxy.port}", "later")
        page.console.allow_network_errors()
        await expect(page.status).to_have_text(SYNCED_HTTP)
        await page.textarea.click()
        await page.page.keyboard.type("typed on the fallback")
        proxy.refuse_upgrades = False  # the network lets WebSockets through again
        # Retried 5 s after the fallback, then 10 s later, ...
        await expect(page.status).to_have_text(SYNCED_WS, timeout=30_000)
        assert await page.status.get_attribute("data-transport") == "websocket"
        await page.page.keyboard.type(", then on WebSocket")
        witness = await editors.open(http(collab_server), "later")
        await witness.wait_value("typed on the fallback, then on WebSocket")
        await eventually(lambda: collab_server.runtime.fallback.sessions == 0)  # it said goodbye


@pytest.mark.parametrize("refuse_upgrades", [False, True], ids=["websocket", "http-fallback"])
async def test_offline_edits_survive_closing_the_tab(
    collab_server: Server, editors: Editors, refuse_upgrades: bool
) -> None:
    async with tcp_proxy(collab_server.port, refuse_upgrades=refuse_upgrades) as proxy:
        base = f"http://127.0.0.1:{proxy.port}"
        away = await editors.open(base, "diary")
        away.console.allow_network_errors()
        home = await editors.open(http(collab_server), "diary")
        await away.textarea.click()
        await away.page.keyboard.type("Before the trip.")
        await home.wait_value("Before the trip.")

        await proxy.cut()  # the page's network is gone
        await expect(away.status).to_have_text(re.compile(r"^offline"))
        await away.page.keyboard.type(" Written offline.")
        # Kept in IndexedDB as typed; then the tab is closed, still offline.
        await away.page.wait_for_function(
            "async () => (await window.collabEditor.storedText()) === "
            "'Before the trip. Written offline.'"
        )
        await away.page.close()
        assert await home.value() == "Before the trip."

        await proxy.restore()
        reopened = await reopen(away, f"{base}/d/diary")
        await reopened.wait_synced()
        await home.wait_value("Before the trip. Written offline.")
        await reopened.wait_value("Before the trip. Written offline.")
        expected_status = SYNCED_HTTP if refuse_upgrades else SYNCED_WS
        await expect(reopened.status).to_have_text(expected_status)


async def reopen(editor: Editor, url: str) -> Editor:
    """A new tab in the same browser context (the same IndexedDB) on ``url``."""
    page = await editor.context.new_page()
    console = editor.console
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
    await page.goto(url)
    return Editor(editor.context, page, console)


async def test_room_events_ride_the_http_fallback_both_ways(
    collab_server: Server, editors: Editors
) -> None:
    async with tcp_proxy(collab_server.port, refuse_upgrades=True) as proxy:
        behind = await editors.open(f"http://127.0.0.1:{proxy.port}", "chatty", name="Behind")
        behind.console.allow_network_errors()
        await expect(behind.status).to_have_text(SYNCED_HTTP)
        direct = await editors.open(http(collab_server), "chatty", name="Direct")
        await expect(direct.status).to_have_text(SYNCED_WS)
        await behind.page.wait_for_function("window.collabEditor.events.id() !== null")
        await behind.textarea.click()
        await behind.page.keyboard.type("hi")
        await expect(direct.page.locator("#typing")).to_have_text("Behind is typing…")
        await direct.textarea.click()
        await direct.page.keyboard.type("yo")
        await expect(behind.page.locator("#typing")).to_have_text("Direct is typing…")
        assert direct.console.unexpected() == []
