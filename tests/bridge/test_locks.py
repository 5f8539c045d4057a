"""Lock commands and status through a real Mosquitto, a real bridge process and a simulated lock.

The portal side writes a LockCommand (committed, in the bridgetest tenant); the bridge publishes it;
the simulated lock (bridge/simlock.py, in this process) answers; the bridge settles the command.
"""

import json
import time
import uuid

import pytest
from django.utils import timezone
from helpers import committed, in_bridgetest, wait_for
from lock_builders import make_lock, make_pin

from bridge.mqtt import broker_from_settings, connect, make_client
from bridge.simlock import SimLock, SimulatedLocks
from portal.locks import tasks
from portal.locks.models import AccessLog, Lock, LockCommand, PinCode
from telemetry.models import DeadLetter, Device, Sensor

pytestmark = pytest.mark.django_db


@pytest.fixture
def lock_factory(bridge_tenant):
    made = []

    def make(protocol="fieldwatch"):
        lock_id = f"lock-{uuid.uuid4().hex[:8]}"
        lock = in_bridgetest(lambda: make_lock(lock_id, f"Door {lock_id}", protocol=protocol))
        made.append(lock.pk)
        return lock

    yield make
    in_bridgetest(lambda: Device.objects.filter(lock__pk__in=made).delete())


@pytest.fixture
def simulated(broker):
    """Simulated locks on a client of their own: simulated(lock, failure_rate=…) starts answering."""
    clients = []

    def start(*locks, **options):
        settings = broker_from_settings(broker)
        client = make_client(settings, f"sim-{uuid.uuid4().hex[:8]}", persistent=False)
        sims = [
            SimLock(lock.lock_id, SimulatedLocks.base_for(lock.protocol, "bridgetest", lock.lock_id)) for lock in locks
        ]
        fleet = SimulatedLocks(client, sims, delay=0, **options)
        client.on_connect = lambda *args: fleet.subscribe()
        client.on_message = fleet.on_message
        connect(client, settings, persistent=False)
        client.loop_start()
        clients.append(client)
        wait_for(client.is_connected, 10, "the simulated lock to connect")
        time.sleep(0.3)  # subscribed
        fleet.client = client
        return fleet

    yield start
    for client in clients:
        client.disconnect()
        client.loop_stop()


def issue(lock, kind, params=None):
    return in_bridgetest(lambda: LockCommand.issue(Lock.objects.get(pk=lock.pk), kind, params))


def command_state(command):
    return in_bridgetest(lambda: LockCommand.objects.get(pk=command.pk))


def test_an_unlock_is_published_answered_and_settled_through_the_broker(start_bridge, lock_factory, simulated):
    lock = lock_factory()
    simulated(lock)
    start_bridge()
    sent = time.monotonic()
    command = issue(lock, "unlock")
    wait_for(lambda: command_state(command).state == "acknowledged", 20, "the acknowledgement")
    settled = time.monotonic() - sent
    after = in_bridgetest(lambda: Lock.objects.get(pk=lock.pk))
    assert after.status == "unlocked"
    assert command_state(command).sent_at is not None
    assert (
        in_bridgetest(
            lambda: AccessLog.objects.filter(lock_id=lock.pk, method="app", action="unlock", success=True).count()
        )
        == 1
    )
    assert settled < 10  # generous on a loaded machine; bench/locks.py measures it


def test_a_refused_command_is_failed_with_the_locks_reason(start_bridge, lock_factory, simulated):
    lock = lock_factory()
    simulated(lock, failure_rate=1.0)
    start_bridge()
    command = issue(lock, "lock")
    wait_for(lambda: command_state(command).state == "failed", 20, "the failure")
    assert command_state(command).detail == "motor fault"


