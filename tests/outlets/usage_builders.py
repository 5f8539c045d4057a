"""Events, devices and machines for the usage tests, written as the device API writes them."""

import itertools
from datetime import datetime

from django.db import connection

from portal.api.device_views import store_event
from portal.outlets.models import Machine, MachineDevice, Outlet
from telemetry.models import Device

_numbers = itertools.count(1)


def counter_device(name: str | None = None) -> Device:
    n = next(_numbers)
    return Device.objects.create(
        device_id=name or f"esp32-{n:04}", mac=f"02:00:00:00:{n // 256:02X}:{n % 256:02X}", kind=Device.Kind.COUNTER
    )


def machine(outlet_name: str, name: str) -> Machine:
    outlet, _ = Outlet.objects.get_or_create(name=outlet_name)
    return Machine.objects.create(outlet=outlet, name=name)


def bound(outlet_name: str, name: str, at: datetime | None = None) -> tuple[Machine, Device]:
    target, device = machine(outlet_name, name), counter_device()
    MachineDevice.bind(target, device, at=at)
    return target, device


def event(device: Device, ts: datetime, treatment: str = "BASIC", counter: int | None = None) -> None:
    with connection.cursor() as cursor:
        store_event(
            cursor,
            device,
            f"{device.device_id}-{next(_numbers)}",
            event="treatment",
            treatment=treatment,
            counter=counter,
            ts=ts,
            firmware="",
            source="api",
        )


def status(device: Device, ts: datetime) -> None:
    with connection.cursor() as cursor:
        store_event(
            cursor,
            device,
            f"{device.device_id}-status-{next(_numbers)}",
            event="status",
            treatment="",
            counter=None,
            ts=ts,
            firmware="",
            source="legacy",
        )
