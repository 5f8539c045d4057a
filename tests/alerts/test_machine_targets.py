"""Machines as alert targets (portal/outlets/alerting.py): a rule on a machine watches the device
bound to it now, follows the machine when its device is replaced, and labels alerts with the
outlet and machine."""

from django.utils import timezone

from portal.alerts import alerting, engine
from portal.alerts.models import Alert, RuleState
from portal.alerts.targets import registry
from portal.outlets.models import Machine, MachineDevice, Outlet
from telemetry.models import Device, online_window


def counter(n: int) -> Device:
    return Device.objects.create(
        device_id=f"esp32-{n:03}", mac=f"02:00:00:00:01:{n:02X}", kind=Device.Kind.COUNTER, last_seen=timezone.now()
    )


def test_an_offline_rule_on_a_machine_follows_its_bound_device(in_acme, rule_for, clock):
    outlet = Outlet.objects.create(name="Riverside")
    washer = Machine.objects.create(outlet=outlet, name="Washer 1")
    first = counter(1)
    MachineDevice.bind(washer, first)
    assert registry()["machine"].objects() == [(washer.pk, "Riverside / Washer 1")]
    rule = rule_for(target_kind="machine", target_id=washer.pk, name="Washer silent", conditions=[("offline", {})])

    clock.move(seconds=online_window().total_seconds() + 1)
    engine.evaluate_now()
    alert = Alert.objects.get(rule=rule)
    assert alert.subject_key == f"device:{first.pk}" and alert.is_active
    assert alert.labels["outlet"] == "Riverside" and alert.labels["machine"] == "Washer 1"

    # the dead counter is replaced: the rule now watches the new one, which is online
    second = counter(2)
    Device.objects.filter(pk=second.pk).update(last_seen=clock.now)
    MachineDevice.bind(washer, second)
    engine.evaluate_now()
    assert not Alert.objects.filter(rule=rule, subject_key=f"device:{second.pk}").exists()
    assert [pair.subject.device_id for pair in engine.current_index().pairs if pair.rule.id == rule.pk] == [second.pk]

    # the old counter's alert does not stay open for ever: nothing evaluates it any more
    clock.move(minutes=3)
    Device.objects.filter(pk=second.pk).update(last_seen=clock.now)
    engine.evaluate_now()
    alert.refresh_from_db()
    assert not alert.is_active and "no longer covered" in alert.resolution
    assert alert.events.filter(kind="resolved").exists()
    assert not RuleState.objects.filter(rule=rule, subject_key=f"device:{first.pk}").exists()
    assert not Alert.objects.filter(rule=rule, resolved_at__isnull=True).exists()


def test_a_fresh_alert_of_a_subject_another_index_took_in_is_left_alone(in_acme, rule_for, clock):
    """An index a moment behind another process's must not close what that one just opened."""
    washer = Machine.objects.create(outlet=Outlet.objects.create(name="Quay"), name="Washer 2")
    device = counter(3)
    MachineDevice.bind(washer, device)
    rule = rule_for(target_kind="machine", target_id=washer.pk, conditions=[("offline", {})])
    clock.move(seconds=online_window().total_seconds() + 1)
    engine.evaluate_now()
    alert = Alert.objects.get(rule=rule)
    assert alerting.resolve_departed([], clock.now) == 0  # opened just now: left open
    alert.refresh_from_db()
    assert alert.is_active
    clock.move(minutes=3)
    assert alerting.resolve_departed([], clock.now) == 1


def test_a_machine_without_a_device_covers_nothing(in_acme, rule_for, clock):
    idle = Machine.objects.create(outlet=Outlet.objects.create(name="Dockside"), name="Dryer")
    rule_for(target_kind="machine", target_id=idle.pk, conditions=[("offline", {})])
    clock.move(hours=1)
    assert engine.evaluate_now() == 0 and not Alert.objects.exists()
