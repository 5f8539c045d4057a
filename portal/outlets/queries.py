"""Queries the outlet pages and seed 003's API both call: counting devices, their events (with the
machine each counted for), unregistered devices, registering one as a machine, flushing events.

Statistics live in portal.outlets.stats; the filters of each list in portal.outlets.filters.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from portal.outlets.models import BindingConflict, Machine, MachineDevice, Outlet
from portal.outlets.usage import mark_dirty
from telemetry.models import Device, DeviceEvent

STATUS_FIELDS = (
    "wifi_connected",
    "wifi_rssi",
    "rtc_available",
    "sd_card_available",
    "current_count_basic",
    "current_count_standard",
    "current_count_premium",
    "uptime_seconds",
    "device_timestamp",
    "mode",
)


def counting_devices() -> QuerySet:
    """The devices of the outlet fleet: counters, and any device that reported a usage event;
    with the machine they are bound to now."""
    active = MachineDevice.objects.filter(device=OuterRef("pk"), is_active=True)
    return (
        Device.objects.filter(Q(kind=Device.Kind.COUNTER) | Exists(DeviceEvent.objects.filter(device=OuterRef("pk"))))
        .annotate(
            machine_id=Subquery(active.values("machine_id")[:1]),
            machine_name=Subquery(active.values("machine__name")[:1]),
            outlet_name=Subquery(active.values("machine__outlet__name")[:1]),
        )
        .order_by("device_id")
    )


def unregistered_devices() -> QuerySet:
    """Seen but bound to no machine (seed 003: devices with data, not registered as machines)."""
    return counting_devices().filter(machine_id__isnull=True)


def device_row(device: Device) -> dict:
    """A device as seed 003's device lists show it: identity, last seen, online, status flags and
    counters, and where it counts now."""
    status = device.status if isinstance(device.status, dict) else {}
    return {
        "device_id": device.device_id,
        "name": device.name,
        "mac": device.mac,
        "firmware": device.firmware,
        "assigned": device.assigned,
        "last_seen": device.last_seen,
        "online": device.online,
        "machine_id": getattr(device, "machine_id", None),
        "machine": getattr(device, "machine_name", None),
        "outlet": getattr(device, "outlet_name", None),
        **{name: status.get(name) for name in STATUS_FIELDS},
    }


# --- events and the machine each counted for -------------------------------------------------------


def covering_bindings():
    """Bindings of the event's device that cover the event's time (a device's first binding also
    covers what came before it), as in portal.outlets.usage."""
    earlier = MachineDevice.objects.filter(device=OuterRef("device"), assigned_date__lt=OuterRef("assigned_date"))
    return (
        MachineDevice.objects.filter(device=OuterRef("device"))
        .filter(Q(assigned_date__lte=OuterRef("ts")) | ~Exists(earlier))
        .filter(Q(deactivated_date__isnull=True) | Q(deactivated_date__gt=OuterRef("ts")))
        .order_by("-assigned_date")
    )


def events_with_machine(queryset: QuerySet | None = None) -> QuerySet:
    queryset = DeviceEvent.objects.all() if queryset is None else queryset
    covering = covering_bindings()
    return queryset.select_related("device").annotate(
        machine_id=Subquery(covering.values("machine_id")[:1]),
        machine_name=Subquery(covering.values("machine__name")[:1]),
        outlet_name=Subquery(covering.values("machine__outlet__name")[:1]),
    )


def counted_for(queryset: QuerySet, machines: QuerySet) -> QuerySet:
    """Events that counted for one of `machines` (at their time)."""
    return queryset.filter(Exists(covering_bindings().filter(machine__in=machines)))


def event_row(event: DeviceEvent) -> dict:
    return {
        "id": event.pk,
        "device_id": event.device.device_id,
        "event_id": event.event_id,
        "event": event.event,
        "event_type": event.treatment or "status",  # seed 003's legacy name for it
        "treatment": event.treatment or None,
        "counter": event.counter,
        "occurred_at": event.ts,
        "received_at": event.received_at,
        "firmware": event.firmware,
        "source": event.source,
        "machine": getattr(event, "machine_name", None),
        "outlet": getattr(event, "outlet_name", None),
    }


# --- registering a device as a machine -------------------------------------------------------------


class RegistrationError(ValueError):
    pass


@dataclass
class Registration:
    machine: Machine
    binding: MachineDevice
    ended: list[MachineDevice]
    created_machine: bool


def register_device(device: Device, *, machine: Machine | None = None, outlet: Outlet | None = None, name: str = ""):
    """Seed 003's "register device as machine" in one step: bind `device` to an existing machine,
    or to a new machine `name` at `outlet`; the device counts as assigned from then on."""
    with transaction.atomic():
        created = machine is None
        if created:
            if outlet is None or not name:
                raise RegistrationError("Choose a machine, or an outlet and a name for a new one.")
            if Machine.objects.filter(outlet=outlet, name__iexact=name).exists():
                raise RegistrationError(f"“{outlet}” has a machine named “{name}” already: bind to it instead.")
            machine = Machine.objects.create(outlet=outlet, name=name)
        try:
            binding, ended = MachineDevice.bind(machine, device)
        except BindingConflict:
            raise RegistrationError("Someone bound this machine or device at the same moment; try again.") from None
        if device.assigned_at is None:
            Device.objects.filter(pk=device.pk).update(assigned_at=binding.assigned_date)
            device.assigned_at = binding.assigned_date
    return Registration(machine, binding, ended, created)


# --- flushing events (owners, with a confirmation naming the count) --------------------------------


def flush_scope(device: Device, start: datetime | None = None, end: datetime | None = None) -> QuerySet:
    events = DeviceEvent.objects.filter(device=device)
    if start is not None:
        events = events.filter(ts__gte=start)
    if end is not None:
        events = events.filter(ts__lt=end)
    return events


def flush(device: Device, start: datetime | None, end: datetime | None, expected: int) -> int:
    """Delete the device's events in [start, end) if they are still the `expected` count (what the
    person confirmed); their usage buckets are recomputed by the next rollup. Returns the count
    deleted; FlushMismatch when the count moved in between (nothing is deleted then)."""
    with transaction.atomic():
        scope = flush_scope(device, start, end)
        count = scope.count()
        if count != expected:
            raise FlushMismatch(count)
        mark_dirty(device.pk, start, end)
        scope.delete()
    return count


class FlushMismatch(Exception):
    """The events to flush are not the count that was confirmed (some arrived or went meanwhile)."""

    def __init__(self, count: int):
        super().__init__(count)
        self.count = count


# --- the statistics' filter options, narrowing each other -------------------------------------------


def stats_options(outlet_id: int | None = None, machine_id: int | None = None) -> dict:
    """Outlets; the machines of the chosen outlet (all without one); the devices that counted for
    the chosen machine, or the outlet's machines, or all counting devices."""
    machines = Machine.objects.select_related("outlet").order_by("outlet__name", "name")
    if outlet_id:
        machines = machines.filter(outlet_id=outlet_id)
    devices = counting_devices()
    if machine_id:
        devices = devices.filter(machine_bindings__machine_id=machine_id).distinct()
    elif outlet_id:
        devices = devices.filter(machine_bindings__machine__outlet_id=outlet_id).distinct()
    return {
        "outlets": [{"id": o.pk, "name": o.name} for o in Outlet.objects.order_by("name")],
        "machines": [{"id": m.pk, "name": m.name, "outlet_id": m.outlet_id, "outlet": m.outlet.name} for m in machines],
        "devices": [{"id": d.pk, "device_id": d.device_id, "name": d.name} for d in devices],
        "treatments": list(DeviceEvent.Treatment.values),
    }


def usage_by_outlet(start: datetime, end: datetime, limit: int) -> list[tuple[int, int]]:
    """(outlet id, events) in [start, end), busiest first: raw events attributed at their time."""
    from django.db import connection

    from portal.outlets.usage import EVENTS, INTERVALS, attributed

    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {INTERVALS.strip()} SELECT m.outlet_id, count(*) FROM {EVENTS} e {attributed('e')} "
            "JOIN outlets_machine m ON m.id = i.machine_id "
            "WHERE e.ts >= %s AND e.ts < %s AND e.treatment <> '' GROUP BY 1 ORDER BY 2 DESC LIMIT %s",
            [start, end, limit],
        )
        return cursor.fetchall()
