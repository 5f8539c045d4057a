"""The outlet pages: outlets, machines, counting devices (unregistered ones registered in one
step), events, usage statistics, flushing events. Lists use portal.core.lists; statistics come
from portal.outlets.stats (the same as seed 003's API); live parts use portal.core.live."""

import json
from html import escape

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Max
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from portal.audit.log import record
from portal.core import live
from portal.core.lists import PAGE_SIZE, Column, list_response
from portal.outlets import queries, stats
from portal.outlets.filters import EVENT_COLUMNS, CountingDeviceFilter, EventFilter, MachineFilter, OutletFilter
from portal.outlets.forms import FlushForm, RegisterForm, StatsForm
from portal.outlets.models import Machine, MachineDevice, Outlet
from portal.tenancy.access import role_required
from portal.tenancy.models import Role
from telemetry.models import online_window

OUTLET_COLUMNS = [
    Column("name", "name"),
    Column("address", "address"),
    Column("contact_person", "contact_person"),
    Column("is_active", "is_active"),
    Column("machines_on_record", "machine_count"),
    Column("number_of_machines", "number_of_machines"),
    Column("total_sva", "total_sva"),
    Column("average_intage_services", "average_intage_services"),
]
MACHINE_COLUMNS = [
    Column("outlet", "outlet.name"),
    Column("name", "name"),
    Column("is_active", "is_active"),
    Column("device_id", lambda m: m.binding.device.device_id if m.binding else ""),
    Column("bound_since", lambda m: m.binding.assigned_date if m.binding else ""),
]
DEVICE_COLUMNS = [
    Column(name, (lambda field: lambda device: queries.device_row(device)[field])(name))
    for name in ("device_id", "mac", "firmware", "last_seen", "online", "machine", "outlet", *queries.STATUS_FIELDS)
]


def today_and_month(**filters) -> dict[int | None, dict[str, int]]:
    """Per machine (those the filters keep), events and counter increase today and this month in
    the tenant's zone: one statement whatever the number of machines."""
    zone = stats.tenant_zone()
    now = timezone.now()
    today = stats.floor_bucket(now, "day", zone)
    month = stats.floor_bucket(now, "month", zone)
    query = stats.StatsQuery("day", month, stats.step(today, "day", zone), zone, **filters)
    usage: dict[int | None, dict[str, int]] = {}
    for (bucket, machine_id), (events, counter) in stats.per_machine(query).items():
        figures = usage.setdefault(machine_id, dict.fromkeys(USAGE_FIGURES, 0))
        figures["month"] += events
        figures["counter_month"] += counter
        if bucket >= today:
            figures["today"] += events
            figures["counter_today"] += counter
    return usage


USAGE_FIGURES = ("today", "month", "counter_today", "counter_month")


def summed(usage: dict[int | None, dict[str, int]]) -> dict[str, int]:
    return {name: sum(figures[name] for figures in usage.values()) for name in USAGE_FIGURES}


# --- outlets ---------------------------------------------------------------------------------------


def outlet_list(request):
    filterset = OutletFilter(request.GET, queryset=Outlet.objects.with_counts().order_by("name"))
    return list_response(request, filterset, "outlets/outlets.html", OUTLET_COLUMNS, "outlets")


def newest_report(outlet: Outlet):
    """When a device of the outlet last reported (the live part's cursor: devices touch last_seen
    whenever they post, so nothing newer means nothing changed)."""
    devices = MachineDevice.objects.filter(machine__outlet=outlet, is_active=True)
    return devices.aggregate(newest=Max("device__last_seen"))["newest"]


def outlet_context(outlet: Outlet) -> dict:
    machines = list(Machine.objects.with_device().filter(outlet=outlet).order_by("name"))
    usage = today_and_month(outlet_id=outlet.pk)
    for machine in machines:
        machine.usage = usage.get(machine.pk, dict.fromkeys(USAGE_FIGURES, 0))
    return {
        "outlet": outlet,
        "machines": machines,
        "usage": summed(usage),
        "online_seconds": online_window().total_seconds(),
        "cursor": live.epoch(newest_report(outlet) or timezone.now()),
    }


