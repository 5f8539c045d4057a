from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.audit.log import record
from portal.core import live
from portal.core.charts import aggregate_chart, raw_chart
from portal.core.editing import delete_view, form_view
from portal.core.formatting import local_input
from portal.core.lists import Column, list_response, stream_csv
from portal.facilities.filters import AssetFilter, SiteFilter
from portal.facilities.forms import (
    RANGES,
    AssetForm,
    BindingForm,
    ChartRangeForm,
    SiteForm,
)
from portal.facilities.models import Asset, DeviceBinding, Site
from portal.tenancy.access import role_required
from portal.tenancy.models import Role
from telemetry import queries
from telemetry.bounds import whole_number
from telemetry.models import online_window

SITE_COLUMNS = [
    Column("name", "name"),
    Column("address", "address"),
    Column("time_zone", "time_zone"),
    Column("assets", "asset_count"),
]
ASSET_COLUMNS = [
    Column("tag", "tag"),
    Column("name", "name"),
    Column("site", "site.name"),
    Column("type", "get_type_display"),
    Column("status", "get_status_display"),
    Column("online", "online"),
]
FRESH_FOR = timedelta(minutes=15)  # a sensor silent for longer is shown as stale


# --- sites -------------------------------------------------------------------------------------


def site_list(request):
    queryset = Site.objects.annotate(asset_count=Count("assets")).order_by("name")
    return list_response(
        request, SiteFilter(request.GET, queryset=queryset), "facilities/sites.html", SITE_COLUMNS, "sites"
    )


def site_detail(request, pk):
    site = get_object_or_404(Site, pk=pk)
    assets = list(site.assets.with_online().order_by("tag"))
    problems = [
        a
        for a in assets
        if a.status == Asset.Status.FAULT or (not a.online and a.status != Asset.Status.DECOMMISSIONED)
    ]
    return render(request, "facilities/site_detail.html", {"site": site, "assets": assets, "problems": problems})


@role_required(Role.ADMIN)
def site_create(request):
    return form_view(
        request,
        SiteForm,
        template="includes/object_form.html",
        action="site.created",
        success_url=lambda site: site_url(site),
        context={"title": "New site", "cancel_url": reverse("facilities-site-list")},
    )


@role_required(Role.ADMIN)
def site_edit(request, pk):
    site = get_object_or_404(Site, pk=pk)
    return form_view(
        request,
        SiteForm,
        instance=site,
        template="includes/object_form.html",
        action="site.updated",
        success_url=site_url,
        context={"title": f"Edit {site}", "cancel_url": site_url(site)},
    )


@role_required(Role.ADMIN)
def site_delete(request, pk):
    site = get_object_or_404(Site, pk=pk)
    return delete_view(
        request,
        site,
        action="site.deleted",
        success_url=reverse("facilities-site-list"),
        cancel_url=site_url(site),
        blocked="This site still has assets; move or delete them first.",
    )


def site_url(site) -> str:
    return reverse("facilities-site-detail", args=[site.pk])


# --- assets ------------------------------------------------------------------------------------


def asset_list(request):
    queryset = Asset.objects.with_online().select_related("site").order_by("tag")
    return list_response(
        request, AssetFilter(request.GET, queryset=queryset), "facilities/assets.html", ASSET_COLUMNS, "assets"
    )


def sensor_rows(sensors, now, latest=None):
    """Each sensor with its latest reading (`latest`, or queried), how fresh it is, and a status word."""
    latest = queries.latest_values(s.pk for s in sensors) if latest is None else latest
    rows = []
    for sensor in sensors:
        ts, value = latest.get(sensor.pk, (None, None))
        status = "no data" if ts is None else ("fresh" if now - ts <= FRESH_FOR else "stale")
        rows.append({"sensor": sensor, "ts": ts, "value": value, "status": status})
    return rows


def chart_window(request):
    """Range and bucket from the URL; bad input shows its error and falls back to the defaults."""
    form = ChartRangeForm(request.GET or None)
    if form.is_bound and form.is_valid():
        return form, form.cleaned_data
    fallback = ChartRangeForm({})
    fallback.is_valid()
    return form, fallback.cleaned_data


