"""One open alert under concurrent evaluation; lock security events through device_event; isolation."""

import threading

import pytest
from django.db import close_old_connections, connection
from django_tenants.utils import schema_context

from portal.alerts import engine
from portal.alerts.models import Alert, AlertRule, RuleCondition, RuleState, SecurityEvent
from portal.alerts.rules import forget_indexes
from telemetry.models import Device, Sensor
from telemetry.signals import device_event


@pytest.fixture
def committed(django_db_blocker, clock):
    """A committed sensor and rule in acme (other threads' connections must see them), removed after."""
    with django_db_blocker.unblock(), schema_context("acme"):
        device = Device.objects.create(device_id="race-gw", last_seen=clock.now)
        sensor = Sensor.objects.create(device=device, key="t", type="temperature")
        rule = AlertRule.objects.create(name="Race", target_kind="sensor", target_id=sensor.pk)
        RuleCondition.objects.create(rule=rule, kind="above", threshold=10)
        forget_indexes()
        yield sensor
        Alert.objects.filter(sensor=sensor).delete()
        RuleState.objects.filter(rule=rule).delete()
        rule.delete()
        device.delete()
        forget_indexes()


def test_concurrent_evaluations_open_one_alert(committed, django_db_blocker, clock):
    barrier = threading.Barrier(4)
    errors = []

    def evaluate():
        try:
            with django_db_blocker.unblock(), schema_context("acme"):
                barrier.wait()
                engine.evaluate_readings({committed.pk: [(clock.now, 15.0)]}, {}, now=clock.now)
        except Exception as error:  # reported below: a thread's exception would vanish otherwise
            errors.append(error)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=evaluate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with django_db_blocker.unblock(), schema_context("acme"):
        assert Alert.objects.filter(sensor=committed, resolved_at__isnull=True).count() == 1
        assert RuleState.objects.get(rule__target_id=committed.pk).state == "firing"


def test_the_database_refuses_a_second_open_alert(sensor, rule_for, send):
    from django.db import IntegrityError, transaction

    rule_for(target_id=sensor.pk)
    send(sensor, 12.0)
    alert = Alert.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(
            rule=alert.rule, subject_key=alert.subject_key, severity="low", summary="dup", opened_at=alert.opened_at
        )


def lock_event(device, kind="lockout", resolved=False, at=None):
    from django.utils import timezone

    device_event.send(
        sender=None,
        device=device,
        kind=kind,
        severity="high",
        message="5 wrong PINs in 15 minutes: keypad disabled",
        occurred_at=at or timezone.now(),
        details={"attempts": 5},
        resolved=resolved,
    )


def test_a_lock_security_event_opens_an_alert_and_its_end_resolves_it(sensor, rule_for, clock):
    lock = Device.objects.create(device_id="lock-front", kind="lock", last_seen=clock.now)
    rule_for(
        target_kind="device",
        target_id=lock.pk,
        name="Lock security",
        conditions=[("security_event", {"event_kinds": "lockout,tamper"})],
    )
    lock_event(lock, kind="jammed")  # not a kind this rule watches
    assert not Alert.objects.exists() and SecurityEvent.objects.count() == 1
    lock_event(lock)
    alert = Alert.objects.get()
    assert alert.subject_key == f"device:{lock.pk}" and alert.trigger_values[0]["event"] == "lockout"
    clock.move(minutes=15)
    lock_event(lock, resolved=True)
    alert.refresh_from_db()
    assert not alert.is_active


def test_lock_battery_below_is_a_threshold_on_the_lock_battery_sensor(rule_for, send, clock, in_acme):
    lock = Device.objects.create(device_id="lock-back", kind="lock", last_seen=clock.now)
    battery = Sensor.objects.create(device=lock, key="battery", type="battery", unit="%", min_value=0, max_value=100)
    rule_for(
        target_kind="device", target_id=lock.pk, name="Lock battery", conditions=[("battery_below", {"threshold": 20})]
    )
    send(battery, 35)
    assert not Alert.objects.exists()
    clock.move(minutes=1)
    send(battery, 18)
    assert Alert.objects.get().trigger_values[0]["value"] == 18


def test_rules_and_alerts_of_one_tenant_never_act_in_another(sensor, rule_for, send):
    rule_for(target_kind="tenant", sensor_type="temperature")
    send(sensor, 12.0)
    with schema_context("globex"):
        assert not Alert.objects.exists() and not AlertRule.objects.exists()
