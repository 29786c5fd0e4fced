"""The editor page in real headless Chromium: co-editing, carets, offline, restarts.

Every page is its own browser context (no shared storage, no cross-tab channel),
so whatever one page learns came through the server. Waits are on conditions
in the page (``wait_for_function``), never on time.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from pycrdt import Text

from collab.client import connect
from collab.config import Config
from collab.server import Server, serve
from tests.interop.node_peer import NodePeer, require_node_deps
from tests.tcp_proxy import tcp_proxy

from .conftest import Editors

pytestmark = pytest.mark.browser


def http(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


async def test_typing_in_one_page_appears_in_the_other(
    collab_server: Server, editors: Editors, screenshot_dir: Path
) -> None:
    ada = await editors.open(http(collab_server), "meeting-notes", name="Ada")
    grace = await editors.open(http(collab_server), "meeting-notes", name="Grace")
    await expect(ada.status).to_have_text("connected · synced")

    await ada.textarea.click()
    await ada.page.keyboard.type("Agenda\n1. Ship the editor\n2. ")
    await grace.wait_value("Agenda\n1. Ship the editor\n2. ")
    await grace.textarea.click()
    await grace.page.keyboard.press("ControlOrMeta+End")
    await grace.page.keyboard.type("Look at the screenshots")
    await ada.wait_value("Agenda\n1. Ship the editor\n2. Look at the screenshots")

    # Presence: each sees the other's chosen name.
    await expect(ada.page.locator("#presence .person")).to_have_text(["Grace"])
    await expect(grace.page.locator("#presence .person")).to_have_text(["Ada"])
    await expect(grace.page.locator("#name")).to_have_value("Grace")
    # Two people in a room get two colours (the younger client moves off a taken one).
    await ada.page.wait_for_function(
        """() => getComputedStyle(document.getElementById('self-dot')).backgroundColor !==
                 getComputedStyle(document.querySelector('#presence .dot')).backgroundColor"""
    )
    await ada.page.screenshot(path=screenshot_dir / "editor.png")


async def test_name_is_remembered_and_shown_to_others(
    collab_server: Server, editors: Editors
) -> None:
    one = await editors.open(http(collab_server), "names")
    two = await editors.open(http(collab_server), "names")
    await one.page.locator("#name").fill("Marie Curie")
    await one.page.locator("#name").press("Enter")
    await expect(two.page.locator("#presence .person")).to_have_text(["Marie Curie"])
    assert await one.page.evaluate("localStorage.getItem('collab.name')") == "Marie Curie"
    await one.page.reload()
    await expect(one.page.locator("#name")).to_have_value("Marie Curie")


async def test_both_type_at_once_in_different_places_and_converge(
    collab_server: Server, editors: Editors
) -> None:
    a = await editors.open(http(collab_server), "race")
    b = await editors.open(http(collab_server), "race")
    await a.textarea.click()
    await a.page.keyboard.type("--middle--")
    await b.wait_value("--middle--")
    await a.page.keyboard.press("ControlOrMeta+Home")
    await b.textarea.click()
    await b.page.keyboard.press("ControlOrMeta+End")

    head = "alpha beta gamma delta "
    tail = " one two three four five"
    await asyncio.gather(
        a.page.keyboard.type(head, delay=15),
        b.page.keyboard.type(tail, delay=15),
    )
    expected = head + "--middle--" + tail
    await a.wait_value(expected)
    await b.wait_value(expected)
    # Neither caret jumped while the other's text landed: each typed run is unbroken,
    # and each caret is still right after its own last character.
    assert await a.selection() == (len(head), len(head))
    assert await b.selection() == (len(expected), len(expected))


async def test_caret_and_selection_stay_put_when_text_lands_before_them(
    collab_server: Server, editors: Editors
) -> None:
    writer = await editors.open(http(collab_server), "caret")
    other = await editors.open(http(collab_server), "caret")
    await writer.textarea.click()
    await writer.page.keyboard.type("The quick brown fox")
    await other.wait_value("The quick brown fox")

    # Caret after "quick"; the other person types at the very start.
    await writer.textarea.evaluate("t => t.setSelectionRange(9, 9)")
    await other.textarea.click()
    await other.page.keyboard.press("ControlOrMeta+Home")
    await other.page.keyboard.type(">> ")
    await writer.wait_value(">> The quick brown fox")
    assert await writer.selection() == (12, 12)
    await writer.page.keyboard.type("est")
    await other.wait_value(">> The quickest brown fox")

    # A selection of "brown" stays on "brown" while text lands before and after it.
    start = (await writer.value()).index("brown")
    await writer.textarea.evaluate(f"t => t.setSelectionRange({start}, {start + 5})")
    await other.page.keyboard.type("Note: ")
    await other.page.keyboard.press("ControlOrMeta+End")
    await other.page.keyboard.type(" jumps")
    await writer.wait_value(">> Note: The quickest brown fox jumps")
    start, end = await writer.selection()
    assert (await writer.value())[start:end] == "brown"


async def test_undo_reverts_only_ones_own_edits(collab_server: Server, editors: Editors) -> None:
    mine = await editors.open(http(collab_server), "undo")
    theirs = await editors.open(http(collab_server), "undo")
    await theirs.textarea.click()
    await theirs.page.keyboard.type("theirs ")
    await mine.wait_value("theirs ")
    await mine.textarea.click()
    await mine.page.keyboard.press("ControlOrMeta+End")
    await mine.page.keyboard.type("mine")
    await theirs.wait_value("theirs mine")
    await mine.page.keyboard.press("ControlOrMeta+z")
    await mine.wait_value("theirs ")
    await theirs.wait_value("theirs ")
    await mine.page.keyboard.press("ControlOrMeta+Shift+z")
    await theirs.wait_value("theirs mine")
    # Undo in the other page removes only what that page typed.
    await theirs.page.keyboard.press("ControlOrMeta+z")
    await mine.wait_value("mine")


async def test_offline_edits_merge_exactly_once_when_the_network_returns(
    collab_server: Server, editors: Editors, screenshot_dir: Path
) -> None:
    async with tcp_proxy(collab_server.port) as proxy:
        away = await editors.open(f"http://127.0.0.1:{proxy.port}", "trip")
        home = await editors.open(http(collab_server), "trip")
        # While the network is down Chromium reports the refused reconnects; that is expected.
        away.console.allow_network_errors()
        await away.record_status()
        await away.textarea.click()
        await away.page.keyboard.type("Shared line.")
        await home.wait_value("Shared line.")
        assert proxy.open_connections > 0

        await proxy.cut()
        await expect(away.status).to_have_text(re.compile(r"^offline"))
        up, down = proxy.bytes_up, proxy.bytes_down

        await away.page.keyboard.press("ControlOrMeta+End")
        await away.page.keyboard.type(" Written on the train.")
        await home.textarea.click()
        await home.page.keyboard.press("ControlOrMeta+Home")
        await home.page.keyboard.type("At home: ")
        await expect(away.status).to_have_text(re.compile(r"^offline · [1-9]\d* unsynced edits?$"))
        await away.page.screenshot(path=screenshot_dir / "editor-offline.png")
        # Nothing crossed: no bytes through the proxy, and each side has only its own edits.
        assert (proxy.bytes_up, proxy.bytes_down) == (up, down)
        assert proxy.open_connections == 0
        assert await home.value() == "At home: Shared line."
        assert await away.value() == "Shared line. Written on the train."

        await proxy.restore()
        expected = "At home: Shared line. Written on the train."
        await away.wait_value(expected, ms=15_000)
        await home.wait_value(expected)
        await expect(away.status).to_have_text("connected · synced")
        log = await away.status_log()
        offline = next(i for i, s in enumerate(log) if s.startswith("offline"))
        assert "connected · synced" in log[offline:], log
        assert proxy.bytes_up > up and proxy.bytes_down > down


async def test_text_survives_a_server_restart_and_reload(
    browser: Browser, db_url: str, editors: Editors
) -> None:
    async with serve(Config(port=0, db_url=db_url, ping_interval=None)) as first:
        port = first.port
        page = await editors.open(http(first), "durable")
        page.console.allow_network_errors()
        await page.textarea.click()
        await page.page.keyboard.type("Still here after a restart. ✓")
        async with connect(f"ws://127.0.0.1:{port}/durable") as witness:
            await witness.wait_synced()
            text = witness.doc.get("text", type=Text)
            await witness.wait_for(lambda: str(text) == "Still here after a restart. ✓")
    # The server is gone (editors closed with 1001, log committed); start a new one
    # on the same port and file, and reload.
    async with serve(Config(port=port, db_url=db_url, ping_interval=None)) as second:
        await page.page.reload()
        await page.wait_synced()
        await expect(page.textarea).to_have_value("Still here after a restart. ✓")
        fresh = await editors.open(http(second), "durable")
        await expect(fresh.textarea).to_have_value("Still here after a restart. ✓")
        # The server stops before the pages close; their reconnect attempts may be logged.
        fresh.console.allow_network_errors()


async def test_stock_node_client_and_the_browser_co_edit(
    collab_server: Server, editors: Editors
) -> None:
    require_node_deps()
    page = await editors.open(http(collab_server), "mixed")
    async with NodePeer(f"ws://127.0.0.1:{collab_server.port}", "mixed") as node:
        await node.wait_synced()
        await node.set_awareness({"user": {"name": "Node bot", "color": "#1b998b"}})
        await expect(page.page.locator("#presence .person")).to_have_text(["Node bot"])
        await node.insert(0, "from node. ")
        await page.wait_value("from node. ")
        await page.textarea.click()
        await page.page.keyboard.press("ControlOrMeta+End")
        await page.page.keyboard.type("from the browser.")
        await node.wait_text("from node. from the browser.")
        await node.insert(0, "[edited] ")
        await page.wait_value("[edited] from node. from the browser.")


async def test_two_pages_and_a_python_client_converge(
    collab_server: Server, editors: Editors
) -> None:
    one = await editors.open(http(collab_server), "trio")
    two = await editors.open(http(collab_server), "trio")
    async with connect(f"ws://127.0.0.1:{collab_server.port}/trio") as bot:
        await bot.wait_synced()
        bot.set_awareness({"user": {"name": "Python bot", "color": "#8e5bd6"}})
        text = bot.doc.get("text", type=Text)
        text.insert(0, "[bot]")
        await one.wait_value("[bot]")
        await one.textarea.click()
        await one.page.keyboard.press("ControlOrMeta+Home")
        await two.textarea.click()
        await two.page.keyboard.press("ControlOrMeta+End")
        await asyncio.gather(
            one.page.keyboard.type("first ", delay=10),
            two.page.keyboard.type(" second", delay=10),
        )
        text.insert(len(text) // 2, "|")
        expected_len = len("[bot]first  second|")
        await bot.wait_for(lambda: len(text) == expected_len)
        final = str(text)
        await one.wait_value(final)
        await two.wait_value(final)
        assert sorted(final) == sorted("[bot]first  second|")
        await expect(one.page.locator("#presence .person")).to_have_count(2)


async def test_who_is_typing_is_shown_through_room_events(
    collab_server: Server, editors: Editors
) -> None:
    ada = await editors.open(http(collab_server), "typing", name="Ada")
    grace = await editors.open(http(collab_server), "typing", name="Grace")
    await ada.wait_synced()
    await grace.wait_synced()
    url = f"ws://127.0.0.1:{collab_server.port}/typing"
    async with connect(url, events=True) as bot:
        await bot.wait_for(lambda: bot.connection_id is not None)
        await expect(grace.page.locator("#typing")).to_have_text("")
        await ada.textarea.click()
        await ada.page.keyboard.type("hi")
        await expect(grace.page.locator("#typing")).to_have_text("Ada is typing…")
        await expect(ada.page.locator("#typing")).to_have_text("")  # not told of oneself
        # The page's events are the same as any client's: stamped by the server.
        async with asyncio.timeout(10):
            event = await anext(bot.events())
        assert event.data == {"typing": True, "name": "Ada"}
        assert event.sender == await ada.page.evaluate("window.collabEditor.events.id()")
        # And a script's "typing" event shows on every page.
        await bot.send_event({"typing": True, "name": "Robot"})
        await expect(ada.page.locator("#typing")).to_have_text("Robot is typing…")
        await expect(grace.page.locator("#typing")).to_have_text(
            re.compile(r"^(Ada and Robot|Robot) (are|is) typing…$")
        )
    # The line clears once nobody has typed for a while (3 s).
    await expect(ada.page.locator("#typing")).to_have_text("", timeout=10_000)
    assert ada.console.unexpected() == [] and grace.console.unexpected() == []
