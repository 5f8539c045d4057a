"""Sensors, rules and a frozen clock for the alert engine's tests (all in acme's schema)."""

from datetime import timedelta

import pytest
from telemetry_builders import NOW

from portal.alerts.models import AlertRule, RuleCondition
from portal.alerts.rules import forget_indexes
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import Device, Sensor


@pytest.fixture(autouse=True)
def fresh_index():
    from portal.alerts.delivery import forget_addresses

    forget_indexes()  # a rolled-back test's rules must not linger in the process's index
    forget_addresses()  # nor a tenant address read in another test
    yield
    forget_indexes()


@pytest.fixture
def clock(time_machine):
    """The clock stopped at NOW; clock.move(minutes=3) moves it on."""

    class Clock:
        now = NOW

        def move(self, **delta):
            self.now = self.now + timedelta(**delta)
            time_machine.move_to(self.now, tick=False)
            return self.now

    time_machine.move_to(NOW, tick=False)
    return Clock()


@pytest.fixture
def sensor(in_acme):
    """acme-gw-01/supply_temp, declared range -20…40 °C."""
    device = Device.objects.create(device_id="chiller-gw", name="Chiller gateway", last_seen=NOW)
    Sensor.objects.create(device=device, key="power", type="power", unit="kW", min_value=0, max_value=400)
    return Sensor.objects.create(
        device=device, key="supply_temp", type="temperature", unit="°C", min_value=-20, max_value=40
    )


def make_rule(target_kind="sensor", target_id=None, conditions=(("above", {"threshold": 10}),), **fields) -> AlertRule:
    rule = AlertRule.objects.create(
        name=fields.pop("name", "Supply too warm"), target_kind=target_kind, target_id=target_id, **fields
    )
    for n, (kind, values) in enumerate(conditions):
        RuleCondition.objects.create(rule=rule, position=n, kind=kind, **values)
    return rule


@pytest.fixture
def rule_for():
    return make_rule


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """send(sensor, value, at=None, key=None): one reading through the ingest path, committed
    (on-commit callbacks run, so the engine evaluates as it would after a real batch)."""

    def send_reading(sensor, value, at=None, key=None):
        from django.utils import timezone

        reading = ReadingIn(sensor.device.device_id, key or sensor.key, at or timezone.now(), value)
        with django_capture_on_commit_callbacks(execute=True):
            return ingest([reading], source="mqtt")

    return send_reading
