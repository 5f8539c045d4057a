"""The asset page's live endpoint (portal.core.live): new readings since the page's cursor.

A poll costs the same few queries whatever the tenant's size. When nothing is new (most polls):
one query, the latest reading of each of the asset's sensors (one index probe each). When
something is: the asset, its sensors and bindings, and one aggregate (or raw) query for all of
its sensors together.
"""

from collections import defaultdict
from datetime import timedelta

from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.http import require_GET

from portal.core import charts, live
from portal.facilities.models import Asset
from portal.facilities.views import asset_live_context, chart_id, chart_window, sensor_rows
from telemetry import queries
from telemetry.models import Sensor

# Readings can be committed a little after newer ones of another device (the bridge's batches):
# each update reaches this far behind the cursor, and chart.js merges by time.
LATE_READINGS = timedelta(seconds=60)
# Readings stamped ahead of the server's clock are accepted up to the tenant's future window
# (a day at most), so updates look that far ahead.
AHEAD = timedelta(days=1)


@require_GET
def asset_live(request, pk):
    try:
        since = live.since(request)
    except live.BadCursor as error:
        return live.bad_cursor(error)
    _, window = chart_window(request)
    now = timezone.now()
    if window["range"] == "custom" and window["end"] < now:
        return live.stop()
    latest = queries.latest_values(Sensor.objects.filter(device__binding__asset_id=pk))
    newest = max((ts for ts, _ in latest.values()), default=None)
    if newest is None:
        get_object_or_404(Asset, pk=pk)  # another tenant's asset (or none) is a 404, as its page is
        return live.nothing_new()
    if since is not None and newest <= since:
        return live.nothing_new()
    asset = get_object_or_404(Asset, pk=pk)
    sensors = list(asset.sensors())
    rows = sensor_rows(sensors, now, latest)
    context = {
        "asset": asset,
        "sensor_rows": rows,
        "bindings": asset.bindings.select_related("device"),
        "chart_updates": chart_updates(sensors, window, since, now),
        "oob": True,
        **asset_live_context(asset, window, rows),
    }
    return live.render(request, "facilities/asset_detail.html#live", context)


def chart_updates(sensors, window, since, now) -> dict:
    """{chart id: new points} for every sensor, from one query for all of them: buckets from the
    one holding the cursor (it may have grown), raw readings from just before it."""
    if not sensors:
        return {}
    start = max(window["start"], since - LATE_READINGS) if since else window["start"]
    ids = [sensor.pk for sensor in sensors]
    by_sensor = defaultdict(list)
    if window["bucket"] == "raw":
        for row in queries.raw_readings(ids, start, now + AHEAD).rows:
            by_sensor[row[0]].append(row)
        series = charts.raw_series
    else:
        for point in queries.aggregate(ids, start, now + AHEAD, window["bucket"], now=now).rows:
            by_sensor[point.sensor_id].append(point)
        series = charts.aggregate_series
    return {chart_id(sensor): charts.update(*series(by_sensor[sensor.pk])) for sensor in sensors}
