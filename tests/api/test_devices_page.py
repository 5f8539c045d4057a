"""What a device does over the HTTP API shows on its page, and admins act on it there: register,
rotate or revoke its token, reset its provisioning."""

import hashlib
import json

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django_tenants.utils import schema_context
from helpers import unchanged

from portal.audit.models import AuditLog
from portal.devices.filters import DeviceFilter
from telemetry.models import Device

MAC = "EC:E3:34:46:2B:C0"
AUDITED = {
    "register": "device.registered",
    "unregister": "device.unregistered",
    "rotate-token": "device.token_rotated",
    "revoke-token": "device.token_revoked",
    "reset-provisioning": "device.provisioning_reset",
}
ACTIONS = list(AUDITED)


def api(path, body, token=None, form=False):
    client = Client(HTTP_HOST="acme.localhost")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    if form:
        return client.post(path, body, **headers)
    return client.post(path, json.dumps(body), content_type="application/json", **headers)


@pytest.fixture
def provisioned(db):
    """A counting device that handshook by MAC: (its pk, its token)."""
    body = api("/api/handshake/", {"mac": MAC, "firmware": "1.0.0"}).json()
    with schema_context("acme"):
        return Device.objects.get(device_id=body["device_id"]).pk, body["token"]


def stored(pk) -> Device:
    with schema_context("acme"):
        return Device.objects.get(pk=pk)


def audited(action) -> list[AuditLog]:
    with schema_context("acme"):
        return list(AuditLog.objects.filter(action=action))


