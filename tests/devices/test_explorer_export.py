import csv
import io
from datetime import datetime, timedelta

import pytest
from django.test import Client
from helpers import sign_in
from telemetry_builders import NOW, expected_points, reading

from portal.core.lists import format_cell
from portal.devices import views
from telemetry import queries
from telemetry.ingest import ingest
from telemetry.models import Device, Reading

URL = "/explorer/export/"


@pytest.fixture
def gateway(in_acme, frozen):
    # 3,000 readings a minute apart (more than a page of the explorer shows) and one outside the range
    ingest(
        [reading(device="gw-1", sensor="temp", value=n / 10, minutes=n) for n in range(1, 3001)], source="mqtt", now=NOW
    )
    ingest([reading(device="gw-1", sensor="temp", value=-1, minutes=60 * 24 * 5)], source="mqtt", now=NOW)
    return Device.objects.get(device_id="gw-1")


def form(device, **overrides):
    sensor = device.sensors.get()
    return {
        "device": device.pk,
        "sensor": sensor.pk,
        "from": "2026-11-18T00:00",
        "to": "2026-11-20T12:31",
        "bucket": "raw",
        **overrides,
    }


def rows_of(response):
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_raw_export_streams_every_reading_in_range_oldest_first(as_acme, gateway):
    response = as_acme("acme_viewer").post(URL, form(gateway))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="gw-1-temp-20261118T0000-20261120T1231-raw.csv"'
    header, *rows = rows_of(response)
    assert header == ["ts", "value"]
    start, end = datetime.fromisoformat("2026-11-18T00:00+00:00"), datetime.fromisoformat("2026-11-20T12:31+00:00")
    expected = Reading.objects.filter(ts__gte=start, ts__lt=end).order_by("ts")
    assert len(rows) == 3000 == expected.count()
    assert rows == [[r.ts.isoformat(), format_cell(r.value)] for r in expected]


def test_raw_export_is_not_capped_like_the_page(as_acme, gateway, monkeypatch):
    monkeypatch.setattr(queries, "MAX_RAW_ROWS", 100)
    assert len(rows_of(as_acme("acme_viewer").post(URL, form(gateway)))) == 3001


def test_raw_export_pulls_rows_as_it_writes_them(as_acme, gateway, monkeypatch):
    """The response is written while the server-side cursor is read: nothing reads all rows first."""
    pulled = []
    real_stream_raw = queries.stream_raw

    def counting_stream_raw(*args, **kwargs):
        for row in real_stream_raw(*args, chunk=500):
            pulled.append(row)
            yield row

    monkeypatch.setattr(views.queries, "stream_raw", counting_stream_raw)
    response = as_acme("acme_viewer").post(URL, form(gateway))
    assert pulled == []  # nothing read before the body is
    chunks = iter(response.streaming_content)
    next(chunks), next(chunks)  # the header, then the first chunk of lines
    assert 0 < len(pulled) < 3000
    rest = b"".join(chunks)
    assert len(pulled) == 3000 and rest


@pytest.mark.parametrize("bucket", ["1m", "1h", "1d"])
def test_aggregate_export_has_every_bucket_of_the_raw_readings(as_acme, gateway, bucket):
    response = as_acme("acme_viewer").post(URL, form(gateway, bucket=bucket))
    header, *rows = rows_of(response)
    assert header == ["bucket", "avg", "min", "max", "last", "count"]
    sensor = gateway.sensors.get()
    start, end = datetime.fromisoformat("2026-11-18T00:00+00:00"), datetime.fromisoformat("2026-11-20T12:31+00:00")
    expected = expected_points([sensor.pk], start, end, bucket)
    assert [[row[0], float(row[1]), *map(float, row[2:5]), int(row[5])] for row in rows] == [
        [p["bucket"].isoformat(), pytest.approx(p["avg"], rel=1e-12), p["min"], p["max"], p["last"], p["count"]]
        for p in expected
    ]
    assert sum(int(row[5]) for row in rows) == 3000
    if bucket == "1m":
        assert len(rows) == 3000 > queries.MAX_POINTS  # several windows, none capped, none overlapping


def test_the_export_form_on_the_page_carries_the_same_fields(as_acme, gateway):
    client = as_acme("acme_viewer")
    page = client.get("/explorer/", form(gateway, bucket="1h")).content.decode()
    export_form = page[page.index('data-testid="export-form"') :]
    export_form = export_form[: export_form.index("</form>")]
    assert 'name="csrfmiddlewaretoken"' in export_form
    for name, value in form(gateway, bucket="1h").items():
        assert f'name="{name}" value="{value}"' in export_form


def test_get_is_refused(as_acme, gateway):
    assert as_acme("acme_viewer").get(URL, form(gateway)).status_code == 405


def test_a_post_without_the_csrf_token_is_refused(gateway, people):
    client = sign_in(Client(HTTP_HOST="acme.localhost", enforce_csrf_checks=True), people["acme_viewer"], "acme")
    assert client.post(URL, form(gateway)).status_code == 403


def test_a_post_with_the_csrf_token_from_the_page_is_accepted(gateway, people):
    client = sign_in(Client(HTTP_HOST="acme.localhost", enforce_csrf_checks=True), people["acme_viewer"], "acme")
    page = client.get("/explorer/", form(gateway)).content.decode()
    token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    assert client.post(URL, {**form(gateway), "csrfmiddlewaretoken": token}).status_code == 200


@pytest.mark.parametrize(
    "bad", [{"bucket": "2h"}, {"from": "nope"}, {"to": "2026-11-17T00:00"}, {"sensor": "x"}, {"device": ""}]
)
def test_bad_input_is_a_400_with_the_form_errors(as_acme, gateway, bad):
    response = as_acme("acme_viewer").post(URL, {**form(gateway), **bad})
    assert response.status_code == 400
    assert response.context["form"].errors and "invalid-feedback" in response.content.decode()


def test_outsiders_cannot_export(acme_client, people, gateway):
    assert sign_in(acme_client, people["outsider"], "acme").post(URL, form(gateway)).status_code == 403


def test_a_device_id_with_odd_characters_makes_a_safe_filename(as_acme, in_acme, frozen):
    ingest([reading(device='gw "1"/;x', sensor="t", minutes=5)], source="mqtt", now=NOW)
    device = Device.objects.get()
    response = as_acme("acme_viewer").post(
        URL, form(device, **{"from": (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")})
    )
    assert response["Content-Disposition"] == 'attachment; filename="gw_1_x-t-20261120T1130-20261120T1231-raw.csv"'
