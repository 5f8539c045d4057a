"""Analytics for integrations (seed 002): history, stats and Home Assistant, from rollups + tail."""

import random
from datetime import timedelta
from datetime import timezone as dt_timezone

import pytest
from api.bulk_helpers import equipment, gz, make_key, post
from django_tenants.utils import schema_context
from telemetry_builders import NOW, expected_points

from portal.facilities.models import Asset, DeviceBinding, Site
from telemetry.models import Device, Reading, Sensor
from telemetry.rollups import roll_up

BASE = "/api/v1/analytics"
SENSORS = (("s-temp", "temperatura"), ("s-hum", "umidade"))


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def frozen(time_machine):
    time_machine.move_to(NOW, tick=False)
    return NOW


@pytest.fixture
def key(db):
    return make_key("acme")


@pytest.fixture
def loaded(acme_client, key, frozen):
    """Equipment eq-a: two sensors, a reading every 20 minutes for 3 days; rolled up, then a
    few more readings (the open hour and a late one in an old hour) left for the raw tail."""
    rng = random.Random(7)
    readings = [
        {
            "sensor_uuid": key,
            "sensor_tipo": kind,
            "valor": round(rng.uniform(-20, 5), 2),
            "timestamp": iso(NOW - timedelta(minutes=20 * i + 10)),
        }
        for i in range(3 * 72)
        for key, kind in SENSORS
    ]
    item = {"equip_uuid": "eq-a", "equip_nome": "Freezer A", "sensor": readings}
    assert post(acme_client, gz([item]), key).json()["written"] == 2 * 3 * 72
    with schema_context("acme"):
        roll_up()
    late = [
        {
            "sensor_uuid": "s-temp",
            "sensor_tipo": "temperatura",
            "valor": -3.5,
            "timestamp": iso(NOW - timedelta(minutes=5)),
        },
        {
            "sensor_uuid": "s-temp",
            "sensor_tipo": "temperatura",
            "valor": 9.25,
            "timestamp": iso(NOW - timedelta(hours=10, minutes=7)),
        },
    ]
    assert (
        post(acme_client, gz([{"equip_uuid": "eq-a", "equip_nome": "Freezer A", "sensor": late}]), key).json()[
            "written"
        ]
        == 2
    )
    with schema_context("acme"):
        return {s.key: s.pk for s in Sensor.objects.all()}


def get(client, key, path, **params):
    return client.get(f"{BASE}{path}", params, HTTP_X_API_KEY=key)


def expected_series(sensor_ids, start, end, bucket):
    """{sensor id: points as JSON}, worked out from the raw readings, not by the query code."""
    with schema_context("acme"):
        points = expected_points(sensor_ids, start, end, bucket)
    series = {pk: [] for pk in sensor_ids}
    for p in points:
        series[p["sensor_id"]].append(
            {
                "bucket": iso(p["bucket"]),
                "avg": pytest.approx(p["avg"], rel=1e-12),  # summed in another order: the last bit may differ
                **{name: p[name] for name in ("min", "max", "last", "count")},
            }
        )
    return series


def test_equipment_history_by_hour_equals_the_raw_readings_bucketed(acme_client, key, loaded):
    start, end = NOW - timedelta(hours=30), NOW
    response = get(acme_client, key, "/equipment/eq-a/history", period="hour", **{"from": iso(start), "to": iso(end)})
    assert response.status_code == 200
    body = response.json()
    assert (body["equip_uuid"], body["equip_nome"], body["period"], body["capped"]) == (
        "eq-a",
        "Freezer A",
        "hour",
        False,
    )
    assert (body["from"], body["to"]) == (iso(start), iso(end))
    by_key = {s["sensor_uuid"]: s for s in body["sensors"]}
    assert by_key["s-temp"]["sensor_tipo"] == "temperatura"
    expected = expected_series([loaded["s-hum"], loaded["s-temp"]], start, end, "1h")
    for sensor_key, pk in loaded.items():
        assert by_key[sensor_key]["data"] == expected[pk]
    # the tail is there: the open hour and the late reading's hour
    temp = {point["bucket"]: point for point in by_key["s-temp"]["data"]}
    assert temp[iso(NOW.replace(minute=0))]["last"] == -3.5
    assert temp[iso((NOW - timedelta(hours=10, minutes=7)).replace(minute=0))]["max"] >= 9.25


