"""collab.core.signaling: topics, relays and bounds, driven by hand (fake transports and clock)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from collab.config import Config
from collab.core.signaling import Hub, SignalingPeer, TokenBucket


class FakeTransport:
    """Records what a peer writes; ``buffered`` is set by the test."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.buffered = 0

    def write_text(self, message: str) -> None:
        assert self.closed is None, "wrote after close"
        self.sent.append(json.loads(message))

    def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)

    def take(self) -> list[dict[str, Any]]:
        sent, self.sent = self.sent, []
        return sent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hub(clock: Clock) -> Hub:
    return Hub(Config(), clock=clock)


def join(hub: Hub, *topics: str) -> tuple[SignalingPeer, FakeTransport]:
    transport = FakeTransport()
    peer = hub.join(transport)
    if topics:
        peer.receive(json.dumps({"type": "subscribe", "topics": list(topics)}))
    return peer, transport


def publish(peer: SignalingPeer, topic: str, data: Any) -> None:
    peer.receive(json.dumps({"type": "publish", "topic": topic, "data": data}))


def test_publish_reaches_every_subscriber_and_the_sender_with_clients(hub: Hub) -> None:
    a, ta = join(hub, "notes")
    _, tb = join(hub, "notes", "other")
    c, tc = join(hub, "other")
    publish(a, "notes", {"type": "announce", "from": "a"})
    relayed = {
        "type": "publish",
        "topic": "notes",
        "data": {"type": "announce", "from": "a"},
        "clients": 2,
    }
    assert ta.take() == [relayed]
    assert tb.take() == [relayed]
    assert tc.take() == []  # not subscribed to "notes"
    publish(c, "other", 1)
    assert [m["clients"] for m in tb.take() + tc.take()] == [2, 2]
    assert ta.take() == []


def test_a_publish_to_a_topic_the_sender_did_not_subscribe_to_is_dropped(hub: Hub) -> None:
    _, ta = join(hub, "notes")
    b, tb = join(hub, "mine")
    publish(b, "notes", {"type": "signal", "to": "a"})
    assert ta.take() == [] and tb.take() == []
    assert b.closed is False  # dropped, not an error: y-webrtc never does it
    publish(b, "nobody-here", 1)
    assert hub.topics == 2  # a publish never creates a topic


def test_unsubscribe_stops_the_relay_and_frees_empty_topics(hub: Hub) -> None:
    a, ta = join(hub, "notes", "drafts")
    b, tb = join(hub, "notes")
    assert (hub.topics, hub.subscribers("notes")) == (2, 2)
    b.receive('{"type":"unsubscribe","topics":["notes","never-subscribed"]}')
    publish(a, "notes", "x")
    assert [m["clients"] for m in ta.take()] == [1]
    assert tb.take() == []
    a.receive('{"type":"unsubscribe","topics":["drafts"]}')
    assert hub.topics == 1
    publish(a, "drafts", "x")  # no longer subscribed: dropped
    assert ta.take() == []
    a.end(1000)
    assert (hub.topics, hub.peers) == (0, 1)
    b.end()
    assert hub.peers == 0


def test_subscribing_twice_counts_once(hub: Hub) -> None:
    a, ta = join(hub, "notes", "notes")
    a.receive('{"type":"subscribe","topics":["notes"]}')
    publish(a, "notes", 1)
    assert [m["clients"] for m in ta.take()] == [1]
    a.receive('{"type":"unsubscribe","topics":["notes"]}')
    assert hub.topics == 0


def test_json_ping_is_answered_and_pong_or_unknown_types_are_ignored(hub: Hub) -> None:
    a, ta = join(hub)
    a.receive('{"type":"ping"}')
    assert ta.take() == [{"type": "pong"}]
    a.receive('{"type":"pong"}')
    a.receive('{"type":"something-new","topics":5}')
    assert ta.take() == [] and ta.closed is None


def test_malformed_json_closes_only_that_peer_with_1007(hub: Hub) -> None:
    a, ta = join(hub, "notes")
    b, tb = join(hub, "notes")
    b.receive("{not json")
    assert tb.closed == (1007, "signaling frame is not JSON")
    assert hub.subscribers("notes") == 1  # out at once, before the transport reports the end
    b.receive('{"type":"subscribe","topics":["notes","more"]}')  # after the close: ignored
    assert (hub.topics, hub.subscribers("notes")) == (1, 1)
    publish(a, "notes", 1)
    assert [m["clients"] for m in ta.take()] == [1]
    assert tb.take() == []
    b.end(1007, "signaling frame is not JSON")  # the transport's report changes nothing
    assert hub.subscribers("notes") == 1


