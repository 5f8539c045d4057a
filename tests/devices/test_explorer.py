import random
import re
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context
from telemetry_builders import NOW, expected_points, reading

from telemetry import queries
from telemetry.ingest import ingest
from telemetry.models import Device, Reading
from telemetry.rollups import roll_up

URL = "/explorer/"
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://acme.localhost/explorer/"}


def history(device="gw-1", sensor="temp", hours=30, every=5, seed=1):
    rng = random.Random(seed)
    return [
        reading(device=device, sensor=sensor, value=round(rng.uniform(-5, 30), 2), minutes=m)
        for m in range(1, hours * 60, every)
    ]


@pytest.fixture
def gateway(in_acme, frozen):
    ingest(history(), source="mqtt", now=NOW)
    ingest(history(sensor="hum", seed=2), source="mqtt", now=NOW)
    return Device.objects.get(device_id="gw-1")


def params(device, sensor_key="temp", **overrides):
    sensor = device.sensors.get(key=sensor_key)
    base = {
        "device": device.pk,
        "sensor": sensor.pk,
        "from": "2026-11-19T12:31",
        "to": "2026-11-20T12:31",
        "bucket": "1h",
    }
    return {**base, **overrides}


def table(response):
    return [(r.start, r.avg, r.min, r.max, r.last, r.count) for r in response.context["rows"]]


def newest_first(points):
    """expected_points() as table() rows, newest first (the average summed in another order may
    differ in the last bit)."""
    return [
        (p["bucket"], pytest.approx(p["avg"], rel=1e-12), p["min"], p["max"], p["last"], p["count"])
        for p in reversed(points)
    ]


def test_the_empty_explorer_asks_for_a_device(as_acme, gateway):
    response = as_acme("acme_viewer").get(URL)
    assert response.status_code == 200
    assert "Pick a device and one of its sensors" in response.content.decode()
    form = response.context["form"]
    assert not form.is_bound and form.initial["bucket"] == "1h"
    assert (form.initial["from"], form.initial["to"]) == ("2026-11-19T12:31", "2026-11-20T12:31")  # the last 24 hours


def test_it_says_so_when_there_are_no_devices(as_acme, in_acme):
    assert "No devices yet" in as_acme("acme_viewer").get(URL).content.decode()


def test_a_link_with_only_device_and_sensor_gets_the_default_range_in_the_url(as_acme, gateway):
    sensor = gateway.sensors.get(key="temp")
    response = as_acme("acme_viewer").get(URL, {"device": gateway.pk, "sensor": sensor.pk})
    assert response.status_code == 302
    query = parse_qs(urlparse(response["Location"]).query)
    assert query == {
        "device": [str(gateway.pk)],
        "sensor": [str(sensor.pk)],
        "from": ["2026-11-19T12:31"],
        "to": ["2026-11-20T12:31"],
        "bucket": ["1h"],
    }


def test_hourly_buckets_shown_equal_the_raw_readings_bucketed_newest_first(as_acme, gateway):
    roll_up()  # closed hours come from the rollups, the open hour from raw readings
    ingest([reading(value=99.5, minutes=0)], source="mqtt", now=NOW)  # in the open tail
    response = as_acme("acme_viewer").get(URL, params(gateway))
    assert response.status_code == 200
    sensor = gateway.sensors.get(key="temp")
    expected = expected_points([sensor.pk], NOW - timedelta(days=1), NOW + timedelta(minutes=1), "1h")
    assert table(response) == newest_first(expected)
    assert len(expected) == 25 and table(response)[0][3] == 99.5
    html = response.content.decode()
    first_row = html[html.index('data-testid="bucket-row"') :].split("</tr>", 1)[0]
    cells = [
        unescape(re.sub(r"<[^>]*>|\{#.*?#\}", "", cell)) for cell in re.findall(r"<td[^>]*>(.*?)</td>", first_row)
    ][:6]
    newest = expected[-1]
    assert cells == [
        "2026-11-20 12:00",
        f"{newest['avg']:.2f}",
        f"{newest['min']:.2f}",
        f"{newest['max']:.2f}",
        f"{newest['last']:.2f}",
        str(newest["count"]),
    ]
    chart = response.context["chart"]
    assert chart["x"] == [int(p["bucket"].timestamp()) for p in expected] and [s["label"] for s in chart["series"]] == [
        "avg",
        "min",
        "max",
    ]
    assert 'data-chart-source="chart-data-1"' in html and 'id="chart-data-1"' in html


