import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context
from telemetry_builders import NOW, reading

from telemetry.ingest import ingest
from telemetry.models import Device, Sensor
from telemetry.queries import latest_values


def url(device):
    return f"/devices/{device.pk}/"


def test_it_shows_the_facts_of_the_device(as_acme, make_device, frozen):
    device = make_device("gw-roof", name="Roof gateway", kind="controller", firmware="2.1", mac="AA:BB:CC:00:00:01")
    response = as_acme("acme_viewer").get(url(device))
    assert response.status_code == 200
    facts = response.content.decode()
    for text in ("gw-roof", "Roof gateway", "Controller", "AA:BB:CC:00:00:01", "2.1", ">online<", "3 minutes ago"):
        assert text in facts


def test_each_sensor_shows_its_latest_value_freshness_and_range(as_acme, make_device, frozen):
    device = make_device("gw-1", sensors=("temp",), minutes=30, value=18.0)
    ingest([reading(device="gw-1", sensor="temp", value=21.25, minutes=20)], source="mqtt", now=NOW)  # newest
    ingest([reading(device="gw-1", sensor="hum", value=55.5, minutes=2, unit="%")], source="mqtt", now=NOW)
    Sensor.objects.filter(key="temp").update(min_value=-40, max_value=85, label="Supply air")
    Sensor.objects.create(device=device, key="co2", unit="ppm")  # never reported
    response = as_acme("acme_viewer").get(url(device))
    rows = {row.sensor.key: row for row in response.context["sensor_rows"]}
    assert list(rows) == ["co2", "hum", "temp"]
    latest = latest_values(Sensor.objects.values_list("pk", flat=True))
    assert (rows["temp"].ts, rows["temp"].value) == latest[rows["temp"].sensor.pk] == (NOW.replace(minute=10), 21.25)
    assert rows["temp"].fresh is False and rows["hum"].fresh is True  # 20 minutes old vs 2
    assert rows["co2"].value is None
    html = response.content.decode()
    assert (
        "Supply air" in html
        and "21.25" in html
        and "stale" in html
        and "-40.0 to 85.0 °C" in html
        and "no data" in html
    )


def test_each_sensor_links_to_the_explorer_prefilled(as_acme, make_device, frozen):
    device = make_device("gw-1")
    sensor = device.sensors.get()
    client = as_acme("acme_viewer")
    html = client.get(url(device)).content.decode()
    link = f"/explorer/?device={device.pk}&amp;sensor={sensor.pk}"
    assert link in html
    response = client.get(link.replace("&amp;", "&"), follow=True)
    assert response.context["form"].cleaned_data["sensor"] == sensor


def test_a_device_of_another_tenant_is_404(as_acme, in_acme):
    with schema_context("globex"):
        ingest([reading(device="globex-gw")], source="mqtt", now=NOW)
        theirs = Device.objects.get(device_id="globex-gw")
    assert not Device.objects.filter(pk=theirs.pk).exists()  # acme's schema has no such row
    response = as_acme("acme_owner").get(url(theirs))
    assert response.status_code == 404
    assert "globex-gw" not in response.content.decode()


def test_a_missing_device_is_404(as_acme, in_acme):
    assert as_acme("acme_viewer").get("/devices/999999/").status_code == 404


def test_query_count_does_not_grow_with_sensors(as_acme, make_device, frozen, django_assert_max_num_queries):
    client = as_acme("acme_viewer")
    device = make_device("gw-1", sensors=[f"s{n:02}" for n in range(5)])
    client.get(url(device))
    with CaptureQueriesContext(connection) as five:
        assert len(client.get(url(device)).context["sensor_rows"]) == 5
    make_device("gw-1", sensors=[f"s{n:02}" for n in range(50)], minutes=1)
    with django_assert_max_num_queries(len(five)):
        assert len(client.get(url(device)).context["sensor_rows"]) == 50


@pytest.mark.parametrize("path", ["/devices/abc/", "/devices/-1/"])
def test_a_malformed_id_is_404(as_acme, in_acme, path):
    assert as_acme("acme_viewer").get(path).status_code == 404


def test_a_telemetry_gateway_is_not_offered_registration_or_usage_events(as_acme, make_device, frozen):
    device = make_device("gw-mqtt", kind="gateway")
    html = as_acme("acme_admin").get(url(device)).content.decode()
    for text in ("Unregistered", "Register device", "usage events", "Last handshake", 'data-testid="registration"'):
        assert text not in html, text
    assert "Rotate token" in html  # it may still post over HTTP with a token


def test_a_counting_device_says_whether_it_is_registered(as_acme, make_device, frozen):
    device = make_device("ctr-1", kind="counter")
    html = as_acme("acme_admin").get(url(device)).content.decode()
    assert "Unregistered" in html and "Register device" in html and "No usage events yet" in html
    handshaken = make_device("gw-http", kind="gateway", last_handshake_at=NOW)
    assert "Register device" in as_acme("acme_admin").get(url(handshaken)).content.decode()


def test_a_locks_mqtt_password_is_its_device_key_not_a_secret_of_the_device_page(as_acme, in_acme):
    from lock_builders import make_lock

    from telemetry.models import MqttCredential

    lock = make_lock("SIDE-DOOR")
    key = lock.device.issue_token()
    lock.device.save()
    credential = MqttCredential.objects.get(device=lock.device)
    assert credential.username == "acme.SIDE-DOOR" and credential.matches(key)
    client = as_acme("acme_operator")
    page = client.get(url(lock.device))
    assert 'data-testid="lock-mqtt-note"' in page.content.decode()
    assert f"/devices/{lock.device.pk}/mqtt/issue/" not in page.content.decode()
    response = client.post(f"/devices/{lock.device.pk}/mqtt/issue/", follow=True)
    assert "its MQTT password is its device key" in response.content.decode()
    credential.refresh_from_db()
    assert credential.matches(key)  # the key still opens the broker: no random secret replaced it