@pytest.mark.parametrize("topic", ["", "a b", "../up", "x/", "notes\n", "é", "x" * 129])
def test_a_topic_that_is_not_a_document_name_closes_with_1008(hub: Hub, topic: str) -> None:
    a, ta = join(hub)
    a.receive(json.dumps({"type": "subscribe", "topics": ["fine", topic]}))
    assert ta.closed is not None and ta.closed[0] == 1008
    assert hub.topics == 0  # the whole subscribe was refused


def test_the_gate_decides_which_topics_a_peer_may_have(hub: Hub) -> None:
    transport = FakeTransport()
    peer = hub.join(transport, may_subscribe=lambda topic: topic.startswith("team-a/"))
    peer.receive('{"type":"subscribe","topics":["team-a/notes"]}')
    assert hub.subscribers("team-a/notes") == 1
    peer.receive('{"type":"subscribe","topics":["team-b/notes"]}')
    assert transport.closed is not None and transport.closed[0] == 4403
    assert hub.topics == 0


def test_topics_per_connection_are_bounded(clock: Clock) -> None:
    hub = Hub(Config(signal_max_topics=3), clock=clock)
    a, ta = join(hub, "t1", "t2")
    a.receive('{"type":"subscribe","topics":["t3","t1","t3"]}')  # one new: 3 in all
    assert ta.closed is None and hub.topics == 3
    _, tb = join(hub, "t1", "t2", "t3", "t4")
    assert tb.closed == (1008, "over 3 topics on one connection")
    assert hub.subscribers("t1") == 1  # b took none of them
    a.receive('{"type":"subscribe","topics":["t4"]}')
    assert ta.closed == (1008, "over 3 topics on one connection")
    assert hub.topics == 0


def test_frames_are_bounded_in_bytes_not_characters(clock: Clock) -> None:
    hub = Hub(Config(signal_max_message_size=100), clock=clock)
    a, ta = join(hub, "notes")
    frame = json.dumps({"type": "publish", "topic": "notes", "data": ""})
    fits = frame[:-2] + "x" * (100 - len(frame)) + '"}'
    assert len(fits) == 100
    a.receive(fits)
    assert len(ta.take()) == 1 and ta.closed is None
    # 96 characters, but each "é" is 2 bytes of UTF-8: 104 bytes.
    over = frame[:-2] + "é" * 8 + "x" * (100 - len(frame) - 12) + '"}'
    assert len(over) < 100 < len(over.encode())
    a.receive(over)
    assert ta.closed == (1009, "signaling frame over 100 bytes")
    b, tb = join(hub)
    b.receive(b"{" + b" " * 100 + b"}")  # binary frames count the same
    assert tb.closed is not None and tb.closed[0] == 1009


def test_messages_per_second_are_bounded_with_a_burst(clock: Clock) -> None:
    hub = Hub(Config(signal_messages_per_second=2, signal_burst=3), clock=clock)
    a, ta = join(hub)
    for _ in range(3):  # the burst
        a.receive('{"type":"ping"}')
    clock.now += 0.5  # one message's worth
    a.receive('{"type":"ping"}')
    assert len(ta.take()) == 4 and ta.closed is None
    a.receive('{"type":"ping"}')
    assert ta.closed == (1008, "over 2 messages per second")
    assert ta.take() == []
    b, tb = join(hub)  # every connection has its own bucket
    for _ in range(3):
        b.receive('{"type":"ping"}')
    clock.now += 60  # refills up to the burst, not beyond
    for _ in range(3):
        b.receive('{"type":"ping"}')
    assert tb.closed is None
    b.receive('{"type":"ping"}')
    assert tb.closed is not None and tb.closed[0] == 1008


def test_a_clock_that_steps_back_refills_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(5.5)  # 0.5 s after the step back: half a token
    assert bucket.take(6.0)


def test_a_peer_that_cannot_keep_up_is_closed_with_1013(clock: Clock) -> None:
    hub = Hub(Config(outbox_max_bytes=1000), clock=clock)
    a, ta = join(hub, "notes")
    _, tslow = join(hub, "notes")
    c, tc = join(hub, "notes")
    tslow.buffered = 950  # its socket is full of what it did not read
    publish(a, "notes", "x" * 40)  # 950 + ~80 > 1000
    assert tslow.closed == (1013, "outbox over 1000 bytes")
    assert [m["clients"] for m in ta.take() + tc.take()] == [3, 3]  # the relay went on
    publish(c, "notes", 1)
    assert [m["clients"] for m in ta.take() + tc.take()] == [2, 2]
    assert ta.closed is None and tc.closed is None  # the sender is never slowed


def test_an_empty_buffer_takes_a_frame_bigger_than_the_bound(clock: Clock) -> None:
    hub = Hub(Config(outbox_max_bytes=10), clock=clock)
    a, ta = join(hub, "notes")
    publish(a, "notes", "a frame far bigger than ten bytes")
    assert len(ta.take()) == 1 and ta.closed is None
