"""Devices and readings for the device pages' tests, made through the one ingest path."""

import pytest
from telemetry_builders import NOW, reading

from telemetry.ingest import ingest
from telemetry.models import Device


@pytest.fixture
def frozen(time_machine):
    """The clock stopped at the builders' NOW, so "online" (seen within the online window) holds still."""
    time_machine.move_to(NOW, tick=False)
    return NOW


def build_device(device_id, *, sensors=("temp",), minutes=3, value=20.0, unit="°C", **fields) -> Device:
    """A device that reported one reading per sensor `minutes` before NOW (within the 5-minute online window), with `fields` set."""
    ingest(
        [reading(device=device_id, sensor=key, value=value, minutes=minutes, unit=unit) for key in sensors],
        source="mqtt",
        now=NOW,
    )
    device = Device.objects.get(device_id=device_id)
    if fields:
        for name, value in fields.items():
            setattr(device, name, value)
        device.save(update_fields=list(fields))
    return device


@pytest.fixture
def make_device(in_acme):
    """make_device("gw-1", name="Roof", firmware="1.2"): a device in acme's schema."""
    return build_device
