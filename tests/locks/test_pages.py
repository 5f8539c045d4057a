"""Lock pages: list, detail, lock/unlock with confirmation by role, settings, codes; isolation; fuzz."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lock_builders import make_lock

from portal.audit.models import AuditLog
from portal.locks.models import AccessLog, Lock, LockCommand, PinCode
from portal.tenancy.models import LockRoute

pytestmark = pytest.mark.django_db


def test_the_list_shows_locks_with_state_battery_and_csv(as_acme, lock):
    Lock.objects.filter(pk=lock.pk).update(status="locked", battery=15)
    client = as_acme("acme_viewer")
    page = client.get("/locks/")
    assert page.status_code == 200
    assert b"Front door" in page.content and b"15 %" in page.content
    csv = b"".join(client.get("/locks/?export=csv").streaming_content).decode()
    assert csv.splitlines()[0].startswith("lock_id,name,site")
    assert "front-door,Front door,Lisbon office" in csv
    assert b"No lock matches" in client.get("/locks/?q=nothing-like-it").content


def test_viewers_see_the_lock_but_cannot_unlock(as_acme, lock):
    client = as_acme("acme_viewer")
    page = client.get(f"/locks/{lock.pk}/")
    assert page.status_code == 200 and b'data-testid="unlock-button"' not in page.content
    assert client.post(f"/locks/{lock.pk}/unlock/").status_code == 403
    assert not LockCommand.objects.exists()


def test_an_operator_confirms_then_unlocks_and_it_is_audited(as_acme, lock):
    client = as_acme("acme_operator")
    confirm = client.get(f"/locks/{lock.pk}/unlock/")
    assert confirm.status_code == 200 and b"Unlock <strong>Front door</strong>" in confirm.content
    assert not LockCommand.objects.exists()  # asking is not doing
    response = client.post(f"/locks/{lock.pk}/unlock/")
    assert response.status_code == 302
    command = LockCommand.objects.get()
    assert (command.kind, command.state, command.requested_by_email) == (
        "unlock",
        "pending",
        "acme_operator@example.com",
    )
    assert AuditLog.objects.filter(action="lock.unlock", object_id=str(lock.pk)).exists()


def test_the_htmx_unlock_answers_the_live_part_with_the_pending_command(as_acme, lock):
    response = as_acme("acme_operator").post(f"/locks/{lock.pk}/unlock/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b'id="lock-live"' in response.content and b'data-state="pending"' in response.content
    assert b'id="lock-confirm" hx-swap-oob="true"' in response.content


def test_the_live_endpoint_answers_204_until_something_changes(as_acme, lock):
    client = as_acme("acme_viewer")
    first = client.get(f"/locks/{lock.pk}/live/")
    assert first.status_code == 200
    cursor = first.content.split(b"since=")[1].split(b'"')[0].decode()
    assert client.get(f"/locks/{lock.pk}/live/", {"since": cursor}).status_code == 204
    LockCommand.issue(lock, "lock")
    changed = client.get(f"/locks/{lock.pk}/live/", {"since": cursor})
    assert changed.status_code == 200 and b"Lock" in changed.content
    assert client.get(f"/locks/{lock.pk}/live/", {"since": "nope"}).status_code == 400


def test_new_access_attempts_come_with_the_live_answer(as_acme, lock):
    """Recent access is live (issue 14): an attempt moves the cursor, and the poll's answer carries
    the list again out of band (it sits elsewhere on the page), newest first."""
    from lock_builders import make_pin

    from portal.locks import access

    client = as_acme("acme_viewer")
    page = client.get(f"/locks/{lock.pk}/")
    assert page.content.count(b'id="lock-recent-access"') == 1 and b"No access yet." in page.content
    assert b'id="lock-recent-access" data-testid="recent-access" hx-swap-oob' not in page.content
    cursor = client.get(f"/locks/{lock.pk}/live/").content.split(b"since=")[1].split(b'"')[0].decode()
    make_pin(lock, label="Cleaning service")
    access.check(lock, access.Attempt("pin", "482913", ip="198.51.100.7"), timezone.now() + timedelta(seconds=1))
    answer = client.get(f"/locks/{lock.pk}/live/", {"since": cursor})
    assert answer.status_code == 200
    assert b'id="lock-recent-access" data-testid="recent-access" hx-swap-oob="true"' in answer.content
    assert b"Cleaning service" in answer.content and b"198.51.100.7" in answer.content
    newer = answer.content.split(b"since=")[1].split(b'"')[0].decode()
    assert client.get(f"/locks/{lock.pk}/live/", {"since": newer}).status_code == 204


def test_the_live_element_polls_every_half_second(as_acme, lock):
    assert b'data-live-every="0.5"' in as_acme("acme_viewer").get(f"/locks/{lock.pk}/").content


def test_admins_change_settings_and_the_lock_is_sent_them(as_acme, lock):
    client = as_acme("acme_admin")
    data = {"auto_lock_enabled": "on", "auto_lock_delay": "90", "led_enabled": "on"}
    assert client.post(f"/locks/{lock.pk}/actions/settings/", data).status_code == 302
    lock.refresh_from_db()
    assert (lock.auto_lock_delay, lock.silent_mode, lock.notifications_enabled) == (90, False, False)
    command = LockCommand.objects.get(kind="settings")
    assert command.params["settings"]["auto_lock_delay"] == 90
    bad = client.post(f"/locks/{lock.pk}/actions/settings/", {"auto_lock_delay": "0"})
    assert bad.status_code == 400 and b"Between 1 and 3600" in bad.content
    assert as_acme("acme_operator").post(f"/locks/{lock.pk}/actions/settings/", data).status_code == 403


def test_a_firmware_update_needs_https(as_acme, lock):
    client = as_acme("acme_admin")
    assert (
        client.post(f"/locks/{lock.pk}/actions/firmware/", {"firmware_url": "http://x.example/fw.bin"}).status_code
        == 400
    )
    assert (
        client.post(f"/locks/{lock.pk}/actions/firmware/", {"firmware_url": "https://x.example/fw.bin"}).status_code
        == 302
    )
    assert LockCommand.objects.get(kind="ota").params["firmware_url"] == "https://x.example/fw.bin"


def test_adding_a_lock_shows_its_key_once_and_registers_its_id(as_acme, in_acme):
    client = as_acme("acme_admin")
    response = client.post("/locks/new/", {"lock_id": "back-door-7", "name": "Back door", "protocol": "smartlock"})
    assert response.status_code == 200 and b'data-testid="secret-value"' in response.content
    assert "no-cache" in response["Cache-Control"]
    lock = Lock.objects.get(device__device_id="back-door-7")
    key = response.content.split(b'data-testid="secret-value">')[1].split(b"<")[0].decode()
    assert lock.device.token_hash and key not in lock.device.token_hash
    assert LockRoute.objects.get(lock_id="back-door-7").tenant.schema_name == "acme"
    again = client.post("/locks/new/", {"lock_id": "back-door-7", "name": "Again", "protocol": "fieldwatch"})
    assert again.status_code == 400 and b"already exists" in again.content
    assert client.post("/locks/new/", {"lock_id": "a/b", "name": "Slash"}).status_code == 400


def test_a_lock_id_taken_by_another_tenant_is_refused(as_acme, in_acme):
    with schema_context("globex"):
        make_lock("shared-id", "Globex door")
    response = as_acme("acme_admin").post(
        "/locks/new/", {"lock_id": "shared-id", "name": "Mine", "protocol": "smartlock"}
    )
    assert response.status_code == 400 and b"already registered" in response.content


def test_another_tenants_lock_is_a_404(as_acme, in_acme):
    with schema_context("globex"):
        theirs = make_lock("globex-door", "Globex door")
    client = as_acme("acme_owner")
    for path in ("/", "live/", "unlock/", "edit/", "pins/new/"):
        assert (
            client.get(f"/locks/{theirs.pk + 1000}/{path.strip('/') + '/' if path != '/' else ''}").status_code == 404
        )
    with schema_context("acme"):
        assert not Lock.objects.filter(pk=theirs.pk).exists() or Lock.objects.get(pk=theirs.pk).name != "Globex door"


def test_outsiders_see_nothing(acme_client, people, lock):
    from helpers import sign_in

    sign_in(acme_client, people["outsider"], "acme")
    assert acme_client.get(f"/locks/{lock.pk}/").status_code == 403


def test_the_access_log_filters_and_exports_exactly_the_rows(as_acme, lock):
    other = make_lock("side-door", "Side door")
    AccessLog.objects.create(lock=lock, method="pin", success=True, reason="granted", holder="Cleaner")
    AccessLog.objects.create(lock=lock, method="pin", success=False, reason="unknown_code", ip="203.0.113.5")
    AccessLog.objects.create(lock=other, method="qr", success=True, reason="granted")
    client = as_acme("acme_viewer")
    assert client.get("/locks/access-log/").content.count(b'data-testid="access-row"') == 3
    refused = client.get("/locks/access-log/", {"success": "no"})
    assert refused.content.count(b'data-testid="access-row"') == 1
    csv = b"".join(client.get("/locks/access-log/", {"lock": lock.pk, "export": "csv"}).streaming_content).decode()
    lines = csv.strip().splitlines()
    assert len(lines) == 3 and all("Front door" in line for line in lines[1:])
    assert "203.0.113.5" in csv


def test_the_monthly_report_is_a_pdf(as_acme, lock):
    AccessLog.objects.create(lock=lock, method="pin", success=True, reason="granted", holder="Zoë")
    response = as_acme("acme_viewer").get(f"/locks/{lock.pk}/report/")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    assert as_acme("acme_viewer").get(f"/locks/{lock.pk}/report/", {"month": "1999-13"}).status_code == 400


def test_deleting_a_lock_frees_its_id(as_acme, lock):
    assert LockRoute.objects.filter(lock_id="front-door").exists()
    assert as_acme("acme_admin").post(f"/locks/{lock.pk}/delete/").status_code == 302
    assert not LockRoute.objects.filter(lock_id="front-door").exists()
    assert not PinCode.objects.exists()


PAGES = ["/locks/", "/locks/access-log/", "/locks/security/"]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(PAGES),
    params=st.dictionaries(
        st.sampled_from(
            [
                "q",
                "status",
                "online",
                "site",
                "battery_below",
                "lock",
                "method",
                "action",
                "success",
                "start",
                "end",
                "sort",
                "page",
                "export",
            ]
        ),
        st.text(max_size=30),
        max_size=4,
    ),
)
def test_lists_never_500(as_acme, in_acme, path, params):
    assert as_acme("acme_viewer").get(path, params).status_code < 500


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    action=st.sampled_from(
        ["pins/new/", "qr/new/", "guests/new/", "actions/settings/", "actions/firmware/", "unlock/", "live/"]
    ),
    data=st.dictionaries(
        st.sampled_from(
            [
                "label",
                "email",
                "kind",
                "pin",
                "length",
                "valid_from",
                "valid_until",
                "max_uses",
                "days",
                "start",
                "end",
                "single_use",
                "name",
                "method",
                "auto_lock_delay",
                "firmware_url",
                "since",
            ]
        ),
        st.text(max_size=20),
        max_size=6,
    ),
)
def test_forms_never_500(as_acme, lock, action, data):
    client = as_acme("acme_admin")
    assert client.post(f"/locks/{lock.pk}/{action}", data).status_code < 500
    assert client.get(f"/locks/{lock.pk}/{action}", data).status_code < 500