def test_history_defaults_to_the_last_24_hours(acme_client, key, loaded):
    body = get(acme_client, key, "/equipment/eq-a/history").json()
    assert (body["period"], body["from"], body["to"]) == ("hour", iso(NOW - timedelta(hours=24)), iso(NOW))
    expected = expected_series([loaded["s-hum"], loaded["s-temp"]], NOW - timedelta(hours=24), NOW, "1h")
    assert [s["data"] for s in body["sensors"]] == [expected[loaded["s-hum"]], expected[loaded["s-temp"]]]


def test_daily_history_defaults_to_30_days_and_counts_every_reading(acme_client, key, loaded):
    body = get(acme_client, key, "/equipment/eq-a/history", period="day").json()
    assert body["from"] == iso(NOW - timedelta(days=30))
    temp = next(s for s in body["sensors"] if s["sensor_uuid"] == "s-temp")
    assert (
        temp["data"]
        == expected_series([loaded["s-hum"], loaded["s-temp"]], NOW - timedelta(days=30), NOW, "1d")[loaded["s-temp"]]
    )
    with schema_context("acme"):
        assert sum(p["count"] for p in temp["data"]) == Reading.objects.filter(sensor_id=loaded["s-temp"]).count()


def test_sensor_history_is_one_sensors_series(acme_client, key, loaded):
    body = get(acme_client, key, "/sensor/s-hum/history", period="hour").json()
    assert (body["sensor_uuid"], body["sensor_tipo"], body["equip_uuid"]) == ("s-hum", "umidade", "eq-a")
    assert body["data"] == expected_series([loaded["s-hum"]], NOW - timedelta(hours=24), NOW, "1h")[loaded["s-hum"]]


def test_stats_total_each_sensor_over_the_range(acme_client, key, loaded):
    start = NOW - timedelta(days=2)
    body = get(acme_client, key, "/equipment/eq-a/stats", period="day", **{"from": iso(start)}).json()
    stats = {s["sensor_uuid"]: s for s in body["sensors"]}
    with schema_context("acme"):
        in_range = Reading.objects.filter(
            sensor_id=loaded["s-temp"], ts__gte=start.replace(hour=0, minute=0), ts__lt=NOW
        )
        values = list(in_range.values_list("value", flat=True))
    temp = stats["s-temp"]
    assert temp["count"] == len(values)
    assert (temp["min"], temp["max"]) == (min(values), max(values))
    assert temp["avg"] == pytest.approx(sum(values) / len(values))
    assert temp["first_bucket"] == iso(start.replace(hour=0, minute=0)) and temp["last_bucket"] == iso(
        NOW.replace(hour=0, minute=0)
    )


def test_stats_of_a_sensor_without_readings_are_empty(acme_client, key, loaded):
    body = get(
        acme_client,
        key,
        "/equipment/eq-a/stats",
        **{"from": iso(NOW - timedelta(days=400)), "to": iso(NOW - timedelta(days=399))},
    ).json()
    assert all(s["count"] == 0 and s["avg"] is None and s["first_bucket"] is None for s in body["sensors"])


def test_home_assistant_gets_state_and_attributes(acme_client, key, loaded):
    response = get(acme_client, key, "/home-assistant/eq-a")
    assert response.status_code == 200
    body = response.json()
    with schema_context("acme"):
        latest_humidity = Reading.objects.filter(sensor_id=loaded["s-hum"]).order_by("-ts").first()
    assert body["state"] == latest_humidity.value  # the first sensor's (by uuid) latest value
    attributes = body["attributes"]
    assert attributes["friendly_name"] == "Freezer A" and attributes["equip_uuid"] == "eq-a"
    assert attributes["temperatura"] == -3.5 and attributes["umidade"] == latest_humidity.value
    assert attributes["last_updated"] == iso(NOW - timedelta(minutes=5))
    assert [s["sensor_uuid"] for s in attributes["sensors"]] == ["s-hum", "s-temp"]
    # the short path of the design document answers the same
    assert acme_client.get("/api/home-assistant/eq-a", HTTP_X_API_KEY=key).json() == body


def test_home_assistant_names_sensors_of_one_type_by_their_uuid(acme_client, key, frozen):
    item = equipment(
        "eq-b", sensors=(("t-in", "temperatura"), ("t-out", "temperatura"), ("u", "unit_of_measurement")), readings=1
    )
    post(acme_client, gz([item]), key)
    attributes = get(acme_client, key, "/home-assistant/eq-b").json()["attributes"]
    assert {"t-in", "t-out", "u"} <= set(attributes) and "temperatura" not in attributes


