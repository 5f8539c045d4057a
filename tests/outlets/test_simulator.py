"""`manage.py simulate`'s counting devices against a live server: they handshake, post events with
their tokens, and the legacy ones post forms; what they send is stored."""

import random

import pytest
from django_tenants.utils import schema_context

from portal.outlets.demo import LEGACY_MACS
from portal.outlets.simulator import CounterSimulator
from telemetry.models import Device, DeviceEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def simulator(django_db_setup, django_db_blocker, server_port):
    """Two counting devices of globex and their simulator, made and committed outside any test's
    transaction (the simulator resets provisioning in the database, as it does at start-up)."""
    with django_db_blocker.unblock(), schema_context("globex"):
        made = [
            Device.objects.create(device_id="sim-counter-1", mac="02:47:4C:00:09:01", kind=Device.Kind.COUNTER),
            Device.objects.create(device_id="sim-legacy", mac=LEGACY_MACS[0], kind=Device.Kind.COUNTER),
        ]
    with django_db_blocker.unblock():
        simulator = CounterSimulator(f"http://127.0.0.1:{server_port}", "globex", rng=random.Random(4))
    yield simulator
    with django_db_blocker.unblock(), schema_context("globex"):
        DeviceEvent.objects.filter(device__in=made).delete()
        Device.objects.filter(pk__in=[d.pk for d in made]).delete()


def test_simulated_counters_handshake_and_post_what_is_stored(simulator):
    assert {d.device_id for d in simulator.devices} == {"sim-counter-1", "sim-legacy"}
    for _ in range(40):
        simulator.step()
    assert simulator.failed == 0 and simulator.sent == 40
    with schema_context("globex"):
        api_events = DeviceEvent.objects.filter(device__device_id="sim-counter-1", source="api").count()
        legacy_events = DeviceEvent.objects.filter(device__device_id="sim-legacy", source="legacy").count()
        assert Device.objects.get(device_id="sim-counter-1").last_handshake_at is not None
    assert api_events > 0 and legacy_events > 0
    with pytest.raises(ValueError):
        CounterSimulator("file:///etc/passwd", "globex")