@pytest.mark.parametrize("bucket", ["1m", "5m", "1d"])
def test_other_buckets_equal_the_raw_readings_bucketed(as_acme, gateway, bucket):
    response = as_acme("acme_viewer").get(URL, params(gateway, bucket=bucket, **{"from": "2026-11-20T08:00"}))
    sensor = gateway.sensors.get(key="temp")
    expected = expected_points([sensor.pk], NOW.replace(hour=8, minute=0), NOW + timedelta(minutes=1), bucket)
    rows = [
        row
        for page in pages(as_acme("acme_viewer"), params(gateway, bucket=bucket, **{"from": "2026-11-20T08:00"}))
        for row in page
    ]
    assert rows == newest_first(expected)
    assert response.status_code == 200


def pages(client, query):
    page = 1
    while True:
        response = client.get(URL, {**query, "page": page})
        yield table(response)
        if not response.context["page"].has_next():
            return
        page += 1


def test_raw_drill_down_shows_the_readings_of_that_bucket(as_acme, gateway):
    client = as_acme("acme_viewer")
    bucket_page = client.get(URL, params(gateway))
    row = bucket_page.context["rows"][3]
    links = re.findall(r'href="(\?[^"]*bucket=raw[^"]*)"', bucket_page.content.decode())
    assert unescape(links[3]) == row.drill_url
    response = client.get(URL + row.drill_url)
    assert response.context["form"].cleaned_data["bucket"] == "raw"
    sensor = gateway.sensors.get(key="temp")
    in_bucket = Reading.objects.filter(sensor=sensor, ts__gte=row.start, ts__lt=row.end).order_by("-ts")
    assert response.context["rows"] == [(r.ts, r.value) for r in in_bucket]
    assert len(response.context["rows"]) == row.count == 12
    html = response.content.decode()
    assert html.count('data-testid="reading-row"') == 12
    assert response.context["chart"]["series"][0]["label"] == "value"


def test_a_capped_aggregate_says_so(as_acme, in_acme, frozen):
    ingest([reading(value=n % 7, minutes=n) for n in range(1, 2101)], source="mqtt", now=NOW)  # 2,100 minutes
    device = Device.objects.get()
    response = as_acme("acme_viewer").get(URL, params(device, bucket="1m", **{"from": "2026-11-18T12:00"}))
    result = response.context["result"]
    assert result.capped and len(result.rows) == queries.MAX_POINTS
    assert response.context["rows"][0].start == NOW - timedelta(minutes=1)  # the latest points are kept
    assert "Showing the latest 2,000 points; narrow the range or pick a larger bucket" in response.content.decode()


def test_capped_raw_readings_say_so(as_acme, gateway, monkeypatch):
    monkeypatch.setattr(queries, "MAX_RAW_ROWS", 100)
    response = as_acme("acme_viewer").get(URL, params(gateway, bucket="raw"))
    assert response.context["result"].capped and response.context["page"].paginator.count == 100
    assert "Showing the latest 100 readings" in response.content.decode()


def test_an_uncapped_result_has_no_note(as_acme, gateway):
    assert 'data-testid="capped"' not in as_acme("acme_viewer").get(URL, params(gateway)).content.decode()


BAD = [
    {"device": "abc"},
    {"device": "99999999999999999999999"},
    {"device": "-1"},
    {"device": ""},
    {"device": "1\x00"},
    {"sensor": "x"},
    {"sensor": ""},
    {"sensor": "99999999"},
    {"from": "garbage"},
    {"from": "2026-13-45T99:99"},
    {"from": "0001-01-01T00:00"},
    {"from": "99999-01-01T00:00"},
    {"to": "9999-12-31T23:59"},
    {"to": ""},
    {"from": "2026-11-20T12:00", "to": "2026-11-20T11:00"},
    {"from": "2026-11-20T12:00", "to": "2026-11-20T12:00"},
    {"from": "2024-01-01T00:00", "to": "2026-01-01T00:00"},
    {"bucket": "2h"},
    {"bucket": ""},
    {"bucket": "raw'; DROP TABLE telemetry_reading; --"},
]


@pytest.mark.parametrize("bad", BAD, ids=[repr(b) for b in BAD])
def test_bad_parameters_show_form_errors_never_a_server_error(as_acme, gateway, bad):
    response = as_acme("acme_viewer").get(URL, {**params(gateway), **bad})
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors and "result" not in response.context
    html = response.content.decode()
    assert 'class="invalid-feedback d-block"' in html


@pytest.mark.parametrize("page", ["abc", "-5", "0", "99999", "1.5"])
def test_a_bad_page_number_shows_a_page(as_acme, gateway, page):
    response = as_acme("acme_viewer").get(URL, params(gateway, page=page))
    assert response.status_code == 200 and response.context["rows"]


def test_a_sensor_of_another_device_is_refused(as_acme, gateway):
    other = Device.objects.create(device_id="gw-2")
    other_sensor = other.sensors.create(key="temp")
    response = as_acme("acme_viewer").get(URL, params(gateway, sensor=other_sensor.pk))
    assert response.context["form"].errors["sensor"] == ["Pick a sensor of this device."]


