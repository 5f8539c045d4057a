"""A real Mosquitto (with bridge/mosquitto.conf) and real bridge processes for the bridge tests.

The bridge commits its own transactions, so its data goes to a tenant of its own, `bridgetest`,
made and dropped by this module; the test's database connection reads what the bridge
committed (READ COMMITTED sees it) without holding anything the bridge needs.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import database_url_for_tests, free_port

ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed (apt-get install mosquitto)")


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """Mosquitto on a free port, configured by the shipped bridge/mosquitto.conf."""
    folder = tmp_path_factory.mktemp("mosquitto")
    port = free_port()
    config = (ROOT / "bridge" / "mosquitto.conf").read_text()
    config = config.replace("listener 1883", f"listener {port} 127.0.0.1")
    config = config.replace("persistence_location /mosquitto/data/", f"persistence_location {folder}/")
    (folder / "mosquitto.conf").write_text(config)
    process = subprocess.Popen([MOSQUITTO, "-c", str(folder / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)
    yield f"mqtt://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


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


class BridgeProcess:
    def __init__(self, url: str, client_id: str, *extra: str):
        env = os.environ | {"DATABASE_URL": database_url_for_tests(), "MQTT_URL": url, "DEBUG": "1", "PYTHONUNBUFFERED": "1",
                            "DATABASE_CONN_MAX_AGE": "0"}
        self.log_path = ROOT / "test-artifacts" / f"bridge-{client_id}-{uuid.uuid4().hex[:6]}.log"
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "manage.py", "bridge", "--client-id", client_id, *extra],
                                        cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=20) -> "BridgeProcess":
        """Until the bridge has subscribed: messages published before that reach no one."""
        deadline = time.monotonic() + timeout
        while b"subscribed to" not in self.log_path.read_bytes():
            assert self.process.poll() is None, f"the bridge exited; see {self.log_path}"
            assert time.monotonic() < deadline, "the bridge did not subscribe"
            time.sleep(0.05)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.log.close()
        return code


@pytest.fixture
def start_bridge(broker, bridge_tenant):
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    started = []

    def start(client_id: str | None = None, *extra: str) -> BridgeProcess:
        bridge = BridgeProcess(broker, client_id or f"test-{uuid.uuid4().hex[:8]}", *extra)
        started.append(bridge)
        return bridge.wait_ready()

    yield start
    for bridge in started:
        if bridge.process.poll() is None:
            bridge.stop(signal.SIGKILL)
