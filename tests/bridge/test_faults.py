"""The bridge under real faults (issue 11 §2b): PostgreSQL unreachable (a TCP proxy in front of
it is cut), the broker restarted while the bridge holds an open batch, and a tenant created or
suspended while the bridge runs. Nothing is lost, nothing stored twice; a suspended tenant's
devices are refused by the broker and its readings stop being stored within the bridge's 30 s
tenant directory."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from brokers import Peer
from django_tenants.utils import schema_context
from helpers import ROOT, count_in, database_url_for_tests, free_port, wait_for

from bridge.mqtt import broker_from_settings, connect, make_client
from bridge.publish import Publisher
from telemetry.models import DeadLetter, Reading

pytestmark = pytest.mark.django_db

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


class DatabaseProxy:
    """A TCP proxy to PostgreSQL: cut() drops every connection and refuses new ones (the
    database is unreachable for the bridge), restore() lets them through again."""

    def __init__(self, target=("127.0.0.1", 5432)):
        self.target, self.port, self.open = target, free_port(), threading.Event()
        self.sockets: list[socket.socket] = []
        self.listener = None
        self.restore()

    def restore(self):
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.open.set()
        threading.Thread(target=self.accept, args=(self.listener,), daemon=True).start()

    def accept(self, listener):
        while self.open.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.close()

    def cut(self):
        self.open.clear()
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass
        self.sockets = []

    def url(self) -> str:
        real = database_url_for_tests()
        return real.replace("127.0.0.1:5432", f"127.0.0.1:{self.port}").replace(
            "localhost:5432", f"127.0.0.1:{self.port}"
        )


def messages(device: str, start: int, n: int, slug: str = "bridgetest"):
    for i in range(start, start + n):
        ts = (BASE + timedelta(seconds=i)).isoformat()
        yield f"tenants/{slug}/devices/{device}/sensors/s{i % 5}", json.dumps({"value": i, "timestamp": ts})


def readings_of(device: str, schema: str = "bridgetest") -> int:
    return count_in(schema, Reading, sensor__device__device_id=device)


def publish(publisher, batch):
    for topic, payload in batch:
        publisher.publish(topic, payload)
    publisher.settle()


def test_postgresql_unreachable_keeps_the_batch_and_loses_nothing(start_bridge, publisher):
    proxy = DatabaseProxy()
    if "127.0.0.1" not in proxy.url() or str(proxy.port) not in proxy.url():
        pytest.skip("the test database is not on 127.0.0.1:5432")
    bridge = start_bridge("db-fault", database_url=proxy.url())
    publish(publisher, messages("dbfault", 0, 200))
    wait_for(lambda: readings_of("dbfault") == 200, 60, "the first readings")
    proxy.cut()
    publish(publisher, messages("dbfault", 200, 300))  # received while the database is away
    time.sleep(4)
    assert readings_of("dbfault") == 200 and bridge.process.poll() is None  # kept, not acked, still running
    proxy.restore()
    wait_for(lambda: readings_of("dbfault") >= 500, 90, "the kept batch once the database is back")
    time.sleep(1)
    assert readings_of("dbfault") == 500
    assert b"Traceback" not in bridge.log_path.read_bytes() or bridge.process.poll() is None
    assert bridge.stop() == 0


def test_a_broker_restart_with_an_open_batch_loses_and_doubles_nothing(start_bridge, publisher, mosquitto, broker):
    bridge = start_bridge("broker-restart")
    publish(publisher, messages("restart", 0, 2000))
    mosquitto.stop()  # the bridge holds received, unacknowledged messages; their acks cannot go out
    mosquitto.start()
    again = make_client(broker_from_settings(broker), f"fault-publisher-2-{time.monotonic_ns()}", persistent=False)
    connect(again, broker_from_settings(broker), persistent=False)
    again.loop_start()
    wait_for(again.is_connected, 20, "the publisher to reconnect")
    publish(Publisher(again), messages("restart", 2000, 1000))
    wait_for(lambda: readings_of("restart") >= 3000, 120, "every reading after the restart")
    time.sleep(2)
    assert readings_of("restart") == 3000  # redelivered messages absorbed by (sensor, ts)
    again.disconnect()
    again.loop_stop()
    assert bridge.stop() == 0


@pytest.fixture(scope="module")
def late_tenant(django_db_setup, django_db_blocker):
    """Drops the tenant the test creates from outside (its own process commits it)."""
    yield "late-arrival"
    from portal.tenancy.models import Tenant

    with django_db_blocker.unblock():
        for tenant in Tenant.objects.filter(slug="late-arrival"):
            tenant.delete(force_drop=True)


def test_a_tenant_created_while_the_bridge_runs_gets_its_readings(start_bridge, publisher, late_tenant):
    bridge = start_bridge("new-tenant")
    env = os.environ | {"DATABASE_URL": database_url_for_tests(), "DEBUG": "1", "FIELDWATCH_TESTING": "1"}
    subprocess.run(  # an operator's command in a process of its own: committed, as in production
        [sys.executable, "manage.py", "create_tenant", late_tenant], cwd=ROOT, env=env, check=True, capture_output=True
    )
    # the bridge's tenant directory refreshes within 30 s: messages before that are kept as
    # unknown_tenant dead letters, later ones stored
    deadline = time.monotonic() + 90
    n = 0
    while readings_of("late", "late_arrival") == 0:
        assert time.monotonic() < deadline, "the new tenant's readings never arrived"
        publish(publisher, messages("late", n, 1, slug=late_tenant))
        n += 1
        time.sleep(1)
    assert n <= 45  # within the directory's 30 s (and a busy machine's slack)
    assert bridge.process.poll() is None
    assert bridge.stop() == 0


@pytest.fixture(scope="module")
def going_away(django_db_setup, django_db_blocker, mosquitto):
    """A tenant with one device whose MQTT credentials the broker holds (as issuing them on the
    device page leaves them), committed for the bridge and the suspending process to see (module
    scope: made before a test's transaction opens)."""
    from portal.devices import broker
    from portal.tenancy.models import Tenant
    from portal.tenancy.provisioning import create_tenant
    from telemetry.models import Device, MqttCredential

    with django_db_blocker.unblock():
        tenant = create_tenant("Going Away", "going-away")
        with schema_context(tenant.schema_name):
            device = Device.objects.create(device_id="gone")
            credential, secret = MqttCredential.issue(device, MqttCredential.username_for(tenant.slug, "gone"))
            commands = broker.credential_commands(tenant.slug, credential, tenant_active=True, secret=secret)
        broker.DynamicSecurity(mosquitto.admin_url).run(commands)
    yield tenant, credential.username, secret
    with django_db_blocker.unblock():
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)
        DeadLetter.objects.filter(topic__startswith="tenants/going-away/").delete()


