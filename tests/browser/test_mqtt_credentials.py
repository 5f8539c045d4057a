"""In a real browser: an operator issues MQTT credentials on a device page and sees the password
once, on a desktop and on a phone (390 px)."""

from pathlib import Path

import pytest
from django_tenants.utils import schema_context
from helpers import PASSWORD
from playwright.sync_api import expect

pytestmark = [
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is missing (apt-get install chromium)"
    ),
    pytest.mark.django_db,
]


@pytest.fixture(scope="module")
def device(django_db_setup, django_db_blocker):
    """Committed (module scope: outside the test's transaction) for the server to see."""
    from telemetry.models import Device

    with django_db_blocker.unblock(), schema_context("acme"):
        device = Device.objects.create(device_id="browser-mqtt-gw", name="Roof gateway")
    yield device
    with django_db_blocker.unblock(), schema_context("acme"):
        Device.objects.filter(pk=device.pk).delete()


def test_an_operator_issues_mqtt_credentials_and_sees_the_password_once(device, page, server_port, artifacts):
    base = f"http://acme.localhost:{server_port}"
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill("acme_operator@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{base}/devices/{device.pk}/")
    card = page.get_by_test_id("mqtt-credentials")
    expect(card).to_contain_text("None issued")
    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="Issue MQTT credentials").click()
    secret = page.get_by_test_id("new-mqtt-secret")
    expect(secret).to_contain_text("acme.browser-mqtt-gw")
    page.screenshot(path=artifacts / "device-mqtt-issued.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artifacts / "device-mqtt-issued-390.png", full_page=True)
    page.goto(f"{base}/devices/{device.pk}/")
    expect(page.get_by_test_id("new-mqtt-secret")).to_have_count(0)  # shown once
    expect(page.get_by_test_id("mqtt-credentials")).to_contain_text("acme.browser-mqtt-gw")
    expect(page.get_by_role("button", name="Rotate MQTT password")).to_be_visible()


@pytest.fixture(scope="module")
def lost_device(django_db_setup, django_db_blocker):
    """A device whose credential mqtt_sync found missing at the broker (committed, module scope)."""
    from django.utils import timezone

    from telemetry.models import Device, MqttCredential

    with django_db_blocker.unblock(), schema_context("acme"):
        device = Device.objects.create(device_id="browser-mqtt-lost", name="Cellar gateway")
        MqttCredential.objects.create(
            device=device, username="acme.browser-mqtt-lost", secret_hash="0" * 64, broker_lost_at=timezone.now()
        )
    yield device
    with django_db_blocker.unblock(), schema_context("acme"):
        Device.objects.filter(pk=device.pk).delete()


def test_a_credential_the_broker_lost_says_so_and_how_to_come_back(lost_device, page, server_port, artifacts):
    """After mqtt_sync found the broker without its client: the card says it is refused, why it
    cannot be restored, and rotating brings it back (the alert goes)."""
    base = f"http://acme.localhost:{server_port}"
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill("acme_operator@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{base}/devices/{lost_device.pk}/")
    lost = page.get_by_test_id("mqtt-lost")
    expect(lost).to_contain_text("Lost by the broker")
    expect(lost).to_contain_text("rotate the MQTT password")
    page.screenshot(path=artifacts / "device-mqtt-lost.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artifacts / "device-mqtt-lost-390.png", full_page=True)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate MQTT password").click()
    expect(page.get_by_test_id("new-mqtt-secret")).to_be_visible()
    expect(page.get_by_test_id("mqtt-lost")).to_have_count(0)


@pytest.fixture(scope="module")
def lost_lock(django_db_setup, django_db_blocker):
    """A lock whose client the broker lost (committed, module scope)."""
    from django.utils import timezone
    from lock_builders import make_lock, remove_lock_and_traces

    from telemetry.models import MqttCredential

    with django_db_blocker.unblock(), schema_context("acme"):
        lock = make_lock("BROWSER-LOST", name="Loading dock")
        lock.device.issue_token()
        lock.device.save()  # its key is its MQTT password (portal.devices.receivers)
        MqttCredential.objects.filter(device=lock.device).update(broker_lost_at=timezone.now())
    yield lock
    with django_db_blocker.unblock(), schema_context("acme"):
        remove_lock_and_traces("BROWSER-LOST")


def test_a_lock_the_broker_lost_says_a_new_key_brings_it_back(lost_lock, page, server_port, artifacts):
    base = f"http://acme.localhost:{server_port}"
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill("acme_admin@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{base}/locks/{lost_lock.pk}/")
    lost = page.get_by_test_id("lock-mqtt-lost")
    expect(lost).to_contain_text("a new device key lets the lock in again")
    lost.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "lock-mqtt-lost.png")
    page.set_viewport_size({"width": 390, "height": 844})
    lost.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "lock-mqtt-lost-390.png")
    page.get_by_role("button", name="New device key").click()
    expect(page.get_by_test_id("mqtt-username")).to_have_text("acme.BROWSER-LOST")
    page.goto(f"{base}/locks/{lost_lock.pk}/")
    expect(page.get_by_test_id("lock-mqtt-lost")).to_have_count(0)