def outlet_detail(request, pk):
    outlet = get_object_or_404(Outlet.objects.with_counts(), pk=pk)
    return render(request, "outlets/outlet_detail.html", outlet_context(outlet))


def outlet_live(request, pk):
    """The outlet page's live part (usage today and this month, machines' online state)."""
    outlet = get_object_or_404(Outlet.objects.with_counts(), pk=pk)
    try:
        since = live.since(request)
    except live.BadCursor as error:
        return live.bad_cursor(error)
    newest = newest_report(outlet)
    if since is not None and (newest is None or newest <= since):
        return live.nothing_new()
    return live.render(request, "outlets/outlet_detail.html#live", outlet_context(outlet))


# --- machines ----------------------------------------------------------------------------------------


def machine_list(request):
    filterset = MachineFilter(
        request.GET, queryset=Machine.objects.with_device().order_by("outlet__name", "name", "pk")
    )
    return list_response(request, filterset, "outlets/machines.html", MACHINE_COLUMNS, "machines")


def machine_context(machine: Machine) -> dict:
    """What the machine page shows and its live part refreshes: the device, usage, recent events."""
    events = queries.counted_for(queries.events_with_machine(), Machine.objects.filter(pk=machine.pk))
    device = machine.binding.device if machine.binding else None
    return {
        "machine": machine,
        "events": events.select_related("device").order_by("-ts", "-id")[:20],
        "usage": summed(today_and_month(machine_id=machine.pk)),
        "online_seconds": online_window().total_seconds(),
        # the bound device touches last_seen whenever it posts: nothing newer, nothing changed
        "cursor": live.epoch((device.last_seen if device else None) or timezone.now()),
    }


def machine_detail(request, pk):
    machine = get_object_or_404(Machine.objects.with_device(), pk=pk)
    answer = stats.compute(stats.build_query("day", days=30, machine_id=machine.pk))
    context = machine_context(machine) | {
        "bindings": machine.bindings.select_related("device").order_by("-assigned_date", "-id"),
        "chart": chart_data(answer),
    }
    return render(request, "outlets/machine_detail.html", context)


@require_GET
def machine_live(request, pk):
    """The machine page's live part: its device's state, usage today and this month, recent
    events (out-of-band swaps) and the chart's last two days (chart.js merges them by time)."""
    try:
        since = live.since(request)
    except live.BadCursor as error:
        return live.bad_cursor(error)
    machine = get_object_or_404(Machine.objects.with_device(), pk=pk)
    device = machine.binding.device if machine.binding else None
    if since is not None and (device is None or device.last_seen is None or device.last_seen <= since):
        return live.nothing_new()
    recent = chart_data(stats.compute(stats.build_query("day", days=2, machine_id=machine.pk)))
    context = machine_context(machine) | {
        "oob": True,
        "chart_updates": {"machine-usage": {"x": recent["x"], "series": recent["series"]}},
    }
    return live.render(request, "outlets/machine_detail.html#live", context)


# --- counting devices --------------------------------------------------------------------------------


def device_filterset(request) -> CountingDeviceFilter:
    return CountingDeviceFilter(request.GET, queryset=queries.counting_devices())


def device_list_cursor() -> str:
    """The device lists' live cursor: devices touch last_seen whenever they post or report status."""
    newest = queries.counting_devices().order_by().aggregate(newest=Max("last_seen"))["newest"]
    return live.epoch(newest or timezone.now())


def device_live_context(request, filterset) -> dict:
    query = request.GET.copy()
    for name in ("since", "n", "export"):
        query.pop(name, None)
    window = online_window().total_seconds()
    return {
        "online_seconds": window,
        "online_minutes": round(window / 60),
        "cursor": device_list_cursor(),
        "live_url": f"{reverse('outlets-device-list-live')}?{query.urlencode()}",
        "list_url": f"{reverse('outlets-device-list')}?{query.urlencode()}",
        "total": filterset.qs.count(),
    }