def test_a_tenant_suspended_while_the_bridge_runs_is_refused_and_its_readings_stop(
    start_bridge, publisher, mosquitto, going_away
):
    tenant, username, secret = going_away
    bridge = start_bridge("suspended-tenant")
    device = Peer(mosquitto.port, username, secret)
    assert device.connect() == "accepted"
    device.publish(
        "tenants/going-away/devices/gone/sensors/s0", json.dumps({"value": 0, "timestamp": BASE.isoformat()})
    )
    wait_for(lambda: readings_of("gone", tenant.schema_name) == 1, 30, "the device's reading")

    env = os.environ | {
        "DATABASE_URL": database_url_for_tests(),
        "DEBUG": "1",
        "FIELDWATCH_TESTING": "1",  # Huey immediate: the broker is told as the suspension commits
        "MQTT_ADMIN_URL": mosquitto.admin_url,
    }
    suspend = (
        "from portal.tenancy.models import Tenant\n"
        "tenant = Tenant.objects.get(slug='going-away')\n"
        "tenant.is_active = False\n"
        "tenant.save(update_fields=['is_active'])\n"
    )
    # suspended by another process (a script, the admin, the console in the web process): committed
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", suspend], cwd=ROOT, env=env, check=True, capture_output=True
    )
    suspended = time.monotonic()
    assert device.disconnected.wait(15), "the suspended tenant's device stays connected"
    assert Peer(mosquitto.port, username, secret).connect() != "accepted"

    # what still comes for it (the bridge's credentials may publish anywhere) is stored until the
    # bridge's tenant directory is renewed, then kept as unknown_tenant dead letters
    def refused() -> int:
        return count_in("public", DeadLetter, topic__startswith="tenants/going-away/", reason="unknown_tenant")

    n = 1
    while refused() == 0:
        assert time.monotonic() - suspended < 90, "the suspended tenant's readings were still stored after 90 s"
        publish(publisher, messages("gone", n, 1, slug="going-away"))
        n += 1
        time.sleep(1)
    assert time.monotonic() - suspended <= 45  # within the directory's 30 s (and a busy machine's slack)
    stored = readings_of("gone", tenant.schema_name)
    publish(publisher, messages("gone", n, 5, slug="going-away"))
    wait_for(lambda: refused() >= 6, 30, "the later messages as dead letters")
    assert readings_of("gone", tenant.schema_name) == stored  # none of them stored
    assert bridge.process.poll() is None
    assert bridge.stop() == 0
