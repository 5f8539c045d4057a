"""The topic-handler registry and the bridge's two extra lanes (prompt, outbox), on a real Mosquitto.

The bridge runs in this process (its threads have database connections of their own) with a router
made of the facilities handler and a test app's handler built here, so the lanes are tested without
any fleet app's business rules.
"""

import threading
import time
import types

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context
from helpers import committed, count_in, in_bridgetest, wait_for

from bridge.mqtt import broker_from_settings, connect, make_client
from bridge.registry import Router, filter_pattern
from bridge.service import Bridge, Options
from portal.facilities import topics as facilities_topics
from telemetry.models import DeadLetter, Reading

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "topic_filter, topic, matches",
    [
        ("tenants/+/devices/+/sensors/+", "tenants/acme/devices/d1/sensors/t", True),
        ("tenants/+/devices/+/sensors/+", "tenants/acme/devices/d1/sensors/t/x", False),
        ("tenants/+/devices/+/sensors/+", "tenants/acme/devices//sensors/t", True),  # an empty level is a level
        ("smartlock/+/status", "smartlock/ABC123/status", True),
        ("smartlock/+/status", "smartlock/ABC123/statusx", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "anything/at/all", True),
        ("a.b/+", "aXb/c", False),  # dots are literal
    ],
)
def test_filters_match_as_mqtt_defines_them(topic_filter, topic, matches):
    import re

    assert bool(re.fullmatch(filter_pattern(topic_filter), topic)) is matches


def module(name, **attributes):
    made = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(made, key, value)
    return made


def test_the_router_finds_every_apps_topics_module_and_prompt_handlers_win():
    discovered = [h.name for h in Router().handlers]
    assert "portal.facilities.topics" in discovered
    wide = module("wide", SUBSCRIPTIONS=["tenants/#"], decode=None, store=None)
    narrow = module("narrow", SUBSCRIPTIONS=["tenants/+/locks/+/status"], PROMPT=True, handle=None)
    router = Router([wide, narrow])
    assert router.route("tenants/acme/locks/l1/status").module is narrow
    assert router.route("tenants/acme/devices/d/sensors/s").module is wide
    assert router.route("elsewhere/x") is None
    assert router.subscriptions == ["tenants/+/locks/+/status", "tenants/#"]


def test_a_message_no_handler_takes_becomes_an_unknown_topic_dead_letter():
    message = Router([]).decode(None, "stray/topic", b"\xff1", timezone.now())
    letter = message.dead_letter()
    assert (letter.reason, letter.topic, letter.payload) == ("unknown_topic", "stray/topic", "\ufffd1")


# --- the lanes, end to end ----------------------------------------------------------------------


CHANNEL = "fw_test_outbox"


def prompt_handler(calls):
    def handle(topic, payload, now):
        with schema_context("bridgetest"):
            DeadLetter.objects.create(source="mqtt", topic=topic, payload=payload.decode(), reason="prompt")
        calls.append(time.monotonic())
        if payload == b"boom":
            raise ValueError("a handler bug")
        return [(topic.replace("test/in/", "test/reply/"), b"pong:" + payload)]

    def outgoing(limit):
        rows = DeadLetter.objects.filter(reason="to_send").order_by("pk")[:limit]
        return [(row.pk, f"test/out/{row.pk}", row.payload) for row in rows]

    def published(keys):
        DeadLetter.objects.filter(pk__in=keys).update(reason="sent")

    return module(
        "test_prompt_topics",
        SUBSCRIPTIONS=["test/in/+"],
        PROMPT=True,
        handle=handle,
        OUTBOX_CHANNEL=CHANNEL,
        outgoing=outgoing,
        published=published,
    )


