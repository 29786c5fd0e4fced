"""collab.policy.limits and the room's size bound: counts, client IPs and bytes, no sockets."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc, Text

from collab.core.room import Room
from collab.errors import DocumentTooLarge, ServerBusy, TooManyConnections
from collab.policy.limits import ConnectionCounts, TrustedProxies, peer_host
from collab.wire.protocol import SyncStep2, Update
from tests.test_room import FakePeer, ListLog


def test_the_total_cap_refuses_with_503_until_a_slot_is_released() -> None:
    counts = ConnectionCounts(max_total=2, max_per_doc=None, max_per_ip=None)
    first = counts.open("a", "10.0.0.1")
    counts.open("b", "10.0.0.2")
    with pytest.raises(ServerBusy) as info:
        counts.open("c", "10.0.0.3")
    assert info.value.http_status == 503 and "max_connections=2" in info.value.reason
    first.release()
    counts.open("c", "10.0.0.3")  # the released place is free again
    assert counts.total == 2


def test_the_per_document_cap_counts_one_document_only() -> None:
    counts = ConnectionCounts(max_total=None, max_per_doc=1, max_per_ip=None)
    slot = counts.open("notes", "10.0.0.1")
    with pytest.raises(ServerBusy) as info:
        counts.open("notes", "10.0.0.2")
    assert "max_connections_per_doc=1" in info.value.reason
    counts.open("other", "10.0.0.2")
    counts.open(None, "10.0.0.2")  # a signaling peer is on no document
    slot.release()
    assert counts.on_doc("notes") == 0
    counts.open("notes", "10.0.0.2")


def test_the_per_ip_cap_refuses_with_429_and_spares_other_addresses() -> None:
    counts = ConnectionCounts(max_total=None, max_per_doc=None, max_per_ip=2)
    slots = [counts.open("a", "10.0.0.1"), counts.open(None, "10.0.0.1")]
    with pytest.raises(TooManyConnections) as info:
        counts.open("b", "10.0.0.1")
    assert info.value.http_status == 429 and "max_connections_per_ip=2" in info.value.reason
    counts.open("a", "10.0.0.2")
    counts.open("a", "")  # an unknown address is not counted per IP
    counts.open("a", "")
    slots[0].release()
    assert counts.from_ip("10.0.0.1") == 1
    counts.open("b", "10.0.0.1")


def test_a_slot_released_twice_counts_once() -> None:
    counts = ConnectionCounts(max_total=3, max_per_doc=3, max_per_ip=3)
    keep = counts.open("a", "10.0.0.1")
    slot = counts.open("a", "10.0.0.1")
    slot.release()
    slot.release()
    assert not slot.held and keep.held
    assert (counts.total, counts.on_doc("a"), counts.from_ip("10.0.0.1")) == (1, 1, 1)


def test_no_cap_admits_everything() -> None:
    counts = ConnectionCounts(max_total=None, max_per_doc=None, max_per_ip=None)
    for _ in range(500):
        counts.open("a", "10.0.0.1")
    assert counts.total == 500


@pytest.mark.parametrize(
    ("peer", "host"),
    [("127.0.0.1:5000", "127.0.0.1"), ("::1:5000", "::1"), ("[::1]:5000", "::1"), ("", "")],
)
def test_the_host_of_a_peer_address(peer: str, host: str) -> None:
    assert peer_host(peer) == host


def test_forwarded_for_is_read_only_from_a_trusted_proxy() -> None:
    proxies = TrustedProxies(["127.0.0.1", "10.1.0.0/16"])
    # Anyone can write the header: from an untrusted peer it names nobody.
    assert proxies.client_ip("203.0.113.9:4000", "198.51.100.7") == "203.0.113.9"
    # From the proxy: its client, the last address it added.
    assert proxies.client_ip("127.0.0.1:4000", "198.51.100.7") == "198.51.100.7"
    # A client that forges the header gets its forgery kept on the left, not believed.
    assert proxies.client_ip("127.0.0.1:4000", "1.2.3.4, 198.51.100.7") == "198.51.100.7"
    # Two trusted proxies in a row: the first address that is not one of them.
    assert proxies.client_ip("127.0.0.1:4000", "198.51.100.7, 10.1.2.3") == "198.51.100.7"
    assert proxies.client_ip("127.0.0.1:4000", None) == "127.0.0.1"
    assert proxies.client_ip("127.0.0.1:4000", " , ") == "127.0.0.1"


def test_an_empty_list_trusts_nobody_and_star_trusts_everyone() -> None:
    assert TrustedProxies([]).client_ip("127.0.0.1:1", "198.51.100.7") == "127.0.0.1"
    assert TrustedProxies(["*"]).client_ip("203.0.113.9:1", "198.51.100.7") == "198.51.100.7"
    assert TrustedProxies(["*"]).client_ip("203.0.113.9:1", "1.1.1.1, 2.2.2.2") == "1.1.1.1"


def test_a_bad_proxy_address_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match=r"'proxy\.local'"):
        TrustedProxies(["127.0.0.1", "proxy.local"])


# -- the room's size bound ------------------------------------------------------------------


def text_of(doc: Doc[Any]) -> str:
    return str(doc.get("text", type=Text))


def insert(base: Doc[Any], index: int, content: str, client_id: int = 7) -> bytes:
    """An update inserting ``content`` at ``index`` on top of ``base``'s state."""
    replica: Doc[Any] = Doc(client_id=client_id)
    replica.apply_update(base.get_update())
    before = replica.get_state()
    replica.get("text", type=Text).insert(index, content)
    return replica.get_update(before)


