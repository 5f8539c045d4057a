"""Editing a device (name, kind, notes) and its sensors (label, unit, type, range, precision,
enabled) from the device and asset pages: audited, validated, and what ingest then accepts."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.audit.models import AuditLog
from portal.facilities.models import Asset, DeviceBinding, Site
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import DeadLetter, Device, Reading, Sensor


@pytest.fixture
def sensor(db):
    with schema_context("acme"):
        ingest([ReadingIn("gw-1", "temp", timezone.now() - timedelta(minutes=1), 4.0, unit="°C")], source="mqtt")
        return Sensor.objects.select_related("device").get(key="temp")


def edit_url(sensor) -> str:
    return f"/devices/{sensor.device_id}/sensors/{sensor.pk}/edit/"


def sensor_post(**overrides):
    return {"label": "Supply air", "type": "temperature", "unit": "°C", "precision": "1", "enabled": "on"} | overrides


def test_an_operator_edits_a_sensor_and_it_is_audited(as_acme, sensor):
    response = as_acme("acme_operator").post(edit_url(sensor), sensor_post(min_value="-40", max_value="60"))
    assert response.status_code == 302 and response["Location"] == f"/devices/{sensor.device_id}/"
    with schema_context("acme"):
        sensor.refresh_from_db()
        assert (sensor.label, sensor.type, sensor.min_value, sensor.max_value, sensor.precision) == (
            "Supply air",
            "temperature",
            -40.0,
            60.0,
            1,
        )
        entry = AuditLog.objects.get(action="sensor.updated")
        assert entry.actor_email == "acme_operator@example.com" and entry.object_id == str(sensor.pk)
        assert entry.changes["max_value"] == [None, 60.0] and entry.changes["label"] == ["", "Supply air"]


def test_the_device_page_links_to_the_sensor_form_and_shows_it_disabled(as_acme, sensor):
    client = as_acme("acme_operator")
    assert edit_url(sensor) in client.get(f"/devices/{sensor.device_id}/").content.decode()
    client.post(edit_url(sensor), sensor_post(enabled=""))
    assert 'data-testid="sensor-disabled"' in client.get(f"/devices/{sensor.device_id}/").content.decode()


def test_from_the_asset_page_the_form_goes_back_there_and_nowhere_else(as_acme, sensor):
    with schema_context("acme"):
        asset = Asset.objects.create(site=Site.objects.create(name="Plant"), tag="AHU-1")
        DeviceBinding.objects.create(asset=asset, device=sensor.device)
    client = as_acme("acme_operator")
    page = client.get(f"/assets/{asset.pk}/").content.decode()
    assert f"{edit_url(sensor)}?next=/assets/{asset.pk}/" in page
    assert f'value="/assets/{asset.pk}/"' in client.get(f"{edit_url(sensor)}?next=/assets/{asset.pk}/").content.decode()
    back = client.post(edit_url(sensor), sensor_post(next=f"/assets/{asset.pk}/"))
    assert back["Location"] == f"/assets/{asset.pk}/"
    elsewhere = client.post(edit_url(sensor), sensor_post(next="https://evil.example/"))
    assert elsewhere["Location"] == f"/devices/{sensor.device_id}/"
    assert client.post(edit_url(sensor), sensor_post(next="//evil.example/"))["Location"].startswith("/devices/")


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"min_value": "10", "max_value": "5"}, "must not be below the lowest"),
        ({"min_value": "nan"}, "Enter a number"),
        ({"max_value": "inf"}, "Enter a number"),
        ({"precision": "9"}, "between 0 and 6"),
        ({"unit": "x" * 21}, "at most 20 characters"),
    ],
)
def test_bad_values_are_form_errors_and_change_nothing(as_acme, sensor, fields, error):
    response = as_acme("acme_operator").post(edit_url(sensor), sensor_post(**fields))
    assert response.status_code == 400 and error in response.content.decode()
    with schema_context("acme"):
        sensor.refresh_from_db()
        assert sensor.label == "" and sensor.min_value is None
        assert not AuditLog.objects.filter(action="sensor.updated").exists()


def test_a_sensor_of_another_device_or_tenant_is_404(as_acme, sensor):
    with schema_context("acme"):
        other = Device.objects.create(device_id="gw-2")
    client = as_acme("acme_operator")
    assert client.get(f"/devices/{other.pk}/sensors/{sensor.pk}/edit/").status_code == 404
    with schema_context("globex"):
        # ids acme has none under: a lookup that leaked across schemas would find this one
        far_device = Device.objects.create(pk=sensor.device_id + 1000, device_id="far")
        far = Sensor.objects.create(pk=sensor.pk + 1000, device=far_device, key="t")
    assert client.get(f"/devices/{far.device_id}/sensors/{far.pk}/edit/").status_code == 404


def test_a_disabled_sensor_keeps_its_readings_as_dead_letters(as_acme, sensor):
    as_acme("acme_operator").post(edit_url(sensor), sensor_post(enabled=""))
    with schema_context("acme"):
        result = ingest([ReadingIn("gw-1", "temp", timezone.now(), 5.0, unit="°C")], source="mqtt")
        assert result.written == 0 and Reading.objects.count() == 1
        assert DeadLetter.objects.get().reason == "sensor_disabled"


def test_widening_a_range_lets_replayed_dead_letters_in(as_acme, sensor):
    """The loop dead letters ask for: a reading refused by the range, the range fixed here, replayed."""
    from portal.facilities.topics import decode, store

    client = as_acme("acme_operator")
    client.post(edit_url(sensor), sensor_post(max_value="30"))
    with schema_context("acme"):
        store([decode("tenants/acme/devices/gw-1/sensors/temp", b'{"value": 45, "unit": "\\u00b0C"}', timezone.now())])
        letter = DeadLetter.objects.get(reason="out_of_range")
    client.post(edit_url(sensor), sensor_post(max_value="50"))
    client.post("/dead-letters/replay/", {"ids": letter.pk})
    with schema_context("acme"):
        assert Reading.objects.filter(value=45.0).exists()


def test_an_operator_writes_device_notes_shown_on_its_page(as_acme, sensor):
    client = as_acme("acme_operator")
    url = f"/devices/{sensor.device_id}/edit/"
    response = client.post(
        url, {"name": "Roof gateway", "kind": "gateway", "notes": "Behind the AHU panel.\nKey at desk."}
    )
    assert response.status_code == 302
    page = client.get(f"/devices/{sensor.device_id}/").content.decode()
    assert "Behind the AHU panel.<br>Key at desk." in page and "Roof gateway" in page
    with schema_context("acme"):
        assert AuditLog.objects.get(action="device.updated").changes["notes"][1].startswith("Behind")
    assert client.post(url, {"name": "x", "kind": "toaster", "notes": ""}).status_code == 400
    assert client.post(url, {"name": "x", "kind": "gateway", "notes": "n" * 2001}).status_code == 400


text = st.text(max_size=40) | st.sampled_from(["", "-1e308", "1e309", "NaN", "0", "-0", "12.5", "\x00"])


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=st.dictionaries(
        st.sampled_from(["label", "type", "unit", "min_value", "max_value", "precision", "enabled", "next", "notes"]),
        text,
        max_size=8,
    ),
)
def test_the_edit_forms_never_500(as_acme, sensor, data):
    client = as_acme("acme_operator")
    assert client.post(edit_url(sensor), data).status_code < 500
    assert client.post(f"/devices/{sensor.device_id}/edit/", data).status_code < 500
