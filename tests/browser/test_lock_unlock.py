"""In a real browser, with Mosquitto, the bridge and a simulated lock: an operator unlocks a door
and watches it happen: the confirmation, the command pending, then acknowledged and the lock
unlocked, without a reload."""

import signal
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
from brokers import BridgeProcess
from django_tenants.utils import schema_context
from helpers import PASSWORD, committed, wait_for
from lock_builders import make_lock, remove_lock_and_traces
from playwright.sync_api import expect

from bridge.mqtt import broker_from_settings, connect, make_client
from bridge.simlock import SimLock, SimulatedLocks

pytestmark = [
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is missing"),
    pytest.mark.django_db,
]


def in_acme(work):
    def run():
        with schema_context("acme"):
            return work()

    return committed(run)


@pytest.fixture
def door(django_db_setup):
    lock_id = f"browser-door-{uuid.uuid4().hex[:6]}"
    lock = in_acme(lambda: make_lock(lock_id, "Warehouse door", status="locked"))
    yield lock
    in_acme(lambda: remove_lock_and_traces(lock_id))


@pytest.fixture
def simulated_lock(broker, door):
    settings = broker_from_settings(broker)
    client = make_client(settings, f"browser-sim-{uuid.uuid4().hex[:6]}", persistent=False)
    fleet = SimulatedLocks(client, [SimLock(door.lock_id, f"tenants/acme/locks/{door.lock_id}")], delay=0.3)
    client.on_connect = lambda *args: fleet.subscribe()
    client.on_message = fleet.on_message
    connect(client, settings, persistent=False)
    client.loop_start()
    wait_for(client.is_connected, 10, "the simulated lock to connect")
    yield fleet
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def bridge(broker):
    process = BridgeProcess(broker, f"browser-locks-{time.monotonic_ns()}").wait_ready()
    yield
    process.stop(signal.SIGTERM)


def test_an_operator_unlocks_a_door_and_watches_the_state_change(
    page, server_port, artifacts, door, simulated_lock, bridge
):
    base = f"http://acme.localhost:{server_port}"
    page.goto(f"{base}/accounts/login/?{urlencode({'next': f'/locks/{door.pk}/'})}")
    page.get_by_label("Email").fill("acme_operator@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("lock-status")).to_contain_text("Locked")
    page.evaluate("window.fieldwatchMarker = 'no reload'")
    page.get_by_test_id("unlock-button").click()
    expect(page.get_by_test_id("confirm")).to_contain_text("Unlock Warehouse door now?")
    page.screenshot(path=artifacts / "lock-confirm-desktop.png", full_page=True)
    page.get_by_test_id("confirm-button").click()
    expect(page.get_by_test_id("confirm")).to_have_count(0)
    command = page.get_by_test_id("command").first
    expect(command).to_contain_text("Unlock")
    expect(command.get_by_test_id("command-state")).to_have_text("Acknowledged", timeout=15_000)
    expect(page.get_by_test_id("lock-status")).to_contain_text("Unlocked")
    assert page.evaluate("window.fieldwatchMarker") == "no reload"
    assert simulated_lock.answered == 1
    page.screenshot(path=artifacts / "lock-unlocked-desktop.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artifacts / "lock-unlocked-390.png", full_page=True)


def test_a_viewer_sees_no_unlock_button(page, server_port, door):
    base = f"http://acme.localhost:{server_port}"
    page.goto(f"{base}/accounts/login/?{urlencode({'next': f'/locks/{door.pk}/'})}")
    page.get_by_label("Email").fill("acme_viewer@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("lock-status")).to_contain_text("Locked")
    expect(page.get_by_test_id("unlock-button")).to_have_count(0)