def test_an_unanswered_command_expires_and_raises_an_alert(start_bridge, lock_factory, time_machine):
    from portal.alerts.models import Alert, AlertRule

    lock = lock_factory()  # no simulated lock answers
    start_bridge()
    command = issue(lock, "unlock")
    wait_for(lambda: command_state(command).state == "sent", 20, "the publish")

    made = in_bridgetest(lambda: AlertRule.objects.get(name="Lock security"))  # made with the first lock
    try:
        time_machine.move_to(timezone.now() + timezone.timedelta(seconds=31), tick=False)
        assert in_bridgetest(tasks.expire_due) == 1  # committed: the alert follows on commit
        expired = command_state(command)
        assert expired.state == "expired" and "no answer" in expired.detail
        alert = in_bridgetest(lambda: Alert.objects.get(rule=made, device_id=lock.device_id))
        assert alert.device_id == lock.device_id and alert.status == "open"
        assert in_bridgetest(
            lambda: AccessLog.objects.filter(lock_id=lock.pk, success=False, reason="expired").exists()
        )
        time_machine.move_to(timezone.now() + timezone.timedelta(seconds=31), tick=False)
        assert in_bridgetest(tasks.expire_due) == 0  # once
    finally:
        in_bridgetest(lambda: Alert.objects.filter(device_id=lock.device_id).delete())


def test_a_restarted_bridge_publishes_what_was_pending(start_bridge, lock_factory, simulated):
    lock = lock_factory()
    command = issue(lock, "lock")  # no bridge is running
    time.sleep(0.5)
    assert command_state(command).state == "pending"
    simulated(lock)
    start_bridge()
    wait_for(lambda: command_state(command).state == "acknowledged", 30, "the swept command's acknowledgement")


def test_field_locks_speak_seed_004s_topics(start_bridge, lock_factory, simulated, broker):
    lock = lock_factory(protocol="smartlock")
    fleet = simulated(lock)
    start_bridge()
    command = issue(lock, "unlock")
    wait_for(lambda: command_state(command).state == "acknowledged", 20, "the acknowledgement")
    status = {"online": True, "battery": 17, "lock_status": "locked", "signal_strength": -45, "temperature": 22.5}
    fleet.client.publish(
        f"smartlock/{lock.lock_id}/status", json.dumps(status | {"timestamp": timezone.now().isoformat()}), qos=1
    )
    wait_for(lambda: in_bridgetest(lambda: Lock.objects.get(pk=lock.pk).battery) == 17, 20, "the status")
    after = in_bridgetest(lambda: Lock.objects.select_related("device").get(pk=lock.pk))
    assert (after.status, after.signal_strength, after.temperature) == ("locked", -45, 22.5)
    assert after.device.last_seen is not None
    assert in_bridgetest(lambda: Sensor.objects.filter(device_id=lock.device_id, key="battery").exists())
    fleet.client.publish("smartlock/no-such-lock/status", json.dumps(status), qos=1)
    wait_for(
        lambda: committed(
            lambda: DeadLetter.objects.filter(topic="smartlock/no-such-lock/status", reason="unknown_lock").exists()
        ),
        20,
        "the dead letter",
    )
    committed(lambda: DeadLetter.objects.filter(topic__startswith="smartlock/").delete())


def test_status_reaches_the_database_in_well_under_a_second(start_bridge, lock_factory, simulated):
    lock = lock_factory()
    fleet = simulated(lock)
    start_bridge()
    times = []
    for battery in (90, 80, 70):
        sent = time.monotonic()
        fleet.client.publish(f"tenants/bridgetest/locks/{lock.lock_id}/status", json.dumps({"battery": battery}), qos=1)
        wait_for(lambda b=battery: in_bridgetest(lambda: Lock.objects.get(pk=lock.pk).battery) == b, 20, "the status")
        times.append(time.monotonic() - sent)
    assert min(times) < 1.0, times  # the page polls every 0.5 s on top of this


