"""Console pages for telemetry across tenants (seed 001): the query, its drill-down, its CSV;
and the live ingest health."""

from urllib.parse import urlencode

from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from portal.core import live
from portal.core.lists import csv_lines
from portal.ops.access import staff_required
from portal.ops.forms import MAX_EXPORT_ROWS, DrilldownForm, TelemetryQueryForm
from portal.ops.ingest_health import snapshot as ingest_health_snapshot
from portal.ops.log import record_ops
from portal.ops.query import Filters, bucket_page, drilldown, merged
from telemetry import queries

QUERY_PARAMS = ("tenant_slug", "device_id", "sensor_id", "from", "to", "bucket", "limit")
CSV_HEADER = ["tenant", "device_id", "sensor_id", "unit", "bucket", "avg", "min", "max", "last", "count"]


def filters_of(data) -> Filters:
    return Filters(data["tenants"], data["device_id"], data["sensor_id"], data["from"], data["to"], data["bucket"])


def query_string(data, **changes) -> str:
    """The query's own parameters (times as ISO 8601) for links: pages, drill-down, CSV."""
    values = {name: data.get(name) for name in QUERY_PARAMS} | changes
    values["from"], values["to"] = values["from"].isoformat(), values["to"].isoformat()
    return urlencode({name: value for name, value in values.items() if value not in (None, "")})


def read_detail(data) -> dict:
    """What a console read of telemetry names in the audit log: the filters it ran with."""
    names = ("device_id", "sensor_id", "bucket", "offset", "limit")
    changes = {name: data[name] for name in names if data.get(name) not in (None, "")}
    return changes | {
        "tenants": data.get("tenant_slug") or "all",
        "from": data["from"].isoformat(),
        "to": data["to"].isoformat(),
    }


def drill_query(row, bucket: str) -> str:
    """The drill-down of one row: its sensor's raw readings within its bucket."""
    end = row.bucket + queries.BUCKETS[bucket]
    ids = {"tenant_slug": row.tenant_slug, "device_id": row.device_id, "sensor_id": row.sensor_id}
    return urlencode(ids | {"from": row.bucket.isoformat(), "to": end.isoformat()})


@require_GET
@staff_required
def telemetry_query(request):
    bound = any(name in request.GET for name in QUERY_PARAMS)
    form = TelemetryQueryForm(request.GET if bound else None)
    context = {"form": form}
    if bound and form.is_valid():
        data = form.cleaned_data
        show_effective_range(form)
        page = bucket_page(filters_of(data), data["offset"], data["limit"])
        # staff reading tenants' telemetry are audited, as the CSV export is (who, when, which)
        record_ops(request, "telemetry.queried", data["tenants"][0] if data["tenant_slug"] else None, read_detail(data))
        rows = [(row, drill_query(row, data["bucket"])) for row in page.rows]
        context |= {"page": page, "rows": rows, "data": data}
        if page.offset:
            context["previous_url"] = f"?{query_string(data, offset=max(0, page.offset - page.limit))}"
        if page.has_next:
            context["next_url"] = f"?{query_string(data, offset=page.offset + page.limit)}"
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "ops/telemetry.html", context, status=status)


def show_effective_range(form) -> None:
    """Empty From/To mean the last 24 hours: show the times the query used, so a shared link and
    the CSV export carry them."""
    form.data = form.data.copy()
    form.data["from"], form.data["to"] = form.cleaned_data["from"].isoformat(), form.cleaned_data["to"].isoformat()


@require_GET
@staff_required
def telemetry_drilldown(request):
    form = DrilldownForm(request.GET)
    context = {"form": form}
    if form.is_valid():
        data = form.cleaned_data
        if data["tenant"] is not None:
            record_ops(request, "telemetry.drilled_down", data["tenant"], read_detail(data))
            context |= {
                "data": data,
                "result": drilldown(
                    data["tenant"], data["device_id"], data["sensor_id"], data["from"], data["to"], data["limit"]
                ),
            }
    status = 400 if form.errors else 200
    return render(request, "ops/drilldown.html", context, status=status)


@require_POST
@staff_required
def telemetry_export(request):
    """CSV of the query's buckets (not only the page shown), at most MAX_EXPORT_ROWS, streamed.
    POST with CSRF, as seed 001 has it: an export is an action, and is audited."""
    form = TelemetryQueryForm(request.POST)
    if not form.is_valid():
        return render(request, "ops/telemetry.html", {"form": form}, status=400)
    data = form.cleaned_data
    filters = filters_of(data)
    rows = (
        (r.tenant_slug, r.device_id, r.sensor_id, r.unit, r.bucket, r.avg, r.min, r.max, r.last, r.count)
        for r in merged(filters, MAX_EXPORT_ROWS)
    )
    scope = data["tenant_slug"] or "all"
    changes = read_detail(data)
    changes.pop("offset", None), changes.pop("limit", None)  # the export is every row, not a page
    record_ops(request, "telemetry.exported", data["tenants"][0] if data["tenant_slug"] else None, changes)
    response = StreamingHttpResponse(csv_lines(CSV_HEADER, rows), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="telemetry-{scope}-{data["bucket"]}-{stamp}.csv"'
    return response


@require_GET
@staff_required
def ingest_health(request):
    health = ingest_health_snapshot()
    return render(request, "ops/ingest.html", {"health": health, "cursor": health.fingerprint()})


@require_GET
@staff_required
def ingest_health_live(request):
    """The live part of the ingest page (portal.core.live): 204 while every figure is unchanged."""
    health = ingest_health_snapshot()
    cursor = health.fingerprint()
    if request.GET.get("since", "")[:16] == cursor:
        return live.nothing_new()
    return live.render(request, "ops/ingest.html#live", {"health": health, "cursor": cursor})
