"""Binding rules: one active binding per machine and per device, held by the database; moving a
device ends its old binding in the same transaction and keeps the history."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.outlets.models import Machine, MachineDevice, Outlet
from telemetry.models import Device

pytestmark = pytest.mark.usefixtures("in_acme")


@pytest.fixture
def outlet():
    return Outlet.objects.create(name="Riverside")


def machine(outlet, name):
    return Machine.objects.create(outlet=outlet, name=name)


def device(n):
    return Device.objects.create(device_id=f"esp32-{n:03}", mac=f"02:00:00:00:00:{n:02X}", kind=Device.Kind.COUNTER)


def test_the_database_refuses_a_second_active_binding_of_a_device(outlet):
    a, b, counter = machine(outlet, "A"), machine(outlet, "B"), device(1)
    MachineDevice.objects.create(machine=a, device=counter)
    with pytest.raises(IntegrityError), transaction.atomic():
        MachineDevice.objects.create(machine=b, device=counter)


def test_the_database_refuses_a_second_active_binding_of_a_machine(outlet):
    a = machine(outlet, "A")
    MachineDevice.objects.create(machine=a, device=device(1))
    with pytest.raises(IntegrityError), transaction.atomic():
        MachineDevice.objects.create(machine=a, device=device(2))


def test_an_ended_binding_needs_its_end_after_its_start(outlet):
    a, counter = machine(outlet, "A"), device(1)
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        MachineDevice.objects.create(
            machine=a, device=counter, is_active=False, assigned_date=now, deactivated_date=now - timedelta(hours=1)
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        MachineDevice.objects.create(machine=a, device=counter, is_active=True, deactivated_date=now)


def test_moving_a_device_ends_its_old_binding_and_keeps_the_history(outlet):
    a, b, counter = machine(outlet, "A"), machine(outlet, "B"), device(1)
    start = timezone.now() - timedelta(days=3)
    first, _ = MachineDevice.bind(a, counter, at=start)
    moved = start + timedelta(days=1)
    second, ended = MachineDevice.bind(b, counter, at=moved)
    first.refresh_from_db()
    assert ended == [first] and not first.is_active and first.deactivated_date == moved
    assert second.is_active and second.machine == b and second.assigned_date == moved
    assert list(counter.machine_bindings.order_by("assigned_date").values_list("machine__name", flat=True)) == [
        "A",
        "B",
    ]


def test_binding_a_machine_that_has_a_device_replaces_that_device(outlet):
    a, old, new = machine(outlet, "A"), device(1), device(2)
    MachineDevice.bind(a, old)
    MachineDevice.bind(a, new)
    assert a.binding.device == new
    assert not MachineDevice.objects.get(device=old).is_active


def test_binding_again_to_the_same_machine_changes_nothing(outlet):
    a, counter = machine(outlet, "A"), device(1)
    first, _ = MachineDevice.bind(a, counter)
    again, ended = MachineDevice.bind(a, counter)
    assert again == first and ended == [] and MachineDevice.objects.count() == 1