def live_window_seconds(window) -> int | None:
    """How much a live chart keeps as points arrive: the range's span, None for a custom range."""
    return None if window["range"] == "custom" else int((window["end"] - window["start"]).total_seconds())


def asset_series(sensors, window) -> dict:
    """Each sensor's points in the window, {sensor id: Result} (capped as the queries cap), in one
    query for all of them: the charts and the history table show the same points."""
    start, end, bucket = window["start"], window["end"], window["bucket"]
    ids = [sensor.pk for sensor in sensors]
    if bucket == "raw":
        return queries.raw_readings_each(ids, start, end)
    return queries.aggregate_each(ids, start, end, bucket)


def sensor_chart(sensor, window, result) -> dict:
    """A sensor's chart data from its points in the window."""
    shown = {"precision": sensor.precision, "window": live_window_seconds(window)}
    if window["bucket"] == "raw":
        return raw_chart(result.rows, sensor.unit, **shown)
    seconds = int(queries.BUCKETS[window["bucket"]].total_seconds())
    return aggregate_chart(result.rows, sensor.unit, bucket_seconds=seconds, **shown)


def asset_detail(request, pk):
    asset = get_object_or_404(Asset.objects.select_related("site"), pk=pk)
    sensors = list(asset.sensors())
    form, window = chart_window(request)
    series = asset_series(sensors, window)
    if request.GET.get("export") == "csv":
        return asset_history_csv(asset, sensors, window, series)
    charts = []
    for sensor in sensors:
        result = series[sensor.pk]
        charts.append(
            {
                "sensor": sensor,
                "data": sensor_chart(sensor, window, result),
                "id": chart_id(sensor),
                "capped": result.capped,
                "limit": result.limit,
            }
        )
    page = Paginator(history_rows(sensors, window, series), 50).get_page(request.GET.get("page"))
    rows = sensor_rows(sensors, timezone.now())
    context = {
        "asset": asset,
        "bindings": asset.bindings.select_related("device"),
        "sensor_rows": rows,
        **asset_live_context(asset, window, rows),
        "charts": charts,
        "form": form,
        "window": window,
        "ranges": RANGES,
        "page": page,
        "bucket_choices": form.fields["bucket"].choices,
    }
    template = "facilities/asset_detail.html#charts" if request.htmx else "facilities/asset_detail.html"
    response = render(request, template, context)
    response["Vary"] = "HX-Request"
    return response


def chart_id(sensor) -> str:
    """The id of a sensor's chart data on the asset page (live updates address charts by it)."""
    return f"chart-{sensor.pk}"


def asset_live_context(asset, window, rows) -> dict:
    """What the asset page's live element needs: its URL (the chart window in it), the newest
    reading's time as its cursor, and the freshness rules of its badges. A custom range that
    has ended has nothing to wait for: no live element."""
    ended = window["range"] == "custom" and window["end"] < timezone.now()
    query = {"range": window["range"], "bucket": window["bucket"]}
    if window["range"] == "custom":
        query |= {"start": local_input(window["start"]), "end": local_input(window["end"])}
    return {
        "live_url": "" if ended else f"{reverse('facilities-asset-live', args=[asset.pk])}?{urlencode(query)}",
        "live_cursor": live.epoch(max((row["ts"] for row in rows if row["ts"]), default=None)),
        "fresh_seconds": FRESH_FOR.total_seconds(),
        "online_seconds": online_window().total_seconds(),
    }


