import json
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from helpers import count_in, wait_for

from portal.core.models import ProcessHeartbeat
from telemetry.models import DeadLetter, Reading

pytestmark = pytest.mark.django_db

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def sensor_messages(n: int, device: str, start: int = 0):
    for i in range(start, start + n):
        ts = (BASE + timedelta(seconds=i)).isoformat()
        yield f"tenants/bridgetest/devices/{device}/sensors/s{i % 10}", json.dumps({"value": i, "timestamp": ts})


def readings_of(device: str) -> int:
    return count_in("bridgetest", Reading, sensor__device__device_id=device)


def test_every_topic_and_format_lands_in_its_tenant(start_bridge, publisher):
    bridge = start_bridge()
    stamp = int(BASE.timestamp())
    good = [
        (
            "tenants/bridgetest/sites/Plant/assets/CH-1/telemetry",
            json.dumps([{"bn": "fmt-senml", "bt": stamp}, {"n": "t", "u": "Cel", "v": 4.5}, {"n": "p", "v": 80}]),
        ),
        (
            "tenants/bridgetest/sites/Plant/assets/CH-1/telemetry",
            json.dumps(
                {"device": "fmt-plain", "ts": BASE.isoformat(), "readings": [{"sensor": "t", "value": 3, "unit": "C"}]}
            ),
        ),
        (
            "tenants/bridgetest/devices/fmt-sensor/sensors/t",
            json.dumps({"value": 23.5, "unit": "C", "timestamp": BASE.isoformat()}),
        ),
        ("tenants/bridgetest/devices/fmt-bare/sensors/t", "17.5"),
    ]
    bad = [
        ("tenants/nobody/devices/d/sensors/s", "1"),
        ("tenants/bridgetest/sites/Plant/assets/CH-1/telemetry", "{not json"),
        ("tenants/bridgetest/devices/fmt-missing/sensors/t", json.dumps({"unit": "C"})),
        ("tenants/bridgetest/devices/fmt-nan/sensors/t", '{"value": NaN}'),
    ]
    for topic, payload in good + bad:
        publisher.publish(topic, payload)
    publisher.settle()
    wait_for(
        lambda: (
            count_in("bridgetest", DeadLetter) >= 3
            and count_in("public", DeadLetter, topic__startswith="tenants/nobody") == 1
        ),
        what="dead letters",
    )
    wait_for(lambda: count_in("bridgetest", Reading) == 5, what="readings")
    assert bridge.stop() == 0
    from django_tenants.utils import schema_context

    with schema_context("bridgetest"):
        reasons = set(DeadLetter.objects.values_list("reason", flat=True))
        from portal.facilities.models import Asset

        asset = Asset.objects.get(tag="CH-1", site__name="Plant")
        assert {s.device.device_id for s in asset.sensors()} == {"fmt-senml", "fmt-plain"}  # auto-created hierarchy
    assert reasons == {"malformed_json", "missing_field", "not_finite"}


def test_sigterm_flushes_and_exits_cleanly(start_bridge, publisher):
    bridge = start_bridge("sigterm-bridge", "--max-age", "5", "--batch-size", "15000")
    for topic, payload in sensor_messages(3000, "sigterm"):
        publisher.publish(topic, payload)
    publisher.settle()
    time.sleep(1)  # received, held in a batch that is not due for seconds
    assert bridge.stop(signal.SIGTERM) == 0
    assert readings_of("sigterm") == 3000  # the batch was written before exit


def test_sigkill_in_the_middle_loses_and_doubles_nothing(start_bridge, publisher):
    bridge = start_bridge("chaos-bridge")
    total = 20_000
    messages = list(sensor_messages(total, "chaos"))
    for topic, payload in messages[: total // 2]:
        publisher.publish(topic, payload)
    wait_for(lambda: readings_of("chaos") > 1000, what="the bridge to start writing")
    bridge.stop(signal.SIGKILL)
    for topic, payload in messages[total // 2 :]:
        publisher.publish(topic, payload)  # the broker queues these for the bridge's session
    publisher.settle()
    restarted = start_bridge("chaos-bridge")
    wait_for(lambda: readings_of("chaos") >= total, timeout=120, what="every reading")
    time.sleep(1)
    assert readings_of("chaos") == total  # exactly once: redeliveries were absorbed
    assert restarted.stop() == 0


def test_two_bridges_in_a_share_group_split_the_stream(start_bridge, publisher):
    first = start_bridge("shared-a", "--share-group", "fw")
    second = start_bridge("shared-b", "--share-group", "fw")
    time.sleep(1.5)  # both subscribed
    for topic, payload in sensor_messages(6000, "shared"):
        publisher.publish(topic, payload)
    publisher.settle()
    wait_for(lambda: readings_of("shared") >= 6000, timeout=120, what="every reading")
    wait_for(
        lambda: (
            ProcessHeartbeat.objects.filter(
                name__in=["bridge:shared-a", "bridge:shared-b"], stats__messages__gt=0
            ).count()
            == 2
        ),
        timeout=20,
        what="both bridges to report work",
    )
    assert readings_of("shared") == 6000
    assert first.stop() == 0 and second.stop() == 0


@pytest.fixture(scope="module")
def sim_asset(bridge_tenant, django_db_blocker):
    """A demo-like asset in the bridge's tenant, committed before any test transaction opens."""
    from django_tenants.utils import schema_context

    from portal.facilities.models import Asset, DeviceBinding, Site
    from telemetry.models import Device, Sensor

    with django_db_blocker.unblock(), schema_context("bridgetest"):
        site = Site.objects.create(name="Sim Plant")
        asset = Asset.objects.create(site=site, tag="SIM-1")
        device = Device.objects.create(device_id="sim-gw")
        DeviceBinding.objects.create(device=device, asset=asset)
        Sensor.objects.create(device=device, key="supply_temp", unit="°C")
        Sensor.objects.create(device=device, key="power", unit="kW")
    return asset


def test_the_simulators_data_shows_on_the_asset_page(start_bridge, broker, people, sim_asset):
    import os
    import subprocess
    import sys

    from django.test import Client
    from helpers import ROOT, database_url_for_tests, sign_in

    from portal.tenancy.models import Membership, Tenant

    bridge = start_bridge()
    env = os.environ | {"DATABASE_URL": database_url_for_tests(), "MQTT_URL": broker, "DEBUG": "1"}
    simulated = subprocess.run(
        [sys.executable, "manage.py", "simulate", "--tenants", "bridgetest", "--rate", "20", "--duration", "1.5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert simulated.returncode == 0, simulated.stderr
    assert "published" in simulated.stdout, simulated.stderr
    wait_for(
        lambda: count_in("bridgetest", Reading, sensor__device__device_id="sim-gw") >= 10, what="simulated readings"
    )
    assert bridge.stop() == 0

    Membership.objects.create(user=people["acme_viewer"], tenant=Tenant.objects.get(slug="bridgetest"), role="viewer")
    client = sign_in(Client(HTTP_HOST="bridgetest.localhost"), people["acme_viewer"], "bridgetest")
    response = client.get(f"/assets/{sim_asset.pk}/")
    rows = {row["sensor"].key: row for row in response.context["sensor_rows"]}
    assert rows["supply_temp"]["status"] == "fresh" and rows["power"]["value"] is not None
