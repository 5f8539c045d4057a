"""The console's cross-tenant telemetry query (seed 001): buckets per sensor computed from each
tenant's own readings, "all tenants" merged in order, pages, drill-down, CSV by POST."""

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from statistics import mean

import pytest
from django.test import Client
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.audit.models import AuditLog
from telemetry.models import Device, Reading, Sensor

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
RANGE = {"from": "2026-11-30T10:00:00Z", "to": "2026-11-30T11:00:00Z"}


def readings_of(schema: str, device_id: str, key: str, points: list[tuple[datetime, float]]):
    with schema_context(schema):
        device, _ = Device.objects.get_or_create(device_id=device_id)
        sensor, _ = Sensor.objects.get_or_create(device=device, key=key, defaults={"unit": "°C"})
        Reading.objects.bulk_create([Reading(sensor=sensor, ts=ts, value=value) for ts, value in points])


def seconds(n):
    return T0 + timedelta(seconds=n)


@pytest.fixture
def data(db):
    """acme: two sensors; globex: one sensor with the same ids as acme's (ids repeat across tenants)."""
    acme_t = [(seconds(5), 20.0), (seconds(30), 22.0), (seconds(61), 25.0), (seconds(150), 19.0)]
    acme_h = [(seconds(10), 40.0), (seconds(70), 45.0)]
    globex_t = [(seconds(1), 5.0), (seconds(59), 7.0), (seconds(125), 9.0), (seconds(126), 11.0)]
    readings_of("acme", "gw-1", "temp", acme_t)
    readings_of("acme", "gw-1", "hum", acme_h)
    readings_of("globex", "gw-1", "temp", globex_t)
    return {("acme", "gw-1", "temp"): acme_t, ("acme", "gw-1", "hum"): acme_h, ("globex", "gw-1", "temp"): globex_t}