def device_list(request):
    """All counting devices, or those online (?status=online) or unregistered (?status=unregistered)."""
    filterset = device_filterset(request)
    headings = {"online": "Devices online", "offline": "Devices offline", "unregistered": "Unregistered devices"}
    context = {"register_form": RegisterForm(), "heading": headings.get(request.GET.get("status"), "Counting devices")}
    if request.GET.get("export") != "csv":
        context |= device_live_context(request, filterset)
    return list_response(request, filterset, "outlets/devices.html", DEVICE_COLUMNS, "counting-devices", context)


@require_GET
def device_list_live(request):
    """The device lists' live part: 204 until a device reports; then the shown rows' last seen,
    Wi-Fi/RTC/SD, counters and firmware swapped out of band (never the row, so a registration
    being typed stays), and a note when other devices now match the filters."""
    try:
        since = live.since(request)
    except live.BadCursor as error:
        return live.bad_cursor(error)
    newest = queries.counting_devices().order_by().aggregate(newest=Max("last_seen"))["newest"]
    if since is not None and (newest is None or newest <= since):
        return live.nothing_new()
    filterset = device_filterset(request)
    if not filterset.is_valid():
        return live.stop()  # the page showed these filters' errors; polling cannot fix them
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = device_live_context(request, filterset) | {"rows": page.object_list, "oob": True}
    context["changed"] = request.GET.get("n", "")[:12] != str(context["total"])
    return live.render(request, "outlets/devices.html#live", context)


def back_to(request) -> str:
    """Where a refused registration returns: the list it came from, if that is one of ours."""
    target = request.POST.get("next", "")
    if target.startswith("/") and url_has_allowed_host_and_scheme(target, {request.get_host()}):
        return target
    return reverse("outlets-device-list") + "?status=unregistered"


@require_POST
@role_required(Role.OPERATOR)
def device_register(request, pk):
    """Register a device as a new machine, or bind it to an existing one, in one step."""
    device = get_object_or_404(queries.counting_devices(), pk=pk)
    form = RegisterForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect(back_to(request))
    try:
        done = queries.register_device(device, **form.registration())
    except queries.RegistrationError as error:
        messages.error(request, str(error))
        return redirect(back_to(request))
    record(
        request, "machine.device_bound", done.machine, {"device": device.device_id, "new_machine": done.created_machine}
    )
    messages.success(request, f"{device.device_id} now counts for {done.machine}.")
    return redirect("outlets-machine-detail", pk=done.machine.pk)


@require_POST
@role_required(Role.OPERATOR)
def binding_end(request, pk):
    binding = get_object_or_404(MachineDevice.objects.select_related("machine", "device"), pk=pk, is_active=True)
    binding.unbind()
    record(request, "machine.device_unbound", binding.machine, {"device": binding.device.device_id})
    messages.success(request, f"{binding.device.device_id} no longer counts for {binding.machine}.")
    return redirect("outlets-machine-detail", pk=binding.machine_id)


# --- events --------------------------------------------------------------------------------------------


def event_list(request):
    data = request.GET.copy()
    if not any(key in data for key in ("days", "start", "end")):
        data["days"] = "7"  # seed 003's default
    filterset = EventFilter(data, queryset=queries.events_with_machine())
    return list_response(request, filterset, "outlets/events.html", EVENT_COLUMNS, "events")


# --- usage statistics ----------------------------------------------------------------------------------


BUCKET_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "month": 2592000}  # a month: uPlot's 30 days


