from datetime import timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.audit.log import record
from portal.core.charts import aggregate_chart, raw_chart
from portal.core.editing import delete_view, form_view
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

SITE_COLUMNS = [Column("name", "name"), Column("address", "address"), Column("time_zone", "time_zone"), Column("assets", "asset_count")]
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
    return list_response(request, SiteFilter(request.GET, queryset=queryset), "facilities/sites.html", SITE_COLUMNS, "sites")


def site_detail(request, pk):
    site = get_object_or_404(Site, pk=pk)
    assets = list(site.assets.with_online().order_by("tag"))
    problems = [a for a in assets if a.status == Asset.Status.FAULT or (not a.online and a.status != Asset.Status.DECOMMISSIONED)]
    return render(request, "facilities/site_detail.html", {"site": site, "assets": assets, "problems": problems})


@role_required(Role.ADMIN)
def site_create(request):
    return form_view(request, SiteForm, template="includes/object_form.html", action="site.created",
                     success_url=lambda site: site_url(site), context={"title": "New site", "cancel_url": reverse("facilities-site-list")})


@role_required(Role.ADMIN)
def site_edit(request, pk):
    site = get_object_or_404(Site, pk=pk)
    return form_view(request, SiteForm, instance=site, template="includes/object_form.html", action="site.updated",
                     success_url=site_url, context={"title": f"Edit {site}", "cancel_url": site_url(site)})


@role_required(Role.ADMIN)
def site_delete(request, pk):
    site = get_object_or_404(Site, pk=pk)
    return delete_view(request, site, action="site.deleted", success_url=reverse("facilities-site-list"), cancel_url=site_url(site),
                       blocked="This site still has assets; move or delete them first.")


def site_url(site) -> str:
    return reverse("facilities-site-detail", args=[site.pk])


# --- assets ------------------------------------------------------------------------------------

def asset_list(request):
    queryset = Asset.objects.with_online().select_related("site").order_by("tag")
    return list_response(request, AssetFilter(request.GET, queryset=queryset), "facilities/assets.html", ASSET_COLUMNS, "assets")


def sensor_rows(sensors, now):
    """Each sensor with its latest reading, how fresh it is, and a status word."""
    latest = queries.latest_values(s.pk for s in sensors)
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


def sensor_series(sensor, window):
    """Chart data and table rows of one sensor in the window (capped as the queries cap)."""
    start, end, bucket = window["start"], window["end"], window["bucket"]
    if bucket == "raw":
        result = queries.raw_readings([sensor.pk], start, end)
        return raw_chart(result.rows, sensor.unit), result
    result = queries.aggregate([sensor.pk], start, end, bucket)
    return aggregate_chart(result.rows, sensor.unit), result


def asset_detail(request, pk):
    asset = get_object_or_404(Asset.objects.select_related("site"), pk=pk)
    sensors = list(asset.sensors())
    form, window = chart_window(request)
    if request.GET.get("export") == "csv":
        return asset_history_csv(asset, sensors, window)
    charts = []
    for n, sensor in enumerate(sensors):
        data, result = sensor_series(sensor, window)
        charts.append({"sensor": sensor, "data": data, "id": f"chart-{n}", "capped": result.capped, "limit": result.limit})
    history = history_rows(sensors, window)
    page = Paginator(history, 50).get_page(request.GET.get("page"))
    context = {
        "asset": asset,
        "bindings": asset.bindings.select_related("device"),
        "sensor_rows": sensor_rows(sensors, timezone.now()),
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


def history_rows(sensors, window) -> list[dict]:
    """The history table: one row per sensor and bucket (or raw reading), newest first."""
    by_id = {s.pk: s for s in sensors}
    if not sensors:
        return []
    if window["bucket"] == "raw":
        result = queries.raw_readings(by_id, window["start"], window["end"])
        return [{"sensor": by_id[sid], "time": ts, "avg": value, "min": value, "max": value, "last": value, "count": 1} for sid, ts, value in result.rows]
    result = queries.aggregate(by_id, window["start"], window["end"], window["bucket"])
    return [
        {"sensor": by_id[p.sensor_id], "time": p.bucket, "avg": p.avg, "min": p.min, "max": p.max, "last": p.last, "count": p.count}
        for p in reversed(result.rows)
    ]


HISTORY_COLUMNS = [
    Column("time", "time"), Column("device", lambda r: r["sensor"].device.device_id), Column("sensor", lambda r: r["sensor"].key),
    Column("unit", lambda r: r["sensor"].unit), Column("avg", lambda r: r["avg"]), Column("min", lambda r: r["min"]),
    Column("max", lambda r: r["max"]), Column("last", lambda r: r["last"]), Column("count", lambda r: r["count"]),
]


class RowList(list):
    """A list that answers .iterator() like a queryset, for the shared CSV streamer."""

    def iterator(self, chunk_size=None):
        return iter(self)


def asset_history_csv(asset, sensors, window):
    rows = RowList(history_rows(sensors, window))
    return stream_csv(rows, HISTORY_COLUMNS, f"{asset.tag}-{window['bucket']}")


@role_required(Role.ADMIN)
def asset_create(request):
    site = request.GET.get("site", "")  # pre-selects the site the "add asset" link came from
    initial = {"site": int(site)} if site.isdigit() else {}
    return form_view(request, AssetForm, initial=initial, template="includes/object_form.html", action="asset.created",
                     success_url=asset_url, context={"title": "New asset", "cancel_url": reverse("facilities-asset-list")})


@role_required(Role.ADMIN)
def asset_edit(request, pk):
    asset = get_object_or_404(Asset, pk=pk)
    return form_view(request, AssetForm, instance=asset, template="includes/object_form.html", action="asset.updated",
                     success_url=asset_url, context={"title": f"Edit {asset}", "cancel_url": asset_url(asset)})


@role_required(Role.ADMIN)
def asset_delete(request, pk):
    asset = get_object_or_404(Asset, pk=pk)
    return delete_view(request, asset, action="asset.deleted", success_url=reverse("facilities-asset-list"), cancel_url=asset_url(asset))


def asset_url(asset) -> str:
    return reverse("facilities-asset-detail", args=[asset.pk])


# --- device bindings ---------------------------------------------------------------------------

@role_required(Role.ADMIN)
def binding_create(request, pk):
    asset = get_object_or_404(Asset, pk=pk)
    form = BindingForm(request.POST or None, asset=asset)
    if request.method == "POST" and form.is_valid():
        binding = form.save()
        record(request, "asset.device_bound", asset, {"device": binding.device.device_id})
        messages.success(request, f"{binding.device} is now installed on {asset}.")
        return redirect(asset_url(asset))
    context = {"form": form, "title": f"Install a device on {asset}", "cancel_url": asset_url(asset)}
    return render(request, "includes/object_form.html", context, status=400 if form.errors else 200)


@require_POST
@role_required(Role.ADMIN)
def binding_delete(request, pk, binding_pk):
    binding = get_object_or_404(DeviceBinding.objects.select_related("device", "asset"), pk=binding_pk, asset_id=pk)
    binding.delete()
    record(request, "asset.device_unbound", binding.asset, {"device": binding.device.device_id})
    messages.success(request, f"{binding.device} removed from {binding.asset}; its readings are kept.")
    return redirect(asset_url(binding.asset))