def expected_buckets(data, width=60):
    """(bucket, tenant, device, sensor, avg, min, max, last, count) from the raw readings, newest first."""
    rows = []
    for (tenant, device, sensor), points in data.items():
        groups = {}
        for ts, value in points:
            start = datetime.fromtimestamp(int(ts.timestamp()) // width * width, UTC)
            groups.setdefault(start, []).append((ts, value))
        for start, group in groups.items():
            values = [v for _, v in group]
            last = max(group)[1]
            rows.append((start, tenant, device, sensor, mean(values), min(values), max(values), last, len(values)))
    return sorted(rows, key=lambda r: (-r[0].timestamp(), r[1], r[2], r[3]))


def shown_rows(html: str) -> list[tuple]:
    rows = []
    for chunk in html.split('data-testid="bucket-row"')[1:]:
        cells = [re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<td[^>]*>(.*?)</td>", chunk, re.S)]
        rows.append(
            (
                " ".join(cells[0]),
                cells[1][0],
                cells[2][0],
                cells[3][0],
                *(float(c[0]) for c in cells[4:8]),
                int(cells[8][0]),
            )
        )
    return rows


def as_shown(row) -> tuple:
    start, tenant, device, sensor, *stats, count = row
    return (f"{start:%Y-%m-%d %H:%M}", tenant, device, sensor, *(round(v, 3) for v in stats), count)


def test_all_tenants_equals_each_tenants_own_buckets_merged_in_order(staff_client, data):
    response = staff_client.get("/ops/telemetry", {**RANGE, "bucket": "1m"})
    assert response.status_code == 200
    assert shown_rows(response.content.decode()) == [as_shown(r) for r in expected_buckets(data)]


def test_one_tenant_and_sensor_filters_narrow_the_rows(staff_client, data):
    response = staff_client.get(
        "/ops/telemetry/", {**RANGE, "tenant_slug": "globex", "sensor_id": "temp", "bucket": "1m"}
    )
    only = {k: v for k, v in data.items() if k[0] == "globex"}
    assert shown_rows(response.content.decode()) == [as_shown(r) for r in expected_buckets(only)]
    response = staff_client.get("/ops/telemetry", {**RANGE, "device_id": "gw-1", "sensor_id": "hum", "bucket": "5m"})
    hum = {k: v for k, v in data.items() if k[2] == "hum"}
    assert shown_rows(response.content.decode()) == [as_shown(r) for r in expected_buckets(hum, width=300)]


def test_pages_follow_each_other_without_gaps_or_repeats(staff_client, data):
    expected = [as_shown(r) for r in expected_buckets(data)]
    seen, offset = [], 0
    while True:
        html = staff_client.get(
            "/ops/telemetry", {**RANGE, "bucket": "1m", "limit": 2, "offset": offset}
        ).content.decode()
        seen += shown_rows(html)
        if 'href="#" data-testid="next"' in html:  # the last page: "Next" leads nowhere
            break
        offset += 2
        assert offset < 20
    assert seen == expected


def test_limits_and_bad_parameters_are_form_errors(staff_client, data):
    cases = [
        ({"limit": 1001}, "less than or equal to 1000"),
        ({"bucket": "1d"}, "Select a valid choice"),
        ({"from": "yesterday"}, "ISO 8601"),
        ({"from": "2026-11-30T11:00:00Z", "to": "2026-11-30T10:00:00Z"}, "must be after"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z", "bucket": "1m"}, "at most 7 days"),
        ({"tenant_slug": "nobody"}, "Select a valid choice"),
        ({"offset": 9900, "limit": 200}, "row 10,000"),
    ]
    for params, message in cases:
        response = staff_client.get("/ops/telemetry", params)
        assert response.status_code == 400 and message in response.content.decode(), params


def test_default_limit_is_200(staff_client, acme):
    points = [(datetime.now(UTC) - timedelta(minutes=n, seconds=1), float(n)) for n in range(230)]
    readings_of("acme", "gw-9", "temp", points)
    html = staff_client.get("/ops/telemetry", {"tenant_slug": "acme"}).content.decode()
    assert html.count('data-testid="bucket-row"') == 200


def test_drilldown_shows_the_newest_raw_readings_of_a_bucket_with_stats(staff_client, data):
    params = {"tenant_slug": "acme", "device_id": "gw-1", "sensor_id": "temp"}
    html = staff_client.get("/ops/telemetry", {**RANGE, **params, "bucket": "1m"}).content.decode()
    link = re.findall(r'href="(/ops/telemetry/drilldown\?[^"]+)"', html)[-1].replace("&amp;", "&")  # oldest bucket
    html = staff_client.get(link).content.decode()
    assert html.count('data-testid="raw-row"') == 2
    assert re.search(r'data-testid="stat-count">2<', html) and re.search(r'data-testid="stat-avg">21.000<', html)
    html = staff_client.get("/ops/telemetry/drilldown", {**params, "limit": 3}).content.decode()
    assert html.count('data-testid="raw-row"') == 3 and "newest 3 of 4" in html
    values = re.findall(r'<td class="text-end">([\d.]+)</td></tr>', html)
    assert values == ["19.0", "25.0", "22.0"]  # newest first


def test_drilldown_of_another_tenants_sensor_names_none(staff_client, data):
    response = staff_client.get(
        "/ops/telemetry/drilldown", {"tenant_slug": "globex", "device_id": "gw-1", "sensor_id": "hum"}
    )
    assert response.status_code == 200 and "Globex has no sensor hum" in response.content.decode()
    assert staff_client.get("/ops/telemetry/drilldown", {"tenant_slug": "acme", "limit": 1001}).status_code == 400


def csv_of(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_csv_by_post_has_the_querys_rows_and_is_audited(staff_client, data):
    response = staff_client.post("/ops/telemetry/export", {**RANGE, "bucket": "1m", "limit": 2})
    rows = csv_of(response)
    expected = expected_buckets(data)
    assert len(rows) == len(expected)  # every row of the query, not only the page
    assert [(r["tenant"], r["sensor_id"], float(r["avg"]), int(r["count"])) for r in rows] == [
        (e[1], e[3], e[4], e[8]) for e in expected
    ]
    assert rows[0]["bucket"] == expected[0][0].isoformat()
    with schema_context("public"):
        [entry] = AuditLog.objects.filter(action="telemetry.exported")
    assert entry.actor_email == "staff@example.com" and entry.changes["bucket"] == "1m"


ISO_RANGE = {"from": "2026-11-30T10:00:00+00:00", "to": "2026-11-30T11:00:00+00:00"}


def ops_reads(action: str) -> list:
    with schema_context("public"):
        return list(AuditLog.objects.filter(action=action).order_by("id"))


def test_every_query_page_and_drilldown_is_audited_like_the_csv(staff_client, data, acme):
    """Staff reading tenants' telemetry on screen are in the ops log as an export is: who, the
    tenant (or all), the filters. A refused form reads nothing and records nothing."""
    staff_client.get("/ops/telemetry", {**RANGE, "bucket": "1m", "limit": 2})
    staff_client.get("/ops/telemetry", {**RANGE, "bucket": "5m", "tenant_slug": "acme", "sensor_id": "temp"})
    staff_client.get("/ops/telemetry")  # the empty form: no query ran
    assert staff_client.get("/ops/telemetry", {"bucket": "1d"}).status_code == 400
    every, acme_only = ops_reads("telemetry.queried")
    assert every.actor_email == "staff@example.com" and every.object_id == ""
    assert every.changes == {**ISO_RANGE, "tenants": "all", "bucket": "1m", "limit": 2, "offset": 0}
    assert acme_only.object_id == str(acme.pk) and acme_only.changes["sensor_id"] == "temp"
    assert acme_only.changes["tenants"] == "acme" and acme_only.changes["bucket"] == "5m"

    params = {"tenant_slug": "acme", "device_id": "gw-1", "sensor_id": "temp"}
    staff_client.get("/ops/telemetry/drilldown", {**params, **RANGE, "limit": 3})
    assert staff_client.get("/ops/telemetry/drilldown", {**params, "limit": 1001}).status_code == 400
    [drill] = ops_reads("telemetry.drilled_down")
    assert drill.object_id == str(acme.pk) and drill.actor_email == "staff@example.com"
    assert drill.changes == {**ISO_RANGE, "tenants": "acme", "device_id": "gw-1", "sensor_id": "temp", "limit": 3}
    with schema_context("acme"):
        assert not AuditLog.objects.filter(action__startswith="telemetry.").exists()  # the console's log only


def test_csv_needs_post_and_csrf(staff_client, people):
    assert staff_client.get("/ops/telemetry/export", RANGE).status_code == 405
    from helpers import sign_in_staff

    strict = sign_in_staff(Client(HTTP_HOST="localhost", enforce_csrf_checks=True), people["staff"])
    assert strict.post("/ops/telemetry/export", RANGE).status_code == 403


def test_csv_stops_at_10000_rows(staff_client, acme, monkeypatch):
    monkeypatch.setattr("portal.ops.telemetry_views.MAX_EXPORT_ROWS", 3)
    readings_of("acme", "gw-1", "temp", [(seconds(60 * n), 1.0) for n in range(5)])
    assert len(csv_of(staff_client.post("/ops/telemetry/export", {**RANGE, "bucket": "1m"}))) == 3


def test_the_telemetry_pages_are_404_on_tenant_hosts(as_acme):
    for path in ("/ops/telemetry", "/ops/telemetry/drilldown", "/ops/telemetry/export"):
        assert as_acme("acme_owner").get(path).status_code == 404


text = st.text(max_size=30)


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(["/ops/telemetry", "/ops/telemetry/drilldown"]),
    params=st.dictionaries(
        st.sampled_from(["tenant_slug", "device_id", "sensor_id", "from", "to", "bucket", "limit", "offset"]),
        st.one_of(text, st.sampled_from(["acme", "1m", "5m", "1h", "2026-11-30T10:00:00Z", "-1", "0", "99999999999"])),
        max_size=6,
    ),
)
def test_telemetry_pages_never_500(staff_client, path, params):
    assert staff_client.get(path, params).status_code < 500


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    form=st.dictionaries(
        st.sampled_from(["tenant_slug", "device_id", "sensor_id", "from", "to", "bucket", "limit"]), text, max_size=5
    )
)
def test_telemetry_export_never_500(staff_client, form):
    assert staff_client.post("/ops/telemetry/export", form).status_code < 500
