"""Live endpoints of the device page and the explorer (portal.core.live).

Device page: the cursor is the newest of the device's last_seen and its sensors' latest readings;
a poll asks that in one query (one index probe per sensor) and, when it moved, the device, its
sensors and their latest values (three more, whatever their number).
Explorer: a range that reaches the present follows it (new points appended, the oldest dropping
off the left); a range in the past never changes, so its page has no live element at all.
"""

from datetime import UTC, timedelta

from django.http import Http404
from django.utils import timezone
from django.views.decorators.http import require_GET

from portal.core import charts, live
from portal.devices.forms import RAW, ExplorerForm
from portal.devices.views import FOLLOWS_NOW, device_cursor, get_device, sensor_rows
from telemetry import queries
from telemetry.models import online_window

LATE_READINGS = timedelta(seconds=60)  # updates reach this far behind the cursor (see facilities.live)
AHEAD = timedelta(days=1)  # and this far ahead (readings stamped ahead of the server's clock)


@require_GET
def device_live(request, pk):
    try:
        since = live.since(request)
    except live.BadCursor as error:
        return live.bad_cursor(error)
    found, newest = queries.device_newest(pk)  # one query while nothing is new
    if not found:
        raise Http404("No such device.")  # another tenant's is not in this schema, as its page
    if newest is None or (since is not None and float(live.epoch(newest)) <= since.timestamp()):
        return live.nothing_new()
    device = get_device(pk)
    rows = sensor_rows(device)
    cursor = device_cursor(device, rows)
    context = {
        "device": device,
        "sensor_rows": rows,
        "live_cursor": cursor,
        "online_seconds": online_window().total_seconds(),
        "oob": True,
    }
    return live.render(request, "devices/detail.html#live", context)


def explorer_follows_now(data: dict) -> bool:
    return data["to"] >= timezone.now() - FOLLOWS_NOW


@require_GET
def explorer_live(request):
    """New points of the explorer's sensor since the cursor; 286 once the range cannot change."""
    try:
        since = live.since(request)
    except live.BadCursor as error:
        return live.bad_cursor(error)
    form = ExplorerForm(request.GET)
    if not form.is_valid():
        return live.stop()  # the page showed this form's errors; polling cannot fix them
    data = form.cleaned_data
    sensor, bucket, now = data["sensor"], data["bucket"], timezone.now()
    if not explorer_follows_now(data) and request.GET.get("follow") != "1":
        return live.stop()
    latest = queries.latest_values([sensor.pk]).get(sensor.pk)
    if latest is None or (since is not None and latest[0] <= since):
        return live.nothing_new()
    start = data["from"].astimezone(UTC)
    if since is not None:
        start = max(start, since - LATE_READINGS)
    if bucket == RAW:
        xs, labelled = charts.raw_series(queries.raw_readings([sensor.pk], start, now + AHEAD).rows)
    else:
        xs, labelled = charts.aggregate_series(queries.aggregate([sensor.pk], start, now + AHEAD, bucket, now=now).rows)
    context = {
        "form": form,
        "live_query": {key: value for key, value in request.GET.items() if key != "since"},
        "live_cursor": live.epoch(latest[0]),
        "chart_updates": {"chart-data-1": charts.update(xs, labelled)},
    }
    return live.render(request, "devices/explorer.html#live-element", context)
