"""What one evaluation run writes, and in how many statements: every change of a batch in order
(an alert may open and clear within one), a constant number of queries however many alerts open,
an open alert whose state was lost carried on rather than doubled, and the bridge's process kept
free of the engine."""

import os
import subprocess
import sys
from datetime import time, timedelta
from pathlib import Path

from django.db import connection
from django.test.utils import CaptureQueriesContext
from helpers import database_url_for_tests

from portal.alerts import engine, notify, rules
from portal.alerts.models import Alert, AlertEvent, Channel, Notification, RuleState, State
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import Sensor, online_window

ROOT = Path(__file__).resolve().parents[2]


def one_batch(readings, capture):
    """Several readings through the ingest path as one batch (one evaluation run)."""
    with capture(execute=True):
        return ingest([ReadingIn(s.device.device_id, s.key, at, value) for s, at, value in readings], source="mqtt")


def test_an_alert_that_opens_and_clears_within_one_batch_is_kept_and_the_next_one_opens(
    sensor, rule_for, clock, django_capture_on_commit_callbacks
):
    Channel.objects.create(name="on call", kind="email", email_addresses="oncall@acme.example")
    rule = rule_for(target_id=sensor.pk)
    at = [clock.now - timedelta(minutes=m) for m in (2, 1, 0)]
    one_batch([(sensor, at[0], 12.0), (sensor, at[1], 5.0), (sensor, at[2], 13.0)], django_capture_on_commit_callbacks)
    first, second = Alert.objects.order_by("opened_at")
    assert (first.opened_at, first.resolved_at, first.status) == (at[0], at[1], "resolved")
    assert (second.opened_at, second.resolved_at, second.status) == (at[2], None, "open")
    assert [e.kind for e in AlertEvent.objects.filter(alert=first)] == ["opened", "resolved"]
    assert RuleState.objects.get(rule=rule).alert == second
    events = Notification.objects.order_by("alert__opened_at", "event").values_list("alert_id", "event")
    assert list(events) == [(first.pk, "firing"), (first.pk, "resolved"), (second.pk, "firing")]


def test_a_reading_sent_again_with_another_value_is_judged_as_stored(sensor, rule_for, send, clock):
    rule_for(target_id=sensor.pk)
    send(sensor, 5.0)
    send(sensor, 12.0)  # the same instant again: the stored 5.0 stands (the ingest path keeps the first)
    assert not Alert.objects.exists()


def make_sensors(device, keys):
    return [Sensor.objects.create(device=device, key=f"t{i}", type="temperature") for i in keys]


def evaluation_queries(sensors, clock) -> int:
    rules.current_index()  # built beforehand: the index is not what is counted
    online_window()  # nor the tenant's settings, which the process caches (telemetry.ingest.current_rules)
    readings = {s.pk: [(clock.now, 15.0)] for s in sensors}
    with CaptureQueriesContext(connection) as queries:
        engine.evaluate_readings(readings, {}, now=clock.now)
    return len(queries)


def test_opening_many_alerts_costs_the_same_queries_as_opening_one(sensor, rule_for, clock):
    Channel.objects.create(name="on call", kind="email", email_addresses="oncall@acme.example")
    Channel.objects.create(name="hook", kind="webhook", webhook_url="https://hooks.example.com/x", webhook_secret="s")
    rule_for(target_kind="tenant", sensor_type="temperature")
    one, many = make_sensors(sensor.device, [0]), make_sensors(sensor.device, range(1, 21))
    assert evaluation_queries(one, clock) == evaluation_queries(many, clock)
    assert Alert.objects.count() == 21 and Notification.objects.count() == 42
    assert RuleState.objects.filter(state=State.FIRING).count() == 21


def test_a_batch_that_moves_nothing_reads_its_states_and_writes_nothing(sensor, rule_for, send, clock):
    rule_for(target_id=sensor.pk)
    send(sensor, 12.0)  # firing
    with CaptureQueriesContext(connection) as queries:
        assert engine.evaluate_readings({sensor.pk: [(clock.now, 12.5)]}, {}, now=clock.now) == 0
    sql = [q["sql"] for q in queries if not q["sql"].startswith("SET search_path")]  # django-tenants' own
    assert not [q for q in sql if q.startswith(("INSERT", "UPDATE", "DELETE"))], sql
    assert len(sql) <= 4, sql  # locks, states, and the transaction around them


def test_an_open_alert_whose_state_was_lost_is_carried_on_not_doubled(sensor, rule_for, send, clock):
    rule = rule_for(target_id=sensor.pk)
    send(sensor, 12.0)
    alert = Alert.objects.get()
    RuleState.objects.all().delete()  # e.g. a restore that kept alerts but not states
    clock.move(minutes=1)
    send(sensor, 13.0)
    assert Alert.objects.get() == alert and RuleState.objects.get(rule=rule).alert == alert
    clock.move(minutes=1)
    send(sensor, 5.0)
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_a_critical_alert_in_quiet_hours_does_not_join_the_group_held_until_morning(sensor, clock, in_acme):
    # NOW is 12:30 UTC: inside the channel's quiet hours, which end at 14:00
    channel = Channel.objects.create(
        name="on call", kind="email", email_addresses="a@acme.example", quiet_start=time(12), quiet_end=time(14)
    )
    held = Alert.objects.create(subject_key="sensor:1", severity="medium", summary="warm", opened_at=clock.now)
    critical = Alert.objects.create(subject_key="sensor:2", severity="critical", summary="hot", opened_at=clock.now)
    (waiting,) = notify.alert_changed(held, notify.FIRING)
    (urgent,) = notify.alert_changed(critical, notify.FIRING)
    assert waiting.due_at.hour == 14
    assert urgent.due_at == clock.now + timedelta(seconds=channel.group_wait_seconds)


def test_the_bridges_process_loads_neither_the_engine_nor_the_webhook_client():
    """The bridge imports the alert receivers (they enqueue evaluation after each batch it stores);
    what only the worker runs must not slow its start."""
    script = (
        "import sys, django; django.setup(); import bridge.service; "
        "loaded = [m for m in ('portal.alerts.engine', 'portal.alerts.delivery', 'urllib3') if m in sys.modules]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    env = os.environ | {"DATABASE_URL": database_url_for_tests(), "DJANGO_SETTINGS_MODULE": "portal.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env | {"DEBUG": "1"}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
