"""A real Mosquitto (configured by the shipped bridge/mosquitto.conf) and real bridge processes,
for the bridge tests and the browser tests that watch readings arrive.

Register the broker fixture in a conftest with `from brokers import broker  # noqa: F401`.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import database_url_for_tests, free_port
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTProtocolVersion

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HAVE_MOSQUITTO = Path(MOSQUITTO).exists()


DYNSEC_PLUGIN = next(
    (str(path) for path in Path("/usr/lib").glob("**/mosquitto_dynamic_security.so")), "mosquitto_dynamic_security.so"
)


class Mosquitto:
    """A Mosquitto on a free port with the shipped bridge/mosquitto.conf: anonymous access off,
    the dynamic security plugin on, its admin made by `mosquitto_ctrl dynsec init`, and the
    bridge's user applied by Fieldwatch (portal.devices.broker), as `mqtt_sync` does."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        secret = uuid.uuid4().hex
        self.admin_url = f"mqtt://admin:admin-{secret}@127.0.0.1:{self.port}"
        self.url = f"mqtt://fieldwatch-bridge:bridge-{secret}@127.0.0.1:{self.port}"  # the bridge's, and the tests'
        config = (ROOT / "bridge" / "mosquitto.conf").read_text()
        config = config.replace("listener 1883", f"listener {self.port} 127.0.0.1")
        config = config.replace("persistence_location /mosquitto/data/", f"persistence_location {folder}/")
        config = config.replace("/usr/lib/mosquitto_dynamic_security.so", DYNSEC_PLUGIN)
        config = config.replace("/mosquitto/data/dynamic-security.json", str(folder / "dynamic-security.json"))
        (folder / "mosquitto.conf").write_text(config)
        subprocess.run(
            ["mosquitto_ctrl", "dynsec", "init", str(folder / "dynamic-security.json"), "admin", f"admin-{secret}"],
            check=True,
            capture_output=True,
        )
        (folder / "dynamic-security.json").chmod(0o666)
        self.start()
        from portal.devices.broker import DynamicSecurity, bridge_commands

        try:
            DynamicSecurity(self.admin_url).run(bridge_commands(self.url))
        except Exception:
            self.stop()
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def start(self) -> None:
        with open(self.folder / "mosquitto.log", "ab") as log:  # its errors and warnings (log_type)
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.process.poll() is None and time.monotonic() < deadline, (
                    f"mosquitto did not start: {(self.folder / 'mosquitto.log').read_text()[-500:]}"
                )
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def lose_state(self) -> None:
        """Restart with a fresh dynamic-security file, as after its volume was lost: only the
        admin is left (`mosquitto_ctrl dynsec init` again); `mqtt_sync` is the way back."""
        from portal.devices.broker import url_credentials

        self.stop()
        state = self.folder / "dynamic-security.json"
        state.unlink()
        subprocess.run(
            ["mosquitto_ctrl", "dynsec", "init", str(state), *url_credentials(self.admin_url)],
            check=True,
            capture_output=True,
        )
        state.chmod(0o666)
        self.start()


@pytest.fixture(scope="session")
def mosquitto():
    if not HAVE_MOSQUITTO:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    # Mosquitto started as root runs as the user mosquitto, which must read its dynamic-security
    # file and write its persistence there: not under pytest's private tmp folders
    folder = Path(tempfile.mkdtemp(prefix="fieldwatch-mosquitto-"))
    folder.chmod(0o777)
    broker = Mosquitto(folder)
    yield broker
    broker.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def broker(mosquitto):
    """The URL of the shared Mosquitto, with the bridge's credentials in it."""
    return mosquitto.url


class BridgeProcess:
    def __init__(self, url: str, client_id: str, *extra: str, database_url: str | None = None):
        env = os.environ | {
            "DATABASE_URL": database_url or database_url_for_tests(),
            "MQTT_URL": url,
            "DEBUG": "1",
            "PYTHONUNBUFFERED": "1",
            "DATABASE_CONN_MAX_AGE": "0",
        }
        self.log_path = ROOT / "test-artifacts" / f"bridge-{client_id}-{uuid.uuid4().hex[:6]}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (held open for the process, closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "bridge", "--client-id", client_id, *extra],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout=60) -> "BridgeProcess":  # Django's start-up takes long on a busy machine
        """Until the bridge's subscriptions stand (messages published before that reach no one): it
        subscribed, or it resumed a session, which holds them. A resumed session's SUBACK comes
        only after the backlog the broker queued for it, many seconds later on a busy machine."""
        deadline = time.monotonic() + timeout
        while not any(mark in self.log_path.read_bytes() for mark in (b"subscribed to", b"(session resumed)")):
            assert self.process.poll() is None, f"the bridge exited; see {self.log_path}"
            assert time.monotonic() < deadline, "the bridge did not subscribe"
            time.sleep(0.05)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.log.close()
        return code


class Peer:
    """An MQTT v5 client: connect() says the CONNACK's reason, publish() the PUBACK's."""

    def __init__(self, port, username=None, password=None):
        self.client = Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=MQTTProtocolVersion.MQTTv5
        )
        if username:
            self.client.username_pw_set(username, password)
        self.port, self.connack, self.messages, self.disconnected = port, None, [], threading.Event()
        self.connected = threading.Event()
        self.client.on_connect = self.on_connect
        self.client.on_message = lambda c, u, message: self.messages.append((message.topic, message.payload))
        self.client.on_disconnect = lambda c, u, flags, reason, props: self.disconnected.set()

    def on_connect(self, client, userdata, flags, reason, properties):
        self.connack = reason
        self.connected.set()

    def connect(self) -> str:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self.connected.wait(10), "no CONNACK"
        return "accepted" if not self.connack.is_failure else str(self.connack)

    def publish(self, topic, payload=b"21.5") -> str:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        return "sent"

    def subscribe(self, topic) -> bool:
        """Whether the broker granted the subscription (its SUBACK)."""
        ready, granted = threading.Event(), []

        def on_subscribe(client, userdata, mid, reasons, properties):
            granted.extend(not reason.is_failure for reason in reasons)
            ready.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topic, qos=1)
        assert ready.wait(10)
        return all(granted)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
