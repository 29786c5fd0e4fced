"""Webhooks against a receiver the test runs (a real HTTP server on 127.0.0.1):
signed, debounced, retried, bounded, and never in the way of editing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any

import pytest
from pycrdt import Text

from collab.client import Client, connect
from collab.config import Config
from collab.core.observer import Committed
from collab.integrations.webhooks import Webhooks
from tests.conftest import ServeKind, doc_url
from tests.webhook_receiver import receiver

SECRET = "s3cret"


def hooks(config: Config, url: str, **changes: Any) -> Config:
    settings: dict[str, Any] = {
        "webhook_url": (url,),
        "webhook_secret": SECRET,
        "webhook_debounce_seconds": 0.2,
        "webhook_max_wait_seconds": 60.0,
        "webhook_retry_delay": 0.05,
        "commit_interval": 0.01,
    }
    return config.replace(**(settings | changes))


async def type_saved(client: Client, text: str) -> None:
    """Type ``text`` one character (one update, one commit) at a time, each saved."""
    root = client.doc.get("text", type=Text)
    for char in text:
        root += char
        await client.wait_saved()


def text(client: Client) -> str:
    return str(client.doc.get("text", type=Text))


def covered(changes: list[dict[str, Any]]) -> list[int]:
    """Every seq the ``document.changed`` bodies report, in order."""
    return [s for c in changes for s in range(c["seq"]["first"], c["seq"]["last"] + 1)]


async def test_deliveries_are_signed_and_describe_the_change(
    config: Config, serve_kind: ServeKind
) -> None:
    async with receiver() as hook:
        settings = hooks(config, hook.url, webhook_include_text=True)
        async with serve_kind(settings) as server:
            url = doc_url(server, "signed")
            async with connect(url, saved_acks=True, events=True) as alice:
                await alice.wait_for(lambda: alice.synced and alice.connection_id is not None)
                alice.doc.get("text", type=Text).insert(0, "hello")
                await alice.wait_saved()
                await hook.wait_for(lambda: hook.events("document.changed"))
                author = alice.connection_id
    assert len(hook.deliveries) == 2
    for delivery in hook.deliveries:
        digest = hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert delivery.headers["x-collab-signature"] == f"sha256={digest}"
        assert delivery.headers["content-type"] == "application/json"
    [created] = hook.events("document.created")
    [changed] = hook.events("document.changed")
    assert (created["doc"], created["seq"], created["author"]) == ("signed", 1, author)
    assert changed["doc"] == "signed"
    assert changed["seq"] == {"first": 1, "last": 1}
    assert (changed["updates"], changed["authors"], changed["text"]) == (1, [author], "hello")
    assert created["id"] != changed["id"]


async def test_a_burst_of_50_edits_gives_one_or_two_changes(
    config: Config, serve_kind: ServeKind
) -> None:
    async with receiver() as hook:
        # Each edit is its own commit; the debounce outlasts the gaps between them.
        async with serve_kind(hooks(config, hook.url, webhook_debounce_seconds=1.0)) as server:
            async with connect(doc_url(server, "burst"), saved_acks=True) as alice:
                await alice.wait_synced()
                await type_saved(alice, "x" * 50)
                await hook.wait_for(lambda: covered(hook.events("document.changed"))[-1:] == [50])
    changes = hook.events("document.changed")
    assert 1 <= len(changes) <= 2, changes
    assert covered(changes) == list(range(1, 51))
    assert "text" not in changes[0]  # webhook_include_text is off
    assert len(hook.events("document.created")) == 1


async def test_changes_go_out_every_max_wait_while_editing_goes_on(
    config: Config, serve_kind: ServeKind
) -> None:
    async with receiver() as hook:
        settings = hooks(
            config, hook.url, webhook_debounce_seconds=30.0, webhook_max_wait_seconds=0.1
        )
        async with serve_kind(settings) as server:
            async with connect(doc_url(server, "steady"), saved_acks=True) as alice:
                await alice.wait_synced()
                await type_saved(alice, "y" * 10)
                # A change reported while editing goes on, long before a 30 s quiet.
                await hook.wait_for(lambda: hook.events("document.changed"))
                await type_saved(alice, "z" * 10)
                await hook.wait_for(lambda: covered(hook.events("document.changed"))[-1:] == [20])
    changes = hook.events("document.changed")
    assert len(changes) >= 2
    assert covered(changes) == list(range(1, 21))  # each seq reported once, in order


async def test_a_failed_delivery_is_retried_until_it_gets_through(
    config: Config, serve_kind: ServeKind, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="collab.webhooks")
    async with receiver(statuses=[500, 500]) as hook:
        async with serve_kind(hooks(config, hook.url)) as server:
            async with connect(doc_url(server, "flaky"), saved_acks=True) as alice:
                await alice.wait_synced()
                alice.doc.get("text", type=Text).insert(0, "retry me")
                await alice.wait_saved()
                await hook.wait_for(lambda: hook.events("document.changed"))
    first_three = hook.deliveries[:3]
    assert [d.status for d in first_three] == [500, 500, 200]
    assert len({d.body for d in first_three}) == 1  # the same delivery, the same id
    assert first_three[0].json["event"] == "document.created"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed (attempt" in m and "HTTP 500" in m for m in messages) == 2, messages
    assert any("delivered" in m and "(attempt 3)" in m for m in messages), messages


async def test_editing_is_unaffected_while_the_receiver_hangs(
    config: Config, serve_kind: ServeKind
) -> None:
    settings = hooks(
        config, "", webhook_timeout=60.0, webhook_debounce_seconds=0.01, webhook_retry_for_seconds=0
    )
    async with receiver(hang=True) as hook:
        settings = settings.replace(webhook_url=(hook.url,))
        async with serve_kind(settings) as server:
            url = doc_url(server, "hung")
            async with connect(url, saved_acks=True) as alice, connect(url) as bob:
                await alice.wait_synced()
                await bob.wait_synced()
                await type_saved(alice, "a")
                await hook.wait_for(lambda: len(hook.deliveries) == 1)  # it holds that one
                # Every edit still reaches the other editor and is acknowledged as saved.
                for i in range(20):
                    await type_saved(alice, str(i % 10))
                    await bob.wait_for(lambda: text(bob) == text(alice))
                assert len(hook.deliveries) == 1  # still hanging on the first
            await hook.recover()  # the held attempt fails (and is dropped); the rest get through


async def test_a_dead_receiver_costs_a_bounded_queue(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="collab.webhooks")
    async with receiver(hang=True) as hook:
        config = Config(
            webhook_url=(hook.url,),
            webhook_queue_size=3,
            webhook_retry_for_seconds=0,
            webhook_debounce_seconds=60.0,
        )
        async with Webhooks(config) as webhooks:
            webhooks.committed([Committed("doc-0", 1, "c", None, 0.0, True)])
            await hook.wait_for(lambda: len(hook.deliveries) == 1)
            webhooks.committed(
                [Committed(f"doc-{i}", i, "c", None, 0.0, True) for i in range(1, 10)]
            )
            [target] = webhooks._targets
            assert target.waiting == 3  # one in flight, three waiting, six dropped
            assert webhooks.dropped == 6
            dropped = [r for r in caplog.records if "is full" in r.getMessage()]
            assert len(dropped) == 6 and all(r.levelno == logging.WARNING for r in dropped)
            await hook.recover()
    assert [d.json["doc"] for d in hook.deliveries[:1]] == ["doc-0"]


async def test_document_deleted_is_delivered_after_a_pending_change() -> None:
    async with receiver() as hook:
        config = Config(webhook_url=(hook.url,), webhook_debounce_seconds=30.0)
        async with Webhooks(config) as webhooks:
            webhooks.committed([Committed("gone", 7, "c", "ann", 0.0)])
            webhooks.deleted("gone")
            await hook.wait_for(lambda: len(hook.deliveries) == 2)
    changed, deleted = (d.json for d in hook.deliveries)
    assert (changed["event"], changed["seq"], changed["authors"]) == (
        "document.changed",
        {"first": 7, "last": 7},
        ["ann"],
    )
    assert (deleted["event"], deleted["doc"]) == ("document.deleted", "gone")
    assert "x-collab-signature" not in hook.deliveries[0].headers  # no secret: unsigned


async def test_without_webhook_urls_nothing_observes_the_journal(
    config: Config, serve_kind: ServeKind
) -> None:
    async with serve_kind(config) as server:
        assert server.journal.observer is None
    await asyncio.sleep(0)