@pytest.fixture
def running_bridge(broker, bridge_tenant):
    """A bridge in this process whose telemetry batches stay open for 30 s (unless stopped)."""
    calls = []
    router = Router([facilities_topics, prompt_handler(calls)])
    bridge = Bridge(broker_from_settings(broker), Options(f"lanes-{time.monotonic_ns()}", max_age=30.0), router=router)
    stop = threading.Event()

    def main_loop():
        while not stop.is_set():
            bridge.collect(timeout=0.05)
            if bridge.due():
                bridge.flush()
        bridge.flush()
        connection.close()

    bridge.start()
    loop = threading.Thread(target=main_loop, daemon=True)
    loop.start()
    wait_for(lambda: bridge.connected, 10, "the bridge to connect")
    time.sleep(0.3)  # subscribed
    yield bridge, calls
    stop.set()
    loop.join(10)
    bridge.stop()
    in_bridgetest(lambda: (DeadLetter.objects.all().delete(), Reading.objects.all().delete()))
    committed(lambda: DeadLetter.objects.filter(topic__startswith="test/").delete())


@pytest.fixture
def mqtt_client(broker):
    settings = broker_from_settings(broker)
    client = make_client(settings, f"test-lanes-{time.monotonic_ns()}", persistent=False)
    received = []
    client.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    connect(client, settings, persistent=False)
    client.loop_start()
    wait_for(client.is_connected, 10, "the test client to connect")
    client.subscribe([("test/reply/+", 1), ("test/out/+", 1)])
    time.sleep(0.2)
    client.received = received
    yield client
    client.disconnect()
    client.loop_stop()


def test_prompt_messages_do_not_wait_behind_an_open_telemetry_batch(running_bridge, mqtt_client):
    bridge, calls = running_bridge
    mqtt_client.publish("tenants/bridgetest/devices/held/sensors/t", "1.5", qos=1)
    wait_for(lambda: bridge.batch, 5, "the telemetry message to be held in a batch")
    sent = time.monotonic()
    mqtt_client.publish("test/in/l1", b"ping", qos=1)
    wait_for(lambda: calls, 5, "the prompt handler")
    assert calls[0] - sent < 1.0
    wait_for(lambda: ("test/reply/l1", b"pong:ping") in mqtt_client.received, 5, "the reply")
    assert count_in("bridgetest", Reading) == 0  # the batch is still open: the prompt message overtook it
    assert bridge.prompt.handled == 1


def test_a_failing_prompt_handler_keeps_the_message_as_a_dead_letter_and_the_lane_goes_on(running_bridge, mqtt_client):
    bridge, calls = running_bridge
    mqtt_client.publish("test/in/bad", b"boom", qos=1)
    mqtt_client.publish("test/in/good", b"after", qos=1)
    wait_for(lambda: bridge.prompt.handled == 2, 5, "both messages")
    assert count_in("public", DeadLetter, reason="handler_error", topic="test/in/bad") == 1
    # the reply is on its way through the broker once the lane counted the message handled
    wait_for(lambda: ("test/reply/good", b"pong:after") in mqtt_client.received, 5, "the reply")


def test_the_outbox_publishes_on_notify_and_marks_sent_after_the_brokers_ack(running_bridge, mqtt_client):
    from django.db import transaction

    def write_and_signal():
        with transaction.atomic():
            row = DeadLetter.objects.create(source="internal", payload="command-1", reason="to_send")
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, "bridgetest"])
        return row

    time.sleep(0.5)  # past the bridge's first sweep: only the signal can bring this one out quickly
    row = in_bridgetest(write_and_signal)
    wait_for(lambda: (f"test/out/{row.pk}", b"command-1") in mqtt_client.received, 5, "the outbox message")
    wait_for(lambda: count_in("bridgetest", DeadLetter, pk=row.pk, reason="sent") == 1, 5, "marked sent")


def test_a_restarted_bridge_sweeps_and_publishes_what_was_pending(broker, bridge_tenant, mqtt_client):
    row = in_bridgetest(lambda: DeadLetter.objects.create(source="internal", payload="while-away", reason="to_send"))
    router = Router([prompt_handler([])])
    bridge = Bridge(broker_from_settings(broker), Options(f"sweep-{time.monotonic_ns()}"), router=router)
    bridge.start()
    try:
        wait_for(lambda: (f"test/out/{row.pk}", b"while-away") in mqtt_client.received, 10, "the swept message")
        wait_for(lambda: count_in("bridgetest", DeadLetter, pk=row.pk, reason="sent") == 1, 5, "marked sent")
    finally:
        bridge.stop()
        in_bridgetest(lambda: DeadLetter.objects.filter(pk=row.pk).delete())
