"""Seed 004's REST API: its paths, fields and pages, with tokens from /api/v1/auth/login/; roles,
isolation, no clear PIN after creation, and a fuzz that never gets a 500."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from helpers import PASSWORD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lock_builders import make_lock, make_pin

from portal.locks.models import AccessLog, LockCommand, QrCode

pytestmark = pytest.mark.django_db


def login(client, email):
    response = client.post(
        "/api/v1/auth/login/", {"email": email, "password": PASSWORD}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def api(acme_client, people):
    """A client calling as a persona with a bearer token: api("acme_operator").get(…)."""

    class Api:
        def __init__(self, name):
            from portal.api.auth import issue_tokens

            with schema_context("acme"):
                made = issue_tokens(people[name].pk)  # login itself is tested above (and rate-limited)
            self.tokens = {"access": made["access_token"], "refresh": made["refresh_token"]}
            self.headers = {"HTTP_AUTHORIZATION": f"Bearer {self.tokens['access']}"}

        def get(self, path, params=None):
            return acme_client.get(path, params or {}, **self.headers)

        def send(self, method, path, body=None):
            call = getattr(acme_client, method)
            return call(
                path, json.dumps(body) if body is not None else "", content_type="application/json", **self.headers
            )

        def post(self, path, body=None):
            return self.send("post", path, body)

    return Api


def test_login_answers_seed_004s_shape_and_seed_002s_login_still_works(acme_client, people):
    answer = login(acme_client, "acme_viewer@example.com")
    assert set(answer) == {"user", "tokens"} and set(answer["tokens"]) == {"access", "refresh"}
    assert answer["user"]["email"] == "acme_viewer@example.com" and set(answer["user"]) == {
        "id",
        "email",
        "full_name",
        "is_verified",
    }
    wrong = acme_client.post(
        "/api/v1/auth/login/", {"email": "acme_viewer@example.com", "password": "nope"}, content_type="application/json"
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    old = acme_client.post(
        "/api/v1/auth/login",
        {"username": "acme_viewer@example.com", "password": PASSWORD},
        content_type="application/json",
    )
    assert old.status_code == 200 and "access_token" in old.json()


def test_refresh_and_logout_revoke_the_refresh_token(acme_client, api):
    caller = api("acme_viewer")
    refresh = caller.tokens["refresh"]
    fresh = acme_client.post("/api/v1/auth/token/refresh/", {"refresh": refresh}, content_type="application/json")
    assert fresh.status_code == 200 and set(fresh.json()) == {"access"}
    out = caller.post("/api/v1/auth/logout/", {"refresh": refresh})
    assert out.status_code == 200 and out.json() == {"message": "Successfully logged out"}
    again = acme_client.post("/api/v1/auth/token/refresh/", {"refresh": refresh}, content_type="application/json")
    assert again.status_code == 401


def test_devices_list_pages_and_fields(api, lock):
    Lock = type(lock)
    Lock.objects.filter(pk=lock.pk).update(battery=85, status="locked")
    for n in range(3):
        make_lock(f"extra-{n}", f"Extra {n}")
    page = api("acme_viewer").get("/api/v1/devices/", {"page_size": 2}).json()
    assert (
        page["count"] == 4
        and len(page["results"]) == 2
        and page["next"].endswith("page=2&page_size=2")
        or "page=2" in page["next"]
    )
    assert page["previous"] is None
    row = next(
        r for r in api("acme_viewer").get("/api/v1/devices/").json()["results"] if r["device_id"] == "front-door"
    )
    assert set(row) >= {
        "id",
        "name",
        "device_id",
        "location",
        "is_online",
        "battery_level",
        "lock_status",
        "firmware_version",
        "last_activity",
        "created_at",
    }
    assert (row["battery_level"], row["lock_status"], row["location"]) == (85, "locked", "Lisbon office")
    detail = api("acme_viewer").get(f"/api/v1/devices/{lock.pk}/").json()
    assert (
        detail["status_display"] == "Locked"
        and detail["settings"]["auto_lock_delay"] == 30
        and detail["owner_name"] == "Acme"
    )


def test_creating_and_deleting_a_lock_needs_an_admin(api, in_acme):
    assert api("acme_operator").post("/api/v1/devices/", {"name": "Back door"}).status_code == 403
    made = api("acme_admin").post(
        "/api/v1/devices/", {"name": "Back door", "device_id": "DEF789GHI012", "location": "Back"}
    )
    assert made.status_code == 201
    body = made.json()
    assert (
        body["device_id"] == "DEF789GHI012"
        and body["owner"]["email"] == "acme_admin@example.com"
        and body["device_key"]
    )
    assert api("acme_admin").post("/api/v1/devices/", {"name": "Dup", "device_id": "DEF789GHI012"}).status_code == 409
    generated = api("acme_admin").post("/api/v1/devices/", {"name": "No id"}).json()
    assert len(generated["device_id"]) == 12
    assert api("acme_admin").send("delete", f"/api/v1/devices/{body['id']}/").status_code == 204
    assert api("acme_admin").get(f"/api/v1/devices/{body['id']}/").status_code == 404


def test_lock_and_unlock_write_commands_for_operators_only(api, lock):
    assert api("acme_viewer").post(f"/api/v1/devices/{lock.pk}/unlock/").status_code == 403
    answer = api("acme_operator").post(f"/api/v1/devices/{lock.pk}/unlock/", {})
    assert answer.status_code == 200
    body = answer.json()
    assert (
        body["status"] == "unlock command sent"
        and body["device_id"] == "front-door"
        and body["command_state"] == "pending"
    )
    assert LockCommand.objects.get(request_id=body["request_id"]).source == "api"
    make_pin(lock)
    refused = api("acme_operator").post(f"/api/v1/devices/{lock.pk}/lock/", {"pin_code": "000001"})
    assert refused.status_code == 403 and refused.json()["error"]["reason"] == "unknown_code"
    assert api("acme_operator").post(f"/api/v1/devices/{lock.pk}/lock/", {"pin_code": "482913"}).status_code == 200


def test_status_battery_logs_and_settings(api, lock):
    AccessLog.objects.create(
        lock=lock, method="pin", success=True, reason="granted", holder="Cleaner", ip="192.168.1.10"
    )
    status = api("acme_viewer").get(f"/api/v1/devices/{lock.pk}/status/").json()
    assert set(status) >= {"device_id", "is_online", "battery_level", "lock_status", "last_seen", "signal_strength"}
    assert api("acme_viewer").get(f"/api/v1/devices/{lock.pk}/battery/").json()["history"] == []
    logs = api("acme_viewer").get(f"/api/v1/devices/{lock.pk}/logs/").json()
    assert (
        logs["count"] == 1
        and logs["results"][0]["user"] == "Cleaner"
        and logs["results"][0]["ip_address"] == "192.168.1.10"
    )
    assert (
        api("acme_operator").send("put", f"/api/v1/devices/{lock.pk}/settings/", {"auto_lock_delay": 60}).status_code
        == 403
    )
    changed = api("acme_admin").send(
        "put", f"/api/v1/devices/{lock.pk}/settings/", {"auto_lock_delay": 60, "notifications_enabled": False}
    )
    assert (
        changed.status_code == 200 and changed.json()["auto_lock_delay"] == 60 and changed.json()["device"] == lock.pk
    )
    assert LockCommand.objects.filter(kind="settings").count() == 1
    assert (
        api("acme_admin").send("put", f"/api/v1/devices/{lock.pk}/settings/", {"auto_lock_delay": 0}).status_code == 400
    )


def test_pins_are_shown_once_and_validated_with_their_uses(api, lock):
    made = api("acme_admin").post(
        "/api/v1/access/pins/",
        {
            "device": lock.pk,
            "user": "Guest",
            "pin_code": "654391",
            "max_uses": 5,
            "is_temporary": True,
            "valid_until": (timezone.now() + timedelta(days=1)).isoformat(),
        },
    )
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["pin_code"] == "654391" and body["max_uses"] == 5 and body["device"]["id"] == lock.pk
    listed = api("acme_viewer").get("/api/v1/access/pins/").json()
    assert listed["count"] == 1 and listed["results"][0]["pin_code"] is None
    weak = api("acme_admin").post("/api/v1/access/pins/", {"device": lock.pk, "pin_code": "1234"})
    assert weak.status_code == 400 and "pin_code" in weak.json()["error"]["fields"]
    ok = api("acme_operator").post(f"/api/v1/access/pins/{body['id']}/validate/", {"pin_code": "654391"}).json()
    assert ok == {
        "valid": True,
        "pin_id": body["id"],
        "device_id": "front-door",
        "usage_count": 1,
        "remaining_uses": 4,
        "reason": None,
    }
    bad = api("acme_operator").post(f"/api/v1/access/pins/{body['id']}/validate/", {"pin_code": "111999"}).json()
    assert bad["valid"] is False and bad["reason"] == "Wrong code"


def test_qr_codes_are_created_and_scanned_once(api, lock):
    made = api("acme_admin").post(
        "/api/v1/access/qrcodes/",
        {"device": lock.pk, "is_single_use": True, "valid_until": (timezone.now() + timedelta(days=1)).isoformat()},
    )
    assert made.status_code == 201
    body = made.json()
    assert body["qr_image"].endswith("/svg/") and body["is_single_use"] and not body["used"]
    scan = api("acme_operator").post(f"/api/v1/access/qrcodes/{body['id']}/scan/", {"code": body["code"]}).json()
    assert scan == {"valid": True, "device_id": "front-door", "action": "unlock", "message": "Access granted"}
    again = api("acme_operator").post(f"/api/v1/access/qrcodes/{body['id']}/scan/", {"code": body["code"]}).json()
    assert again["valid"] is False
    assert QrCode.objects.get(pk=body["id"]).used
    assert api("acme_viewer").get("/api/v1/access/qrcodes/").status_code == 403  # codes are credentials


def test_access_logs_filter_by_device_and_dates(api, lock):
    other = make_lock("side-door", "Side door")
    AccessLog.objects.create(
        lock=lock, method="pin", success=False, reason="unknown_code", at=timezone.now() - timedelta(days=3)
    )
    AccessLog.objects.create(lock=other, method="app", success=True, reason="granted")
    everything = api("acme_viewer").get("/api/v1/access/logs/").json()
    assert everything["count"] == 2
    mine = api("acme_viewer").get("/api/v1/access/logs/", {"device": lock.pk}).json()
    assert (
        mine["count"] == 1
        and mine["results"][0]["failure_reason"] == "unknown_code"
        and mine["results"][0]["device"]["name"] == "Front door"
    )
    today = timezone.localdate().isoformat()
    assert api("acme_viewer").get("/api/v1/access/logs/", {"start_date": today}).json()["count"] == 1
    assert api("acme_viewer").get("/api/v1/access/logs/recent/").json()["count"] == 1
    assert api("acme_viewer").get("/api/v1/access/logs/", {"start_date": "yesterday"}).status_code == 400


def test_security_alerts_and_failed_attempts(api, lock, django_capture_on_commit_callbacks):
    from portal.alerts.models import AlertRule
    from portal.locks import access

    assert AlertRule.objects.filter(name="Lock security").exists()  # made with the tenant's first lock
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            access.check(lock, access.Attempt("pin", "111222", ip="203.0.113.5"))
    alerts = api("acme_viewer").get("/api/v1/security/alerts/unresolved/").json()
    assert alerts["count"] == 1
    alert = alerts["results"][0]
    assert alert["alert_type"] == "lockout" and alert["device"]["id"] == lock.pk and alert["is_resolved"] is False
    resolved = api("acme_operator").post(f"/api/v1/security/alerts/{alert['id']}/resolve/", {"notes": "False alarm"})
    assert (
        resolved.status_code == 200
        and resolved.json()["status"] == "resolved"
        and resolved.json()["resolved_by"] == "acme_operator@example.com"
    )
    assert api("acme_viewer").get("/api/v1/security/alerts/unresolved/").json()["count"] == 0
    failed = api("acme_viewer").get("/api/v1/security/failed-attempts/").json()
    assert failed["count"] == 5
    newest = failed["results"][0]
    assert (
        newest["attempted_pin"] is None
        and newest["ip_address"] == "203.0.113.5"
        and newest["attempt_count"] == 5
        and newest["is_blocked"]
    )


def test_another_tenants_locks_are_404_and_anonymous_is_401(acme_client, api, in_acme):
    with schema_context("globex"):
        theirs = make_lock("globex-door", "Globex door")
    assert api("acme_owner").get(f"/api/v1/devices/{theirs.pk + 500}/").status_code == 404
    assert acme_client.get("/api/v1/devices/").status_code == 401
    assert acme_client.get("/api/v1/devices/").json()["error"]["code"] == "unauthenticated"


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(
        [
            "/api/v1/devices/",
            "/api/v1/access/pins/",
            "/api/v1/access/qrcodes/",
            "/api/v1/access/logs/",
            "/api/v1/security/failed-attempts/",
            "/api/v1/devices/1/unlock/",
            "/api/v1/access/pins/1/validate/",
        ]
    ),
    body=st.dictionaries(
        st.sampled_from(
            ["device", "pin_code", "name", "device_id", "valid_until", "max_uses", "code", "is_single_use", "user"]
        ),
        st.one_of(st.text(max_size=20), st.integers(), st.none(), st.booleans()),
        max_size=5,
    ),
    params=st.dictionaries(
        st.sampled_from(["page", "page_size", "device", "start_date", "end_date"]), st.text(max_size=12), max_size=3
    ),
)
def test_the_api_never_answers_500(api, lock, path, body, params):
    caller = api("acme_admin")
    assert caller.get(path, params).status_code < 500
    assert caller.post(path, body).status_code < 500
