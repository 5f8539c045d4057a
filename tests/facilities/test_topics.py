from datetime import UTC, datetime

import pytest

from portal.facilities.models import Asset, DeviceBinding, Site
from portal.facilities.topics import decode, store
from telemetry.models import DeadLetter, Reading, Sensor

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SENML = b'[{"bn":"gw-new","bt":1795172400},{"n":"supply","u":"Cel","v":7.5},{"n":"return","u":"Cel","v":12.1}]'


def test_the_asset_topic_creates_the_hierarchy_on_first_sight(in_acme):
    message = decode("tenants/acme/sites/North Plant/assets/CH-9/telemetry", SENML, NOW)
    assert message.tenant_slug == "acme" and not message.reason
    result = store([message], NOW)
    assert result.written == 2
    asset = Asset.objects.get(tag="CH-9", site__name="North Plant")
    assert DeviceBinding.objects.get(device__device_id="gw-new").asset == asset
    assert {s.key for s in asset.sensors()} == {"supply", "return"}


def test_an_asset_keeps_the_sensors_of_all_its_devices(in_acme):
    store([decode("tenants/acme/sites/S/assets/A/telemetry", SENML, NOW)], NOW)
    plain = b'{"device":"gw-old","readings":[{"sensor":"power","value":80,"unit":"kW"}]}'
    store([decode("tenants/acme/sites/S/assets/A/telemetry", plain, NOW)], NOW)
    asset = Asset.objects.get(tag="A")
    assert {(s.device.device_id, s.key) for s in asset.sensors()} == {
        ("gw-new", "supply"),
        ("gw-new", "return"),
        ("gw-old", "power"),
    }


def test_the_sensor_topic(in_acme):
    result = store(
        [
            decode(
                "tenants/acme/devices/esp32/sensors/temp_001",
                b'{"value": 23.5, "unit": "C", "timestamp": "2026-11-20T11:59:00Z"}',
                NOW,
            )
        ],
        NOW,
    )
    assert result.written == 1
    assert Sensor.objects.get(key="temp_001").device.device_id == "esp32"
    assert not Site.objects.exists()  # no site or asset in this topic


@pytest.mark.parametrize(
    "topic, payload, reason",
    [
        ("tenants/acme/sites//assets/A/telemetry", SENML, "missing_site"),
        ("tenants/acme/sites/S/assets/ /telemetry", SENML, "missing_asset"),
        ("tenants/acme/sites/S/assets/A/telemetry", b"{oops", "malformed_json"),
        ("tenants/acme/devices/d/sensors/s", b'{"unit": "C"}', "missing_field"),
        ("tenants/acme/locks/lock-1/status", b'{"locked": true}', "unknown_topic"),  # the locks app's topics
        ("tenants/acme/elsewhere", b"1", "unknown_topic"),
    ],
)
def test_unusable_messages_are_dead_lettered_with_their_reason(in_acme, topic, payload, reason):
    result = store([decode(topic, payload, NOW)], NOW)
    assert result.rejected == 1
    letter = DeadLetter.objects.get()
    assert (letter.reason, letter.topic, letter.payload) == (reason, topic, payload.decode())
    assert not Reading.objects.exists()


def test_nan_in_a_message_is_dead_lettered_and_the_rest_stored(in_acme):
    payload = b'{"device":"gw","readings":[{"sensor":"a","value":1},{"sensor":"b","value":NaN}]}'
    result = store([decode("tenants/acme/sites/S/assets/A/telemetry", payload, NOW)], NOW)
    assert (result.written, result.rejected) == (1, 1)
    assert DeadLetter.objects.get().reason == "not_finite"