def test_an_equipment_without_readings_has_a_null_state(acme_client, key, in_acme):
    Asset.objects.create(site=Site.objects.create(name="Empty"), tag="eq-empty", name="Nothing yet")
    body = acme_client.get(f"{BASE}/home-assistant/eq-empty", HTTP_X_API_KEY=key).json()
    assert body["state"] is None and body["attributes"]["last_updated"] is None


def test_an_asset_tag_names_equipment_too(acme_client, key, loaded):
    with schema_context("acme"):
        asset = Asset.objects.create(site=Site.objects.create(name="Plant"), tag="CHILLER-7", name="Chiller 7")
        DeviceBinding.objects.filter(device=Device.objects.get(device_id="eq-a")).update(asset=asset)
    body = get(acme_client, key, "/equipment/CHILLER-7/history").json()
    assert body["equip_nome"] == "Chiller 7" and len(body["sensors"]) == 2


@pytest.mark.parametrize(
    "path",
    [
        "/equipment/nope/history",
        "/sensor/nope/history",
        "/equipment/nope/stats",
        "/home-assistant/nope",
        "/equipment/no%00pe/history",
        "/sensor/%00/history",
    ],
)
def test_an_unknown_uuid_is_404(acme_client, key, path):
    response = get(acme_client, key, path)
    assert response.status_code == 404 and response.json()["error"]["code"] in {
        "equipment_not_found",
        "sensor_not_found",
    }


@pytest.mark.parametrize(
    "params",
    [
        {"period": "week"},
        {"from": "yesterday"},
        {"to": "2026-13-45"},
        {"from": "2026-11-20T12:00Z", "to": "2026-11-20T11:00Z"},
        {"from": "2000-01-01"},
    ],
)
def test_bad_parameters_are_400(acme_client, key, loaded, params):
    for path in ["/equipment/eq-a/history", "/sensor/s-temp/history", "/equipment/eq-a/stats"]:
        response = get(acme_client, key, path, **params)
        assert response.status_code == 400 and response.json()["error"]["code"] == "bad_parameter"


def test_offsets_beyond_14_hours_are_400_and_others_name_their_instant(acme_client, key, loaded):
    # found by the OpenAPI fuzz: +18:03 is valid ISO 8601 for Python, out of range for PostgreSQL (a
    # 500); no zone is further than ±14:00 from UTC, so such an offset is refused (issue 11)
    east = NOW.astimezone(dt_timezone(timedelta(hours=13, minutes=45))).isoformat()
    for path in ["/equipment/eq-a/history", "/sensor/s-temp/history", "/equipment/eq-a/stats"]:
        response = get(acme_client, key, path, to="2026-11-21T06:33:00+18:03")
        assert response.status_code == 400 and response.json()["error"]["code"] == "bad_parameter", response.content
        response = get(acme_client, key, path, to=east)
        assert response.status_code == 200 and response.json()["to"] == iso(NOW)
    response = get(acme_client, key, "/equipment/eq-a/stats", to="9999-12-31T23:59:00-14:00")
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_parameter"


def test_epoch_seconds_are_accepted(acme_client, key, loaded):
    start = NOW - timedelta(hours=3)
    body = get(
        acme_client,
        key,
        "/sensor/s-temp/history",
        **{"from": str(int(start.timestamp())), "to": str(int(NOW.timestamp()))},
    ).json()
    assert (
        body["from"] == iso(start)
        and body["data"] == expected_series([loaded["s-temp"]], start, NOW, "1h")[loaded["s-temp"]]
    )


def test_analytics_need_a_key_of_this_tenant(acme_client, globex_client, key, loaded):
    assert acme_client.get(f"{BASE}/equipment/eq-a/history").status_code == 401
    assert globex_client.get(f"{BASE}/equipment/eq-a/history", HTTP_X_API_KEY=key).status_code == 401
    assert globex_client.get(f"{BASE}/equipment/eq-a/history", HTTP_X_API_KEY=make_key("globex")).status_code == 404


def test_analytics_are_rate_limited_per_key(acme_client, key, loaded, settings):
    settings.FIELDWATCH_KEY_RATE = "3/60"
    statuses = [get(acme_client, key, "/home-assistant/eq-a").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_analytics_are_get_only(acme_client, key, loaded):
    assert acme_client.post(f"{BASE}/home-assistant/eq-a", HTTP_X_API_KEY=key).status_code == 405
