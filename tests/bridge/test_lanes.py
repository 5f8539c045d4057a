"""The prompt lane's batches (bridge/lanes.py): what arrives together is settled together by a
handler's handle_batch, replies published and messages acknowledged only after it returned."""

import time
from types import SimpleNamespace

from bridge import lanes
from bridge.registry import Handler
from bridge.service import Pending


class FakeBridge:
    def __init__(self):
        self.events = []
        self.client = SimpleNamespace(publish=lambda topic, payload, qos: self.events.append(("publish", topic, qos)))

    def ack_one(self, pending):
        self.events.append(("ack", pending.topic))


def handler(name, events, batching=True):
    def handle(topic, payload, now):
        events.append(("handle", topic))
        return [(f"{topic}/result", payload)]

    def handle_batch(messages, now):
        events.append(("batch", [topic for topic, _ in messages]))
        return [[(f"{topic}/result", payload)] for topic, payload in messages]

    module = SimpleNamespace(__name__=name, SUBSCRIPTIONS=["x/+"], PROMPT=True, handle=handle)
    if batching:
        module.handle_batch = handle_batch
    return Handler.of(module)


def pending(topic, which):
    return Pending(1, 1, topic, b"{}", 0, time.monotonic(), which)


def test_what_arrives_together_is_one_batch_answered_then_acked_in_order():
    bridge = FakeBridge()
    lane = lanes.PromptLane(bridge)
    batching, single = handler("batching", bridge.events), handler("single", bridge.events, batching=False)
    messages = [pending(f"a/{n}", batching) for n in range(3)] + [pending("s/1", single), pending("a/9", batching)]
    for message in messages[1:]:
        lane.put(message)
    lane.settle(lane.collect(messages[0]))
    assert bridge.events == [
        ("batch", ["a/0", "a/1", "a/2"]),
        *[("publish", f"a/{n}/result", 1) for n in range(3)],
        *[("ack", f"a/{n}") for n in range(3)],
        ("handle", "s/1"),
        ("publish", "s/1/result", 1),
        ("ack", "s/1"),
        ("handle", "a/9"),  # a run of one is handled as one
        ("publish", "a/9/result", 1),
        ("ack", "a/9"),
    ]
    assert lane.handled == 5 and lane.batches == 1


def test_a_batch_is_bounded_in_size_and_waits_only_briefly_for_more(monkeypatch):
    lane = lanes.PromptLane(FakeBridge())
    which = handler("batching", [])
    monkeypatch.setattr(lanes, "BATCH_MAX", 4)
    for n in range(6):
        lane.put(pending(f"a/{n}", which))
    assert len(lane.collect(pending("first", which))) == 4
    started = time.monotonic()
    assert len(lane.collect(pending("alone", which))) == 4  # the three left, and it
    assert [p.topic for p in lane.collect(pending("later", which))] == ["later"]
    assert time.monotonic() - started < 0.5  # BATCH_WAIT (5 ms) each, on a loaded machine


def test_a_batch_the_database_refused_is_tried_again_whole_and_acked_once(monkeypatch):
    from django.db import OperationalError

    bridge = FakeBridge()
    lane = lanes.PromptLane(bridge)
    which = handler("batching", bridge.events)
    real, failures = which.module.handle_batch, [OperationalError("the database went away")]

    def flaky(messages, now):
        if failures:
            raise failures.pop()
        return real(messages, now)

    which.module.handle_batch = flaky
    monkeypatch.setattr(lanes, "RETRY_PAUSE", 0)
    monkeypatch.setattr(lanes, "close_old_connections", lambda: None)
    lane.settle([pending("a/1", which), pending("a/2", which)])
    assert bridge.events == [
        ("batch", ["a/1", "a/2"]),
        ("publish", "a/1/result", 1),
        ("publish", "a/2/result", 1),
        ("ack", "a/1"),
        ("ack", "a/2"),
    ]
    assert lane.errors == 1 and lane.handled == 2


def test_a_handler_bug_on_a_batch_replays_it_one_by_one():
    bridge = FakeBridge()
    lane = lanes.PromptLane(bridge)
    which = handler("batching", bridge.events)

    def broken(messages, now):
        raise ValueError("a handler bug")

    which.module.handle_batch = broken
    lane.settle([pending("a/1", which), pending("a/2", which)])
    assert [event for event in bridge.events if event[0] != "publish"] == [
        ("handle", "a/1"),
        ("ack", "a/1"),
        ("handle", "a/2"),
        ("ack", "a/2"),
    ]
    assert lane.errors == 1 and lane.handled == 2