def test_a_sensor_of_another_tenant_is_refused(as_acme, gateway):
    ours = {sensor.pk for sensor in gateway.sensors.all()}
    with schema_context("globex"):
        ingest([reading(device="globex-gw", sensor=f"s{n}") for n in range(4)], source="mqtt", now=NOW)
        theirs = next(
            pk
            for pk in Device.objects.get(device_id="globex-gw").sensors.values_list("pk", flat=True)
            if pk not in ours
        )
    response = as_acme("acme_viewer").get(URL, params(gateway, sensor=theirs))
    assert "sensor" in response.context["form"].errors and "result" not in response.context


def test_the_sensor_menu_follows_the_device(as_acme, gateway):
    other = Device.objects.create(device_id="gw-2")
    other.sensors.create(key="pressure", unit="hPa")
    client = as_acme("acme_viewer")
    html = client.get("/explorer/sensors/", {"device": other.pk}, headers=HTMX).content.decode()
    assert "<html" not in html and html.count("<option") == 1 and "pressure (hPa)" in html and 'name="sensor"' in html
    html = client.get("/explorer/sensors/", {"device": gateway.pk}, headers=HTMX).content.decode()
    assert html.count("<option") == 2 and "hum" in html and "temp" in html
    for garbage in ("", "abc", "999999"):
        response = client.get("/explorer/sensors/", {"device": garbage}, headers=HTMX)
        html = response.content.decode()
        assert response.status_code == 200 and html.count("<option") == 1 and "Pick a device first" in html


def test_the_form_asks_htmx_for_sensors_when_the_device_changes(as_acme, gateway):
    html = as_acme("acme_viewer").get(URL, params(gateway)).content.decode()
    device_select = re.search(r'<select name="device"[^>]*>', html).group(0)
    assert 'hx-get="/explorer/sensors/"' in device_select and 'hx-target="#sensor-select"' in device_select
    assert 'hx-push-url="false"' in device_select  # the menu's request is not a page of its own


def test_htmx_submit_gets_form_and_results_pagination_only_the_table(as_acme, gateway):
    client = as_acme("acme_viewer")
    query = params(gateway, bucket="5m")
    submitted = client.get(URL, query, headers={**HTMX, "HX-Target": "explorer"}).content.decode()
    assert "<html" not in submitted and 'data-testid="explorer-form"' in submitted and 'class="fw-chart"' in submitted
    paged = client.get(URL, {**query, "page": 2}, headers={**HTMX, "HX-Target": "table"})
    html = paged.content.decode()
    assert "<html" not in html and "fw-chart" not in html and 'data-testid="bucket-row"' in html
    assert paged.context["page"].number == 2
    assert {"HX-Request", "HX-Target"} <= {v.strip() for v in paged["Vary"].split(",")}


def test_history_restore_gets_the_whole_page(as_acme, gateway):
    headers = {**HTMX, "HX-History-Restore-Request": "true"}
    html = as_acme("acme_viewer").get(URL, params(gateway), headers=headers).content.decode()
    assert "<html" in html


def test_pagination_links_keep_every_field(as_acme, gateway):
    response = as_acme("acme_viewer").get(URL, params(gateway, bucket="5m"))
    assert response.context["page"].paginator.num_pages == 6  # 289 five-minute buckets, 50 a page
    link = unescape(re.search(r'href="(\?[^"]*page=2[^"]*)"', response.content.decode()).group(1))
    assert parse_qs(link[1:]) == {k: [str(v)] for k, v in params(gateway, bucket="5m", page=2).items()}


def test_query_count_does_not_grow_with_devices_or_rows(as_acme, in_acme, frozen, django_assert_max_num_queries):
    client = as_acme("acme_viewer")
    ingest([r for n in range(5) for r in history(device=f"gw-{n}", hours=3)], source="mqtt", now=NOW)
    device = Device.objects.get(device_id="gw-0")
    client.get(URL, params(device))
    with CaptureQueriesContext(connection) as five:
        assert len(client.get(URL, params(device)).context["rows"]) == 4
    ingest(
        [r for n in range(5, 50) for r in history(device=f"gw-{n}", hours=3)]
        + history(device="gw-0", hours=24, every=1),
        source="mqtt",
        now=NOW,
    )
    with django_assert_max_num_queries(len(five)):
        assert len(client.get(URL, params(device)).context["rows"]) == 25


def test_a_device_without_sensors_says_so(as_acme, gateway):
    lock = Device.objects.create(device_id="lock-1", kind="lock")
    response = as_acme("acme_viewer").get(URL, {**params(gateway), "device": lock.pk, "sensor": ""})
    assert response.context["form"].errors["sensor"] == ["This device has no sensors yet."]
    assert "No sensors yet" in response.content.decode() and "is-invalid" in response.content.decode()
