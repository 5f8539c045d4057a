"""Seed 000's telemetry API on its paths: latest, history (its response shape, its 10,000 raw and
2,000 aggregated caps with a warning), summary, telemetry, aggregates and readings; values
computed here from the raw readings, not by the query layer under test."""

from datetime import UTC, datetime, timedelta
from statistics import mean

import pytest
import time_machine
from django.test import Client
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.api.models import ApiKey
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import Device, Reading, Sensor

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture
def frozen(db):
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def viewer(db):
    with schema_context("acme"):
        return ApiKey.issue("reader", role="viewer")[1]


def get(path, api_key, host="acme.localhost", **params):
    return Client(HTTP_HOST=host).get(path, params, HTTP_X_API_KEY=api_key)


@pytest.fixture
def esp(frozen):
    """ESP32-01 with a temperature sensor (one reading a minute for 2 h) and a humidity sensor."""
    temps = [(T0 + timedelta(minutes=n), 20.0 + n % 7) for n in range(120)]
    readings = [ReadingIn("ESP32-01", "temp_001", ts, v, unit="°C", type="temperature") for ts, v in temps]
    readings.append(ReadingIn("ESP32-01", "hum_001", T0 + timedelta(minutes=30), 40.0, unit="%", type="humidity"))
    with schema_context("acme"):
        # through the one ingest path, which marks the hours the rollups must recompute
        assert ingest(readings, source="http", now=NOW).written == 121
        Device.objects.filter(device_id="ESP32-01").update(last_seen=NOW)
    return temps


def test_history_has_seed_000s_shape(viewer, esp):
    body = get(
        "/ingest/history/ESP32-01/",
        viewer,
        **{"from": "2026-11-30T10:00:00Z", "to": "2026-11-30T10:05:00Z", "sensor_type": "temperature"},
    ).json()
    assert body["device_id"] == "ESP32-01" and body["warning"] is None and not body["truncated"]
    assert [(p["timestamp"][:16], p["sensor_type"], p["value"], p["unit"]) for p in body["data"]] == [
        (f"2026-11-30T10:0{n}", "temperature", esp[n][1], "°C") for n in range(5)
    ]


def test_history_by_interval_averages_the_raw_readings(viewer, esp):
    body = get(
        "/ingest/history/ESP32-01/",
        viewer,
        **{
            "from": "2026-11-30T10:00:00Z",
            "to": "2026-11-30T11:00:00Z",
            "interval": "5m",
            "sensor_type": "temperature",
        },
    ).json()
    expected = [mean(v for _, v in esp[n : n + 5]) for n in range(0, 60, 5)]
    assert [round(p["value"], 9) for p in body["data"]] == [round(v, 9) for v in expected]
    assert all(p["count"] == 5 for p in body["data"])


def test_history_caps_raw_at_10000_and_aggregates_at_2000_with_a_warning(viewer, frozen, monkeypatch):
    from portal.devices import api

    monkeypatch.setattr(api, "MAX_RAW", 3)
    monkeypatch.setattr(api, "MAX_AGGREGATED", 2)
    with schema_context("acme"):
        sensor = Sensor.objects.create(device=Device.objects.create(device_id="d", last_seen=NOW), key="s")
        Reading.objects.bulk_create(
            [Reading(sensor=sensor, ts=NOW - timedelta(minutes=n + 1), value=n) for n in range(10)]
        )
    raw = get("/ingest/history/d/", viewer).json()
    assert raw["truncated"] and "3" in raw["warning"] and [p["value"] for p in raw["data"]] == [2.0, 1.0, 0.0]
    buckets = get("/ingest/history/d/", viewer, interval="1m").json()
    assert buckets["truncated"] and len(buckets["data"]) == 2
    assert (api.MAX_RAW, api.MAX_AGGREGATED) == (3, 2)


def test_the_real_caps_are_seed_000s():
    from portal.devices import api

    assert (api.MAX_RAW, api.MAX_AGGREGATED) == (10_000, 2_000)


def test_latest_and_summary(viewer, esp):
    latest = get("/ingest/latest/ESP32-01/", viewer).json()
    assert latest["status"] == "warning"  # humidity sent nothing within the online window
    assert [(r["sensor_id"], r["value"]) for r in latest["readings"]] == [("hum_001", 40.0), ("temp_001", esp[-1][1])]
    summary = get("/ingest/summary/ESP32-01/", viewer, sensor_type="temperature").json()
    [temp] = summary["sensors"]
    values = [v for _, v in esp]
    assert (temp["count"], temp["min"], temp["max"], temp["last"]) == (120, min(values), max(values), esp[-1][1])
    assert round(temp["avg"], 9) == round(mean(values), 9)


def test_tenant_wide_queries(viewer, esp):
    window = {"from": "2026-11-30T10:00:00Z", "to": "2026-11-30T12:00:00Z"}
    aggregates = get("/ingest/aggregates/", viewer, sensor_id="temp_001", **window).json()
    assert aggregates["interval"] == "1h" and [p["count"] for p in aggregates["data"]] == [60, 60]
    assert aggregates["data"][0]["device_id"] == "ESP32-01"
    readings = get("/ingest/readings/", viewer, device_id="ESP32-01", page_size=5, **window).json()
    assert readings["count"] == 121 and readings["results"][0]["value"] == esp[-1][1]
    telemetry = get("/ingest/telemetry/", viewer, device_id="ESP32-01", interval="1h", **window).json()
    assert sum(p["count"] for p in telemetry["data"]) == 121


def test_bad_ranges_and_unknown_devices(viewer, esp):
    assert get("/ingest/history/nope/", viewer).status_code == 404
    for params in ({"interval": "2m"}, {"from": "2026-11-30T12:00:00Z", "to": "2026-11-30T10:00:00Z"}, {"from": "x"}):
        response = get("/ingest/history/ESP32-01/", viewer, **params)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request", params


def test_another_tenant_sees_none_of_it(esp):
    with schema_context("globex"):
        globex = ApiKey.issue("reader", role="viewer")[1]
    assert get("/ingest/latest/ESP32-01/", globex, host="globex.localhost").status_code == 404
    assert get("/ingest/readings/", globex, host="globex.localhost").json()["count"] == 0
    assert Client(HTTP_HOST="acme.localhost").get("/ingest/latest/ESP32-01/").status_code == 401


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(
        [
            "/ingest/history/ESP32-01/",
            "/ingest/summary/ESP32-01/",
            "/ingest/latest/x/",
            "/ingest/telemetry/",
            "/ingest/aggregates/",
            "/ingest/readings/",
        ]
    ),
    params=st.dictionaries(
        st.sampled_from(["from", "to", "interval", "sensor_type", "sensor_id", "device_id", "page", "page_size"]),
        st.text(max_size=30)
        | st.sampled_from(["2026-11-30T10:00:00Z", "1d", "raw", "0", "-5", "9999-12-31T00:00:00+14:00"]),
        max_size=5,
    ),
)
def test_the_telemetry_api_never_500s(viewer, esp, path, params):
    assert get(path, viewer, **params).status_code < 500


def test_times_at_the_ends_of_the_calendar_are_400_not_overflow(viewer, esp):
    for params in ({"to": "0001-01-01T00:00:00Z"}, {"from": "9999-12-31T23:59:59Z"}, {"to": "1970-01-01T00:00:00Z"}):
        assert get("/ingest/history/ESP32-01/", viewer, **params).status_code == 400, params


def test_a_nul_in_the_device_id_is_404(viewer, esp):
    assert get("/ingest/latest/ESP%00/", viewer).status_code == 404
