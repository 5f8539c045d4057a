"""Seed 003's JSON API for outlets, machines, devices, events and statistics, on its exact paths.

Built with the project's toolkit (portal.api.toolkit): members by API key, access token or session
(CSRF on writes); everyone reads, admins manage outlets and machines, operators bind devices.
Lists are seed 003's plain arrays, bounded by `limit`/`offset`. The filters are the pages'
FilterSets (portal.outlets.filters), so a list here and on its page hold the same rows.
"""

from datetime import date, datetime
from typing import Literal

from django.db.models import ProtectedError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Query
from ninja.responses import Status

from portal.api.endpoint import ApiError
from portal.api.toolkit import ErrorOut, Router, Schema, Window, apply_changes, audit, filtered, member, paginate, text
from portal.core.lists import stream_csv
from portal.outlets import queries, stats
from portal.outlets.filters import EVENT_COLUMNS, EventFilter, MachineFilter, OutletFilter
from portal.outlets.models import Machine, Outlet
from portal.tenancy.models import Role
from telemetry.models import Device, DeviceEvent, online_window

router = Router(tags=["Outlets"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}


def delete_or_conflict(request, instance, action: str, message: str):
    try:
        instance.delete()
    except ProtectedError:
        raise ApiError(409, "in_use", message) from None
    audit(request, action, instance, {"name": instance.name})


# --- outlets --------------------------------------------------------------------------------------


class OutletIn(Schema):
    name: text(150, min_length=1)
    address: text(300) = ""
    contact_person: text(150) = ""
    is_active: bool = True
    total_sva: int | None = Field(None, ge=0, le=100_000)
    average_intage_services: float | None = Field(None, ge=0, le=1_000_000, allow_inf_nan=False)
    number_of_machines: int | None = Field(None, ge=0, le=10_000)


class OutletOut(Schema):
    id: int
    name: str
    address: str
    contact_person: str
    is_active: bool
    total_sva: int | None
    average_intage_services: float | None
    number_of_machines: int | None
    machines_on_record: int = Field(
        description="Machines Fieldwatch has for the outlet (number_of_machines is the owner's figure)"
    )
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_machines_on_record(outlet):
        count = getattr(outlet, "machine_count", None)
        return outlet.machines.count() if count is None else count


class OutletQuery(Schema):
    is_active: bool | None = None
    q: text(100) | None = Field(None, description="Search in name, address and contact")


def unique_outlet_name(name: str, outlet_id: int | None = None) -> None:
    if Outlet.objects.filter(name__iexact=name).exclude(pk=outlet_id).exists():
        raise ApiError(409, "name_taken", f"An outlet named “{name}” exists already.", fields={"name": "taken"})


@router.get("/api/outlets/", response=list[OutletOut], auth=member(), summary="Outlets")
@paginate(Window)
def outlet_list(request, filters: Query[OutletQuery]):
    return filtered(OutletFilter, filters, Outlet.objects.with_counts().order_by("name"))


@router.post("/api/outlets/", response={201: OutletOut, **ERRORS}, auth=member(Role.ADMIN), summary="Create an outlet")
def outlet_create(request, payload: OutletIn):
    unique_outlet_name(payload.name)
    outlet = Outlet.objects.create(**payload.dict())
    audit(request, "outlet.created", outlet, payload.dict())
    return Status(201, Outlet.objects.with_counts().get(pk=outlet.pk))


@router.get("/api/outlets/{int:outlet_id}/", response={200: OutletOut, **ERRORS}, auth=member(), summary="An outlet")
def outlet_detail(request, outlet_id: int):
    return get_object_or_404(Outlet.objects.with_counts(), pk=outlet_id)


@router.put(
    "/api/outlets/{int:outlet_id}/",
    response={200: OutletOut, **ERRORS},
    auth=member(Role.ADMIN),
    summary="Update an outlet",
)
def outlet_update(request, outlet_id: int, payload: OutletIn):
    outlet = get_object_or_404(Outlet, pk=outlet_id)
    unique_outlet_name(payload.name, outlet.pk)
    changes = apply_changes(outlet, payload.dict())
    if changes:
        outlet.save()
        audit(request, "outlet.updated", outlet, changes)
    return Outlet.objects.with_counts().get(pk=outlet.pk)


@router.delete(
    "/api/outlets/{int:outlet_id}/", response={204: None, **ERRORS}, auth=member(Role.ADMIN), summary="Delete an outlet"
)
def outlet_delete(request, outlet_id: int):
    outlet = get_object_or_404(Outlet, pk=outlet_id)
    delete_or_conflict(
        request, outlet, "outlet.deleted", "The outlet has machines: delete or move them first, or set is_active false."
    )
    return Status(204, None)


# --- machines -------------------------------------------------------------------------------------


class MachineIn(Schema):
    outlet: int = Field(ge=1, le=2**31 - 1, description="The outlet's id")
    name: text(150, min_length=1)
    is_active: bool = True


class MachineOut(Schema):
    id: int
    outlet: int = Field(alias="outlet_id")
    outlet_name: str = Field(alias="outlet.name")
    name: str
    is_active: bool
    device_id: str | None = Field(description="The device bound now, if any")
    assigned_date: datetime | None = Field(description="Since when that device counts for this machine")
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_device_id(machine):
        binding = machine.binding
        return binding.device.device_id if binding else None

    @staticmethod
    def resolve_assigned_date(machine):
        binding = machine.binding
        return binding.assigned_date if binding else None


class MachineQuery(Schema):
    outlet_id: int | None = Field(None, ge=1, le=2**31 - 1)
    is_active: bool | None = None
    device_id: text(100) | None = Field(None, description="The machine's current device")
    q: text(100) | None = None


def machine_payload(payload: MachineIn) -> dict:
    outlet = Outlet.objects.filter(pk=payload.outlet).first()
    if outlet is None:
        raise ApiError(400, "unknown_outlet", f"There is no outlet {payload.outlet}.", fields={"outlet": "unknown"})
    return {"outlet": outlet, "name": payload.name, "is_active": payload.is_active}


def unique_machine_name(values: dict, machine_id: int | None = None) -> None:
    same = Machine.objects.filter(outlet=values["outlet"], name__iexact=values["name"]).exclude(pk=machine_id)
    if same.exists():
        raise ApiError(409, "name_taken", f"“{values['outlet']}” has a machine named “{values['name']}” already.")


def machine_out(machine_id: int):
    return Machine.objects.with_device().get(pk=machine_id)


@router.get("/api/machines/", response=list[MachineOut], auth=member(), summary="Machines")
@paginate(Window)
def machine_list(request, filters: Query[MachineQuery]):
    return filtered(MachineFilter, filters, Machine.objects.with_device().order_by("outlet__name", "name", "pk"))


@router.post(
    "/api/machines/", response={201: MachineOut, **ERRORS}, auth=member(Role.ADMIN), summary="Create a machine"
)
def machine_create(request, payload: MachineIn):
    values = machine_payload(payload)
    unique_machine_name(values)
    machine = Machine.objects.create(**values)
    audit(request, "machine.created", machine, {"outlet": machine.outlet_id, "name": machine.name})
    return Status(201, machine_out(machine.pk))


@router.get("/api/machines/{int:machine_id}/", response={200: MachineOut, **ERRORS}, auth=member(), summary="A machine")
def machine_detail(request, machine_id: int):
    return get_object_or_404(Machine.objects.with_device(), pk=machine_id)


@router.put(
    "/api/machines/{int:machine_id}/",
    response={200: MachineOut, **ERRORS},
    auth=member(Role.ADMIN),
    summary="Update a machine",
)
def machine_update(request, machine_id: int, payload: MachineIn):
    machine = get_object_or_404(Machine, pk=machine_id)
    values = machine_payload(payload)
    unique_machine_name(values, machine.pk)
    changes = apply_changes(machine, values)
    if changes:
        machine.save()
        audit(request, "machine.updated", machine, changes)
    return machine_out(machine.pk)


@router.delete(
    "/api/machines/{int:machine_id}/",
    response={204: None, **ERRORS},
    auth=member(Role.ADMIN),
    summary="Delete a machine",
)
def machine_delete(request, machine_id: int):
    machine = get_object_or_404(Machine, pk=machine_id)
    delete_or_conflict(
        request, machine, "machine.deleted", "The machine has device history (its usage): set is_active false instead."
    )
    return Status(204, None)


# --- devices and registering them as machines -------------------------------------------------------


class DeviceOut(Schema):
    device_id: str
    name: str
    mac: str | None
    firmware: str
    assigned: bool
    last_seen: datetime | None
    online: bool
    machine_id: int | None
    machine: str | None
    outlet: str | None
    wifi_connected: bool | None = None
    wifi_rssi: int | None = None
    rtc_available: bool | None = None
    sd_card_available: bool | None = None
    current_count_basic: int | None = None
    current_count_standard: int | None = None
    current_count_premium: int | None = None
    uptime_seconds: int | None = None
    device_timestamp: str | None = None
    mode: str | None = None


def device_rows(queryset) -> "RowMap":
    return RowMap(queryset, queries.device_row)


def counting_device(device_id: str) -> Device:
    device = queries.counting_devices().filter(device_id=device_id).first()
    if device is None:
        raise ApiError(404, "unknown_device", f"There is no device {device_id!r}.")
    return device


@router.get(
    "/api/devices/online/", response=list[DeviceOut], auth=member(), summary="Devices seen within the online window"
)
@paginate(Window)
def devices_online(request):
    return device_rows(queries.counting_devices().online())


@router.get("/api/devices/all/", response=list[DeviceOut], auth=member(), summary="All counting devices")
@paginate(Window)
def devices_all(request):
    return device_rows(queries.counting_devices())


class DevicesData(Schema):
    devices: list[DeviceOut]
    counts: dict[str, int]
    online_window_seconds: int


@router.get(
    "/api/devices-data/", response=DevicesData, auth=member(), summary="Devices and their counts, for a live view"
)
def devices_data(request, window: Query[Window.Input]):
    devices = queries.counting_devices()
    rows = [queries.device_row(device) for device in devices[window.offset : window.offset + window.limit]]
    counts = {
        "total": devices.count(),
        "online": devices.online().count(),
        "unregistered": queries.unregistered_devices().count(),
    }
    counts["offline"] = counts["total"] - counts["online"]
    return {"devices": rows, "counts": counts, "online_window_seconds": int(online_window().total_seconds())}


@router.get(
    "/api/machines/unregistered/", response=list[DeviceOut], auth=member(), summary="Devices bound to no machine"
)
@paginate(Window)
def machines_unregistered(request):
    return device_rows(queries.unregistered_devices())


class RegisterIn(Schema):
    device_id: text(100, min_length=1)
    outlet_id: int | None = Field(None, ge=1, le=2**31 - 1, description="With name: a new machine at this outlet")
    name: text(150) = ""
    machine_id: int | None = Field(None, ge=1, le=2**31 - 1, description="Or bind to this existing machine")


@router.post(
    "/api/machines/register/",
    response={201: MachineOut, **ERRORS},
    auth=member(Role.OPERATOR),
    summary="Register a device as a machine",
)
def machine_register(request, payload: RegisterIn):
    device = counting_device(payload.device_id)
    machine = get_object_or_404(Machine, pk=payload.machine_id) if payload.machine_id else None
    outlet = Outlet.objects.filter(pk=payload.outlet_id).first() if payload.outlet_id else None
    if payload.outlet_id and outlet is None:
        raise ApiError(
            400, "unknown_outlet", f"There is no outlet {payload.outlet_id}.", fields={"outlet_id": "unknown"}
        )
    try:
        done = queries.register_device(device, machine=machine, outlet=outlet, name=payload.name)
    except queries.RegistrationError as error:
        raise ApiError(400, "cannot_register", str(error)) from None
    audit(request, "machine.device_bound", done.machine, registration_changes(done))
    return Status(201, machine_out(done.machine.pk))


def registration_changes(done: queries.Registration) -> dict:
    return {
        "device": done.binding.device.device_id,
        "machine": str(done.machine),
        "new_machine": done.created_machine,
        "ended": [str(binding) for binding in done.ended],
    }


# --- events ---------------------------------------------------------------------------------------------


class EventOut(Schema):
    id: int
    device_id: str
    event_id: str
    event: str
    event_type: str
    treatment: str | None
    counter: int | None
    occurred_at: datetime
    received_at: datetime
    firmware: str
    source: str
    machine: str | None
    outlet: str | None


class EventQuery(Schema):
    device_id: text(100) | None = None
    days: int = Field(7, ge=1, le=3660)
    exclude_status: bool = False


def events_for(filters: EventQuery):
    data = {
        "device": filters.device_id,
        "days": filters.days,
        "exclude_status": "true" if filters.exclude_status else "",
    }
    return EventFilter({k: v for k, v in data.items() if v}, queryset=queries.events_with_machine()).qs


@router.get("/api/events/", response=list[EventOut], auth=member(), summary="Usage and status events, newest first")
@paginate(Window)
def events(request, filters: Query[EventQuery]):
    return RowMap(events_for(filters), queries.event_row)


class RowMap:
    """A queryset that the paginator slices, shaped row by row after the slice (one query)."""

    def __init__(self, queryset, shape):
        self.queryset, self.shape = queryset, shape

    def __getitem__(self, window):
        return [self.shape(row) for row in self.queryset[window]]

    def all(self):
        return self.queryset.all()

    def __len__(self):
        return self.queryset.count()


class Analytics(Schema):
    device_id: str | None
    days: int
    total: int
    by_treatment: dict[str, int]
    counter_total: int = Field(description="How far the counters went up (the billing value; resets counted from 0)")
    counter_by_treatment: dict[str, int]
    by_day: list[dict]


@router.get(
    "/api/events/analytics/", response={200: Analytics, **ERRORS}, auth=member(), summary="Usage per treatment and day"
)
def events_analytics(request, device_id: text(100) | None = None, days: int = Query(7, ge=1, le=3660)):
    device = counting_device(device_id) if device_id else None
    answer = run_stats(granularity="day", days=days, device_pk=device.pk if device else None)
    names = list(DeviceEvent.Treatment.values)
    by_day = [
        {"date": bucket.date().isoformat(), **{name: answer.current.values[name][n] for name in names}}
        for n, bucket in enumerate(answer.current.buckets)
    ]
    totals, counter = answer.current.totals, answer.current.totals_by_measure["counter"]
    return {
        "device_id": device_id,
        "days": days,
        "total": totals[stats.TOTAL],
        "by_treatment": {name: totals[name] for name in names},
        "counter_total": counter[stats.TOTAL],
        "counter_by_treatment": {name: counter[name] for name in names},
        "by_day": by_day,
    }


class Summary(Schema):
    device: DeviceOut
    mode: str | None
    counts: dict[str, int | None]
    events_today: int


@router.get(
    "/api/telemetry/summary/",
    response={200: Summary, **ERRORS},
    auth=member(),
    summary="A device's latest status and counts",
)
def telemetry_summary(request, device_id: text(100, min_length=1)):
    device = counting_device(device_id)
    row = queries.device_row(device)
    answer = run_stats(granularity="day", days=1, device_pk=device.pk)
    return {
        "device": row,
        "mode": row["mode"],
        "counts": {name: row[f"current_count_{name}"] for name in ("basic", "standard", "premium")},
        "events_today": answer.current.totals[stats.TOTAL],
    }


@router.get(
    "/api/telemetry/latest/",
    response={200: EventOut | None, **ERRORS},
    auth=member(),
    summary="A device's most recent event",
)
def telemetry_latest(request, device_id: text(100, min_length=1)):
    device = counting_device(device_id)
    latest = queries.events_with_machine(DeviceEvent.objects.filter(device=device)).order_by("-ts", "-id").first()
    return queries.event_row(latest) if latest else None


@router.get("/api/export/", auth=member(), summary="Events as CSV", response={200: None, **ERRORS})
def export(request, device_id: text(100) | None = None, days: int = Query(30, ge=1, le=3660)):
    rows = events_for(EventQuery(device_id=device_id, days=days))
    return stream_csv(rows, EVENT_COLUMNS, "events")


# --- statistics -------------------------------------------------------------------------------------------


class StatsParams(Schema):
    outlet_id: int | None = Field(None, ge=1, le=2**31 - 1)
    machine_id: int | None = Field(None, ge=1, le=2**31 - 1)
    device_id: text(100) | None = None
    treatment: Literal["BASIC", "STANDARD", "PREMIUM"] | None = None
    granularity: Literal["minute", "hour", "day", "month"] = "day"
    measure: Literal["events", "counter"] = Field(
        "events", description="events: treatment events; counter: how far the counters went up (resets counted from 0)"
    )
    start: datetime | date | None = Field(
        None, description="ISO date or time (local to the organisation without an offset)"
    )
    end: datetime | date | None = Field(None, description="ISO date (included) or time (excluded)")
    days: int | None = Field(None, ge=1, le=3660, description="The last N days (7 without start and end)")
    cumulative: bool = False
    ma: int = Field(0, ge=0, le=365, description="Moving average window in buckets (0: off)")
    compare: bool = False


def run_stats(**params) -> stats.Stats:
    try:
        return stats.compute(stats.build_query(**params))
    except stats.StatsError as error:
        raise ApiError(400, "invalid_range", str(error)) from None


def stats_for(params: StatsParams) -> stats.Stats:
    values = params.dict()
    device_id = values.pop("device_id")
    device = counting_device(device_id) if device_id else None
    return run_stats(**values, device_pk=device.pk if device else None)


class PeriodOut(Schema):
    start: str | None
    labels: list[str]
    buckets: list[str]
    series: dict[str, list[float | None]]
    totals: dict[str, int]
    totals_by_measure: dict[str, dict[str, int]]


class StatsOut(PeriodOut):
    granularity: str
    measure: str
    end: str
    time_zone: str
    cumulative: bool
    ma: int
    compare: bool
    previous: PeriodOut | None
    deltas: dict[str, float | None]


@router.get("/api/test/stats/", response={200: StatsOut, **ERRORS}, auth=member(), summary="Usage statistics")
def usage_stats(request, params: Query[StatsParams]):
    return stats.as_dict(stats_for(params))


@router.get(
    "/api/test/stats-options/",
    auth=member(),
    summary="Filter options, narrowed by outlet and machine",
    response={200: dict, **ERRORS},
)
def usage_stats_options(
    request,
    outlet_id: int | None = Query(None, ge=1, le=2**31 - 1),
    machine_id: int | None = Query(None, ge=1, le=2**31 - 1),
):
    return queries.stats_options(outlet_id, machine_id)


@router.get(
    "/api/test/stats-export.csv", auth=member(), summary="The statistics as CSV", response={200: None, **ERRORS}
)
def usage_stats_export(request, params: Query[StatsParams]):
    response = HttpResponse(stats.csv_text(stats_for(params)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="usage-stats.csv"'
    return response


# --- flushing events (owners) ----------------------------------------------------------------------------


class FlushIn(Schema):
    device_id: text(100, min_length=1)
    start: datetime | None = None
    end: datetime | None = None
    confirm: int | None = Field(
        None, ge=0, description="The count the first answer named: deletes only if it still holds"
    )


class FlushOut(Schema):
    success: bool
    deleted: int
    message: str


@router.post(
    "/api/flush/",
    response={200: FlushOut, **ERRORS},
    auth=member(Role.OWNER),
    summary="Delete a device's events (owners)",
)
def flush_events(request, payload: FlushIn):
    device = counting_device(payload.device_id)
    start, end = (
        stats.as_moment(value, stats.tenant_zone()) if value else None for value in (payload.start, payload.end)
    )
    count = queries.flush_scope(device, start, end).count()
    if payload.confirm is None or payload.confirm != count:
        raise ApiError(
            409,
            "confirmation_required",
            f"This deletes {count} events of {device.device_id}: send the same request with confirm={count}.",
            count=count,
        )
    try:
        deleted = queries.flush(device, start, end, payload.confirm)
    except queries.FlushMismatch as mismatch:
        raise ApiError(
            409, "count_changed", f"There are {mismatch.count} events now; confirm that count.", count=mismatch.count
        ) from None
    audit(request, "events.flushed", device, {"deleted": deleted, "start": str(start or ""), "end": str(end or "")})
    return {"success": True, "deleted": deleted, "message": f"Deleted {deleted} events of {device.device_id}."}
