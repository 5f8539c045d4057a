"""The rule state machine after ingest batches: pending, firing, recovering, hysteresis, no data, error."""

from portal.alerts import engine
from portal.alerts.models import Alert, AlertRule, RuleState, State


def state_of(rule):
    found = RuleState.objects.filter(rule=rule).first()
    return found.state if found else State.NORMAL


def test_a_threshold_fires_only_after_holding_for_its_duration(sensor, rule_for, send, clock):
    rule = rule_for(target_id=sensor.pk, for_seconds=120)
    send(sensor, 12.0)
    assert state_of(rule) == State.PENDING and not Alert.objects.exists()
    clock.move(minutes=1)
    send(sensor, 12.5)
    assert state_of(rule) == State.PENDING
    clock.move(minutes=1)
    send(sensor, 11.0)
    alert = Alert.objects.get()
    assert state_of(rule) == State.FIRING and alert.status == "open"
    assert alert.trigger_values[0]["value"] == 11.0 and alert.opened_at == clock.now
    assert alert.subject_key == f"sensor:{sensor.pk}" and alert.severity == rule.severity


def test_a_short_excursion_never_fires(sensor, rule_for, send, clock):
    rule = rule_for(target_id=sensor.pk, for_seconds=120)
    send(sensor, 12.0)
    clock.move(minutes=1)
    send(sensor, 9.0)
    clock.move(minutes=2)
    send(sensor, 9.5)
    assert state_of(rule) == State.NORMAL and not Alert.objects.exists()


def test_it_resolves_after_the_value_stays_clear_for_keep_firing_for(sensor, rule_for, send, clock):
    rule = rule_for(target_id=sensor.pk, keep_firing_for_seconds=300)
    send(sensor, 12.0)
    assert state_of(rule) == State.FIRING
    clock.move(minutes=1)
    send(sensor, 8.0)
    assert state_of(rule) == State.RECOVERING and Alert.objects.get().is_active
    clock.move(minutes=2)
    send(sensor, 12.0)  # back above: firing again, still the same alert
    assert state_of(rule) == State.FIRING and Alert.objects.count() == 1
    clock.move(minutes=1)
    send(sensor, 8.0)
    clock.move(minutes=5)
    send(sensor, 8.1)
    alert = Alert.objects.get()
    assert state_of(rule) == State.NORMAL and alert.status == "resolved" and alert.resolved_at == clock.now
    assert "Cleared" in alert.resolution and alert.resolved_by_email == ""


def test_hysteresis_keeps_a_noisy_signal_from_flapping(sensor, rule_for, send, clock):
    rule_for(target_id=sensor.pk, conditions=[("above", {"threshold": 10, "hysteresis": 1.0})])
    for value in [10.2, 9.8, 10.3, 9.4, 10.1, 9.6, 10.4, 9.2]:  # noise of ±0.5 around the threshold
        send(sensor, value)
        clock.move(seconds=30)
    alert = Alert.objects.get()
    assert alert.is_active, "dips above 9.0 (threshold minus hysteresis) must not resolve it"
    send(sensor, 8.9)
    alert.refresh_from_db()
    assert not alert.is_active and Alert.objects.count() == 1


def test_without_hysteresis_the_same_signal_flaps(sensor, rule_for, send, clock):
    rule_for(target_id=sensor.pk)
    for value in [10.2, 9.8, 10.3, 9.4]:
        send(sensor, value)
        clock.move(seconds=30)
    assert Alert.objects.count() == 2  # the guard above is what prevents this


def test_no_data_for_n_minutes_fires_from_the_periodic_evaluation(sensor, rule_for, send, clock):
    rule = rule_for(target_id=sensor.pk, conditions=[("no_data", {"minutes": 15})])
    send(sensor, 7.0)
    clock.move(minutes=10)
    engine.evaluate_now()
    assert state_of(rule) == State.NORMAL
    clock.move(minutes=6)
    engine.evaluate_now()
    alert = Alert.objects.get()
    assert alert.is_active and state_of(rule) == State.FIRING
    send(sensor, 7.1)  # data is back: the condition clears
    alert.refresh_from_db()
    assert not alert.is_active