def test_codes_are_synced_and_their_state_follows_the_locks_answer(start_bridge, lock_factory, simulated):
    from portal.locks.code_views import sync

    lock = lock_factory()
    fleet = simulated(lock)
    start_bridge()

    def add_and_sync():
        pin = make_pin(Lock.objects.get(pk=lock.pk))
        sync(pin.lock, [pin], "set")
        return pin

    pin = in_bridgetest(add_and_sync)
    assert pin.sync_state == "setting" or in_bridgetest(lambda: PinCode.objects.get(pk=pin.pk).sync_state) == "setting"
    wait_for(lambda: in_bridgetest(lambda: PinCode.objects.get(pk=pin.pk).sync_state) == "set", 20, "the code set")
    held = next(iter(fleet.locks.values())).codes
    assert held[pin.pk]["hash"] == in_bridgetest(lambda: PinCode.objects.get(pk=pin.pk).sync_digest)
    assert "482913" not in json.dumps(held)  # the lock gets a salted hash, never the PIN
    in_bridgetest(
        lambda: (
            PinCode.objects.filter(pk=pin.pk).update(active=False),
            sync(Lock.objects.get(pk=lock.pk), [PinCode.objects.get(pk=pin.pk)], "remove"),
        )
    )
    wait_for(
        lambda: in_bridgetest(lambda: PinCode.objects.get(pk=pin.pk).sync_state) == "removed", 20, "the code removed"
    )
    assert pin.pk not in held


def test_a_firmware_update_reports_its_progress_and_completes(start_bridge, lock_factory, simulated):
    lock = lock_factory()
    simulated(lock)
    start_bridge()
    command = issue(lock, "ota", {"firmware_url": "https://firmware.example/lock-2.0.bin", "version": "2.0"})
    wait_for(lambda: command_state(command).state == "acknowledged", 20, "the update to finish")
    after = in_bridgetest(lambda: Lock.objects.get(pk=lock.pk))
    assert (after.ota_progress, after.ota_state) == (100, "done")
    assert command_state(command).progress == 100


def test_access_requests_are_answered_through_the_broker_and_a_one_time_pin_opens_once(
    start_bridge, lock_factory, broker
):
    """The lock's MQTT access check, round trip: requests arriving together are settled as batches
    (bridge/lanes.py, access.check_batch), each answered on …/access/result after the commit."""
    locks = [lock_factory(), lock_factory()]
    in_bridgetest(lambda: [make_pin(lock, "482913", kind="one_time", max_uses=1) for lock in locks])
    start_bridge()
    settings = broker_from_settings(broker)
    client = make_client(settings, f"asker-{uuid.uuid4().hex[:8]}", persistent=False)
    answers, subscribed = [], []
    client.on_message = lambda c, u, message: answers.append((message.topic, json.loads(message.payload)))
    client.on_subscribe = lambda *args: subscribed.append(True)
    client.on_connect = lambda c, *args: c.subscribe("tenants/bridgetest/locks/+/access/result", qos=1)
    connect(client, settings, persistent=False)
    client.loop_start()
    try:
        wait_for(lambda: subscribed, 10, "the subscription")
        requests = {}
        for n in range(40):  # each lock's one-time PIN sent 10 times, and as many wrong-format codes
            lock = locks[n % 2]
            requests[f"r{n}"] = lock.lock_id
            body = {"request_id": f"r{n}", "method": "pin", "code": "482913" if n % 4 < 2 else "12"}
            client.publish(f"tenants/bridgetest/locks/{lock.lock_id}/access", json.dumps(body), qos=1)
        wait_for(lambda: len(answers) >= len(requests), 30, "every answer")
    finally:
        client.disconnect()
        client.loop_stop()
    assert sorted(answer["request_id"] for _, answer in answers) == sorted(requests)
    for topic, answer in answers:
        assert topic == f"tenants/bridgetest/locks/{requests[answer['request_id']]}/access/result"
    granted = [answer for _, answer in answers if answer["allowed"]]
    assert len(granted) == 2 and {a["remaining_uses"] for a in granted} == {0}
    reasons = {answer["reason"] for _, answer in answers if not answer["allowed"]}
    assert reasons <= {"used_up", "invalid_format", "keypad_locked"} and "used_up" in reasons
    logs = in_bridgetest(lambda: list(AccessLog.objects.filter(lock_id__in=[lock.pk for lock in locks])))
    assert len(logs) == 40 and sum(log.success for log in logs) == 2 and {log.source for log in logs} == {"mqtt"}
