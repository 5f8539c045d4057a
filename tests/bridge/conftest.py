"""A real Mosquitto (with bridge/mosquitto.conf) and real bridge processes for the bridge tests.

The bridge commits its own transactions, so its data goes to a tenant of its own, `bridgetest`,
made and dropped by this module; the test's database connection reads what the bridge
committed (READ COMMITTED sees it) without holding anything the bridge needs.
"""

import signal
import time
import uuid

import pytest
from brokers import ROOT, BridgeProcess
from helpers import wait_for

from bridge.mqtt import broker_from_settings, connect, make_client
from bridge.publish import Publisher


@pytest.fixture(scope="module")
def bridge_tenant(django_db_setup, django_db_blocker):
    from portal.tenancy.models import Tenant
    from portal.tenancy.provisioning import create_tenant

    with django_db_blocker.unblock():
        tenant = create_tenant("Bridge Test", "bridgetest")
    yield tenant
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)
        from telemetry.models import DeadLetter

        DeadLetter.objects.filter(topic__startswith="tenants/").delete()  # the public schema's share


@pytest.fixture
def start_bridge(broker, bridge_tenant):
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    started = []

    def start(client_id: str | None = None, *extra: str, database_url: str | None = None) -> BridgeProcess:
        bridge = BridgeProcess(broker, client_id or f"test-{uuid.uuid4().hex[:8]}", *extra, database_url=database_url)
        started.append(bridge)
        return bridge.wait_ready()

    yield start
    for bridge in started:
        if bridge.process.poll() is None:
            bridge.stop(signal.SIGKILL)


@pytest.fixture
def publisher(broker):
    """A plain MQTT client as devices are, publishing with QoS 1 through bridge.publish."""
    settings = broker_from_settings(broker)
    client = make_client(settings, f"test-publisher-{time.monotonic_ns()}", persistent=False)
    client.max_inflight_messages_set(1000)
    connect(client, settings, persistent=False)
    client.loop_start()
    wait_for(client.is_connected, 10, "the publisher to connect")
    yield Publisher(client)
    client.disconnect()
    client.loop_stop()