def bounded_room(max_bytes: int) -> tuple[Room, ListLog]:
    log = ListLog()
    doc: Doc[Any] = Doc()
    return Room(
        "notes", doc, awareness_timeout=30, log=log, clock=lambda: 0.0, max_bytes=max_bytes
    ), log


def test_an_update_that_would_pass_the_limit_is_refused_before_it_touches_the_document() -> None:
    room, log = bounded_room(2_000)
    writer, reader = FakePeer("w"), FakePeer("r")
    room.join(writer)
    room.join(reader)
    room.receive(writer, Update(insert(room.doc, 0, "small")))
    state, frames, entries = room.doc.get_update(), len(reader.frames), len(log.entries)
    big = insert(room.doc, 5, "x" * 2_500)
    with pytest.raises(DocumentTooLarge) as info:
        room.receive(writer, Update(big))
    assert info.value.close_code == 4413 and info.value.http_status == 413
    assert room.doc.get_update() == state and text_of(room.doc) == "small"
    assert (len(reader.frames), len(log.entries)) == (frames, entries)  # not sent, not logged
    with pytest.raises(DocumentTooLarge):  # a step 2 is an update like any other
        room.receive(writer, SyncStep2(big))
    room.receive(writer, Update(insert(room.doc, 5, " and more")))  # under the limit: fine
    assert text_of(room.doc) == "small and more"


def test_the_running_bound_is_corrected_near_the_limit() -> None:
    # Each update adds its length to the bound; repeats of one update add nothing to the
    # state. Near the limit the room measures the state and lets real room in.
    room, _ = bounded_room(3_000)
    writer = FakePeer("w")
    room.join(writer)
    update = insert(room.doc, 0, "y" * 400)
    for _ in range(20):  # 20 x ~400 bytes by the bound, ~400 by the state
        room.receive(writer, Update(update))
    assert text_of(room.doc) == "y" * 400
    room.receive(writer, Update(insert(room.doc, 400, "z" * 1_000)))
    assert len(text_of(room.doc)) == 1_400


def test_the_state_never_passes_the_limit_by_more_than_an_item_header() -> None:
    # Inserting in the middle of an item splits it; the state then holds one more item
    # header than the update did. The bound (state + update) stays an upper bound but for
    # those few bytes, whatever mix of appends, splits and deletions arrives.
    limit = 4_000
    room, _ = bounded_room(limit)
    writer = FakePeer("w")
    room.join(writer)
    refused = 0
    for i in range(400):
        text = text_of(room.doc)
        client_id = 100 + i % 5
        if i % 7 == 6 and len(text) > 10:
            replica: Doc[Any] = Doc(client_id=client_id)
            replica.apply_update(room.doc.get_update())
            before = replica.get_state()
            del replica.get("text", type=Text)[len(text) // 3 : len(text) // 3 + 5]
            update = replica.get_update(before)
        else:
            update = insert(room.doc, (i * 37) % (len(text) + 1), f"w{i}-", client_id)
        try:
            room.receive(writer, Update(update))
        except DocumentTooLarge:
            refused += 1
        assert len(room.doc.get_update()) <= limit + 16
    assert refused > 0  # the limit was reached, and held