def history_rows(sensors, window, series) -> list[dict]:
    """The history table: one row per sensor and bucket (or raw reading), newest first, from the
    points the charts show."""
    by_id = {s.pk: s for s in sensors}
    if window["bucket"] == "raw":
        rows = [
            {"sensor": by_id[sid], "time": ts, "avg": value, "min": value, "max": value, "last": value, "count": 1}
            for result in series.values()
            for sid, ts, value in result.rows
        ]
    else:
        rows = [
            {
                "sensor": by_id[p.sensor_id],
                "time": p.bucket,
                "avg": p.avg,
                "min": p.min,
                "max": p.max,
                "last": p.last,
                "count": p.count,
            }
            for result in series.values()
            for p in result.rows
        ]
    order = {sensor.pk: n for n, sensor in enumerate(sensors)}
    rows.sort(key=lambda row: order[row["sensor"].pk])
    rows.sort(key=lambda row: row["time"], reverse=True)  # stable: sensors in page order within a time
    return rows


HISTORY_COLUMNS = [
    Column("time", "time"),
    Column("device", lambda r: r["sensor"].device.device_id),
    Column("sensor", lambda r: r["sensor"].key),
    Column("unit", lambda r: r["sensor"].unit),
    Column("avg", lambda r: r["avg"]),
    Column("min", lambda r: r["min"]),
    Column("max", lambda r: r["max"]),
    Column("last", lambda r: r["last"]),
    Column("count", lambda r: r["count"]),
]


class RowList(list):
    """A list that answers .iterator() like a queryset, for the shared CSV streamer."""

    def iterator(self, chunk_size=None):
        return iter(self)


def asset_history_csv(asset, sensors, window, series):
    rows = RowList(history_rows(sensors, window, series))
    return stream_csv(rows, HISTORY_COLUMNS, f"{asset.tag}-{window['bucket']}")


@role_required(Role.ADMIN)
def asset_create(request):
    site = request.GET.get("site", "")  # pre-selects the site the "add asset" link came from
    initial = {"site": site_pk} if (site_pk := whole_number(site)) is not None else {}
    return form_view(
        request,
        AssetForm,
        initial=initial,
        template="includes/object_form.html",
        action="asset.created",
        success_url=asset_url,
        context={"title": "New asset", "cancel_url": reverse("facilities-asset-list")},
    )


@role_required(Role.ADMIN)
def asset_edit(request, pk):
    asset = get_object_or_404(Asset, pk=pk)
    return form_view(
        request,
        AssetForm,
        instance=asset,
        template="includes/object_form.html",
        action="asset.updated",
        success_url=asset_url,
        context={"title": f"Edit {asset}", "cancel_url": asset_url(asset)},
    )


@role_required(Role.ADMIN)
def asset_delete(request, pk):
    asset = get_object_or_404(Asset, pk=pk)
    return delete_view(
        request,
        asset,
        action="asset.deleted",
        success_url=reverse("facilities-asset-list"),
        cancel_url=asset_url(asset),
    )


def asset_url(asset) -> str:
    return reverse("facilities-asset-detail", args=[asset.pk])


# --- device bindings ---------------------------------------------------------------------------


@role_required(Role.OPERATOR)
def binding_create(request, pk):
    asset = get_object_or_404(Asset, pk=pk)
    form = BindingForm(request.POST or None, asset=asset)
    if request.method == "POST" and form.is_valid():
        binding = form.save()
        record(request, "asset.device_bound", asset, {"device": binding.device.device_id})
        messages.success(request, f"{binding.device} is now installed on {asset}.")
        return redirect(asset_url(asset))
    context = {"form": form, "title": f"Install a device on {asset}", "cancel_url": asset_url(asset)}
    if not form.fields["device"].queryset.exists():
        context["nothing_to_choose"] = (
            "Every device is installed on an asset already. A new device shows up here once it has sent "
            "data; or remove a device from its asset first (a device serves one asset at a time)."
        )
    return render(request, "includes/object_form.html", context, status=400 if form.errors else 200)


@require_POST
@role_required(Role.OPERATOR)
def binding_delete(request, pk, binding_pk):
    binding = get_object_or_404(DeviceBinding.objects.select_related("device", "asset"), pk=binding_pk, asset_id=pk)
    binding.delete()
    record(request, "asset.device_unbound", binding.asset, {"device": binding.device.device_id})
    messages.success(request, f"{binding.device} removed from {binding.asset}; its readings are kept.")
    return redirect(asset_url(binding.asset))