def chart_data(answer: stats.Stats) -> dict:
    series = [{"label": name.title(), "values": answer.current.values[name]} for name in answer.query.series_names]
    if answer.previous:
        series += [
            {"label": f"{name.title()} (previous)", "values": answer.previous.values[name]}
            for name in answer.query.series_names
        ]
    return {
        "x": [int(bucket.timestamp()) for bucket in answer.current.buckets],
        "series": series,
        "unit": "",
        "gap": None,
        # ticks no finer than a bucket (chart.js): a day chart has no 12:00 ticks
        "step": BUCKET_SECONDS[answer.query.granularity],
        "window": None,
        "tz": answer.query.zone.key,
        "precision": 2 if answer.query.ma > 1 else 0,
    }


def shown_context(answer: stats.Stats) -> dict:
    """The answer, the CSV's rows, and the same rows as the page's table shows them (without the
    ISO start column, "–" for an empty moving-average bucket). The table's cells are joined here,
    escaped, in one pass: a year by day compared is 3,000 cells, which the template language
    would localize and escape one variable at a time (most of the page's time)."""
    rows = stats.table_rows(answer)
    shown = [["–" if cell is None else str(cell) for n, cell in enumerate(row) if n != 1] for row in rows]
    head = "".join(f"<th>{escape(cell)}</th>" for cell in shown[0])
    body = "\n".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in shown[1:])
    return {
        "answer": answer,
        "rows": rows,
        "shown": shown,
        "table_head": mark_safe(head),  # noqa: S308 (every cell escaped above)
        "table_body": mark_safe(body),  # noqa: S308
        "chart": json.dumps(chart_data(answer)),
        "measure_label": stats.MEASURES[answer.query.measure],
    }


def chosen(form: StatsForm, *names: str) -> list[int | None]:
    """The ids the person chose, where valid (the options narrow by them)."""
    cleaned = getattr(form, "cleaned_data", {})
    return [cleaned[name].pk if cleaned.get(name) else None for name in names]


def usage_stats(request):
    """The usage page: chart and table by htmx (#stats), CSV (?export=csv) of exactly the table."""
    form = StatsForm(request.GET or None)
    context = {"form": form, "answer": None, "error": ""}
    if form.is_valid():
        try:
            answer = stats.compute(stats.build_query(**form.query_options()))
        except stats.StatsError as error:
            form.add_error(None, str(error))
        else:
            if request.GET.get("export") == "csv":
                response = HttpResponse(stats.csv_text(answer), content_type="text/csv; charset=utf-8")
                response["Content-Disposition"] = 'attachment; filename="usage.csv"'
                return response
            context.update(shown_context(answer))
    elif not request.GET:
        context.update(shown_context(stats.compute(stats.build_query())))
    context["options"] = queries.stats_options(*chosen(form, "outlet", "machine"))
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, "outlets/usage.html#stats" if partial else "outlets/usage.html", context)
    response["Vary"] = "HX-Request"
    if form.is_bound and not form.is_valid():
        response.status_code = 400
    return response


# --- flushing events (owners) --------------------------------------------------------------------------


@role_required(Role.OWNER)
def flush(request):
    """Step 1 (GET): choose a device and a range. Step 2 (POST): see how many events that is.
    Step 3 (POST with confirm=<that count>): delete them, audited."""
    form = FlushForm(request.POST or request.GET or None)
    count = None
    if request.method == "POST" and form.is_valid():
        device, start, end = form.cleaned_data["device"], form.cleaned_data["start"], form.cleaned_data["end"]
        count = queries.flush_scope(device, start, end).count()
        confirm = form.cleaned_data.get("confirm")
        if confirm is not None and confirm == count:
            try:
                deleted = queries.flush(device, start, end, confirm)
            except queries.FlushMismatch as mismatch:
                messages.error(request, f"The count changed to {mismatch.count}; check and confirm again.")
            else:
                record(
                    request,
                    "events.flushed",
                    device,
                    {"deleted": deleted, "start": str(start or ""), "end": str(end or "")},
                )
                messages.success(request, f"Deleted {deleted} events of {device.device_id}.")
                return redirect("outlets-flush")
    return render(request, "outlets/flush.html", {"form": form, "count": count}, status=400 if form.errors else 200)