def test_the_page_shows_handshake_token_registration_status_events_and_rejections(as_acme, provisioned):
    pk, token = provisioned
    event = {
        "event_id": "e-1",
        "event": "treatment",
        "treatment": "PREMIUM",
        "counter": 77,
        "ts": "2025-09-16T12:34:56Z",
    }
    api("/api/device/events/", event, token)
    api(
        "/api/iot/",
        {"mode": "status", "macaddr": MAC, "count1": "41", "timestamp": "2024-01-15 14:30:25", "sd_available": "1"},
        form=True,
    )
    api("/api/device/events/", event | {"counter": -1, "event_id": "e-2"}, token)  # refused: counter
    api(
        "/api/iot/", {"mode": "BASIC", "macaddr": MAC, "timestamp": "2024-01-15 14:30:25"}, form=True
    )  # refused: count1
    response = as_acme("acme_viewer").get(f"/devices/{pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="registration">unregistered' in html
    assert "Last handshake" in html and "Token last used" in html
    assert 'data-testid="tokenless-flag"' in html  # the status post came without its token
    # the status post is kept as a status event too (seed 003's events page can leave them out)
    assert [e.event_id for e in response.context["events"]] == ["e-1", "legacy-ece334462bc0-20240115143025-status"]
    assert "Premium" in html and "77" in html
    status = dict(response.context["status"])
    assert (
        status["Count basic"] == "41" and status["SD card"] == "yes" and status["Device clock"] == "2024-01-15 14:30:25"
    )
    reasons = [letter.reason for letter in response.context["rejected"]]
    assert reasons == ["invalid_legacy_post", "invalid_event"]  # newest first; by MAC and by device id
    assert "counter: must be 0 or more" in html and "count1: required" in html
    assert 'data-testid="device-actions"' not in html  # a viewer sees no actions
    assert "&quot;counter&quot;: -1" not in html  # nor the refused bodies


def test_admins_see_the_actions_and_the_refused_bodies(as_acme, provisioned):
    pk, token = provisioned
    api("/api/device/events/", {"event_id": "x", "counter": -1}, token)
    html = as_acme("acme_admin").get(f"/devices/{pk}/").content.decode()
    assert 'data-testid="device-actions"' in html
    for action in ["register", "rotate-token", "revoke-token", "reset-provisioning"]:
        assert f'action="/devices/{pk}/{action}/"' in html
    assert "&quot;counter&quot;: -1" in html


@pytest.mark.parametrize("person", ["acme_viewer"])
@pytest.mark.parametrize("action", ACTIONS)
def test_viewers_may_not_act_on_a_device(as_acme, provisioned, person, action):
    pk, _ = provisioned
    before = stored(pk)
    client = as_acme(person)
    with unchanged():
        assert client.post(f"/devices/{pk}/{action}/").status_code == 403
    after = stored(pk)
    assert (after.token_hash, after.assigned_at, after.provisioning_reset_at) == (
        before.token_hash,
        before.assigned_at,
        before.provisioning_reset_at,
    )
    assert not audited(AUDITED[action])


@pytest.mark.parametrize("action", ACTIONS)
def test_actions_are_post_only_and_404_for_a_missing_device(as_acme, provisioned, action):
    pk, _ = provisioned
    client = as_acme("acme_admin")
    with unchanged():
        assert client.get(f"/devices/{pk}/{action}/").status_code == 405
        assert client.post(f"/devices/999999/{action}/").status_code == 404


def test_register_and_unregister(as_acme, provisioned):
    pk, _ = provisioned
    client = as_acme("acme_admin")
    response = client.post(f"/devices/{pk}/register/", follow=True)
    assert "is registered" in response.content.decode()
    assert stored(pk).assigned and len(audited("device.registered")) == 1
    client.post(f"/devices/{pk}/unregister/")
    assert not stored(pk).assigned and len(audited("device.unregistered")) == 1


def test_a_rotated_token_is_shown_once_and_only_its_hash_kept(as_acme, provisioned):
    pk, old = provisioned
    client = as_acme("acme_owner")
    response = client.post(f"/devices/{pk}/rotate-token/")
    assert response.status_code == 200  # the page itself: no redirect, so nothing holds the token meanwhile
    new = response.context["new_token"]
    assert new and new in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert not [s for s in Session.objects.all() if new in json.dumps(s.get_decoded())]  # not kept server-side
    assert stored(pk).token_hash == hashlib.sha256(new.encode()).hexdigest()
    assert new not in json.dumps(audited("device.token_rotated")[0].changes)
    assert new not in client.get(f"/devices/{pk}/").content.decode()  # once
    assert (
        api(
            "/api/device/events/",
            {"event_id": "r", "treatment": "BASIC", "counter": 1, "ts": "2025-01-01T00:00:00Z"},
            old,
        ).status_code
        == 401
    )
    assert (
        api(
            "/api/device/events/",
            {"event_id": "r", "treatment": "BASIC", "counter": 1, "ts": "2025-01-01T00:00:00Z"},
            new,
        ).status_code
        == 200
    )


def test_a_rotated_token_is_not_shown_on_another_devices_page(as_acme, provisioned):
    pk, _ = provisioned
    with schema_context("acme"):
        other = Device.objects.create(device_id="other")
    client = as_acme("acme_admin")
    assert client.post(f"/devices/{pk}/rotate-token/").context["new_token"]
    assert not client.get(f"/devices/{other.pk}/").context["new_token"]
    assert not client.get(f"/devices/{pk}/").context["new_token"]


def test_a_revoked_token_stops_working_until_provisioning_is_reset(as_acme, provisioned):
    pk, token = provisioned
    client = as_acme("acme_admin")
    client.post(f"/devices/{pk}/revoke-token/")
    assert stored(pk).token_hash is None and audited("device.token_revoked")
    assert api("/api/devices/dev-ece334462bc0/heartbeat/", {}, token).status_code == 401
    assert api("/api/handshake/", {"mac": MAC}, token).status_code == 403
    client.post(f"/devices/{pk}/reset-provisioning/")
    assert audited("device.provisioning_reset")
    assert 'data-testid="provisioning-reset"' in client.get(f"/devices/{pk}/").content.decode()
    assert api("/api/handshake/", {"mac": MAC}).status_code == 200


def test_the_list_filters_registered_and_unregistered_devices(as_acme, provisioned):
    pk, _ = provisioned
    with schema_context("acme"):
        Device.objects.create(device_id="mqtt-gw")  # no MAC: registration does not apply
        Device.objects.create(device_id="counter-2", mac="02:00:00:00:00:02", assigned_at="2025-01-01T00:00:00Z")

        def ids(value):
            return [d.device_id for d in DeviceFilter({"registration": value}, Device.objects.order_by("device_id")).qs]

        assert ids("unregistered") == ["dev-ece334462bc0"]
        assert ids("registered") == ["counter-2"]
    client = as_acme("acme_viewer")
    page = client.get("/devices/", {"registration": "unregistered"})
    assert [d.device_id for d in page.context["rows"]] == ["dev-ece334462bc0"]
    assert 'data-testid="unregistered"' in page.content.decode()
    export = b"".join(client.get("/devices/", {"export": "csv"}).streaming_content).decode()
    assert "registered" in export.splitlines()[0]


def test_an_admin_assigns_the_device_id_and_the_handshake_then_says_assigned(as_acme, provisioned):
    pk, token = provisioned
    assert as_acme("acme_operator").post(f"/devices/{pk}/device-id/", {"device_id": "esp32-001"}).status_code == 403
    as_acme("acme_admin").post(f"/devices/{pk}/device-id/", {"device_id": "bad id!"})
    assert stored(pk).device_id != "bad id!"
    response = as_acme("acme_admin").post(f"/devices/{pk}/device-id/", {"device_id": "esp32-001"})
    assert response.status_code == 302
    renamed = stored(pk)
    assert renamed.device_id == "esp32-001" and renamed.assigned
    (entry,) = audited("device.id_assigned")
    assert entry.changes["device_id"][1] == "esp32-001" and entry.changes["assigned"] == [False, True]
    answer = api("/api/handshake/", {"mac": MAC, "firmware": "1.0.0"}, token).json()
    assert (answer["device_id"], answer["assigned"]) == ("esp32-001", True)