def test_value_rules_enter_no_data_when_the_sensor_falls_silent(sensor, rule_for, send, clock):
    rule = rule_for(target_id=sensor.pk)
    send(sensor, 7.0)
    clock.move(minutes=6)  # beyond the online window (5 minutes by default)
    engine.evaluate_now()
    assert state_of(rule) == State.NODATA and not Alert.objects.exists()


def test_no_data_can_be_treated_as_firing(sensor, rule_for, send, clock):
    rule_for(target_id=sensor.pk, no_data_handling=AlertRule.NoData.ALERTING)
    send(sensor, 7.0)
    clock.move(minutes=6)
    engine.evaluate_now()
    assert Alert.objects.get().is_active


def test_a_device_offline_is_exact_against_last_seen(sensor, rule_for, send, clock):
    from telemetry.models import Device

    device = sensor.device
    rule = rule_for(target_kind="device", target_id=device.pk, conditions=[("offline", {})])
    send(sensor, 7.0)
    clock.move(minutes=4, seconds=59)
    engine.evaluate_now()
    assert state_of(rule) == State.NORMAL
    clock.move(seconds=2)
    engine.evaluate_now()
    alert = Alert.objects.get()
    assert alert.subject_key == f"device:{device.pk}" and alert.is_active
    Device.objects.filter(pk=device.pk).update(last_seen=clock.now)  # it reports again
    engine.evaluate_now()
    alert.refresh_from_db()
    assert not alert.is_active


def test_an_impossible_value_puts_the_rule_in_error_and_raises_a_data_quality_alert(sensor, rule_for, send, clock):
    rule = rule_for(target_id=sensor.pk)
    send(sensor, 7.0)
    clock.move(minutes=1)
    result = send(sensor, 90.0)  # the 90 °C supply water: beyond the sensor's 40 °C maximum
    assert result.rejected == 1
    assert state_of(rule) == State.ERROR
    alert = Alert.objects.get(kind=Alert.Kind.DATA_QUALITY)
    assert alert.rule is None and alert.trigger_values[0]["value"] == "90.0"
    assert alert.trigger_values[0]["reason"] == "out_of_range"
    clock.move(minutes=1)
    engine.evaluate_now()
    assert state_of(rule) == State.ERROR, "the periodic run must not clear the error without a new valid reading"
    send(sensor, 7.2)
    assert state_of(rule) == State.NORMAL


def test_an_and_rule_reads_a_sibling_sensor_of_the_same_device(sensor, rule_for, send, clock):
    rule_for(
        target_id=sensor.pk,
        conditions=[("above", {"threshold": 10}), ("above", {"threshold": 100, "sensor_key": "power"})],
    )
    send(sensor, 80.0, key="power")
    send(sensor, 12.0)
    assert not Alert.objects.exists()
    clock.move(seconds=30)
    send(sensor, 120.0, key="power")
    assert Alert.objects.get().is_active


def test_an_or_rule_fires_on_either(sensor, rule_for, send, clock):
    rule_for(target_id=sensor.pk, combine="any", conditions=[("above", {"threshold": 10}), ("below", {"threshold": 2})])
    send(sensor, 1.0)
    assert Alert.objects.get().is_active


def test_a_type_rule_opens_one_alert_per_sensor(sensor, rule_for, send, clock):
    from telemetry.models import Sensor

    other = Sensor.objects.create(
        device=sensor.device, key="return_temp", type="temperature", min_value=-20, max_value=40
    )
    rule_for(target_kind="tenant", sensor_type="temperature")
    send(sensor, 12.0)
    send(other, 13.0)
    assert sorted(Alert.objects.values_list("subject_key", flat=True)) == sorted(
        [f"sensor:{sensor.pk}", f"sensor:{other.pk}"]
    )


def test_late_readings_do_not_move_live_states(sensor, rule_for, send, clock):
    from datetime import timedelta

    rule = rule_for(target_id=sensor.pk)
    send(sensor, 30.0, at=clock.now - timedelta(hours=3))  # a backfill of old data
    assert state_of(rule) == State.NORMAL and not Alert.objects.exists()
