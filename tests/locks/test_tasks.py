"""The locks' periodic tasks, one step at a time with the clock frozen; the demo data."""

import json
from datetime import UTC, timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from lock_builders import make_lock, make_pin

from portal.alerts.models import SecurityEvent
from portal.locks import tasks
from portal.locks.models import AccessLog, BlockedAddress, Lock, LockCommand, PinCode, QrCode
from telemetry.models import Device, TelemetrySettings

pytestmark = pytest.mark.django_db


def test_expired_and_used_up_codes_are_retired_and_removed_from_the_lock(lock):
    now = timezone.now()
    ended = make_pin(lock, "482913", valid_until=now - timedelta(minutes=1), kind="temporary")
    used = make_pin(lock, "730519", max_uses=1, uses=1, kind="one_time")
    live = make_pin(lock, "915372")
    old_qr = QrCode.objects.create(lock=lock, label="Old", max_uses=1, valid_until=now - timedelta(days=1))
    assert tasks.clean_up_expired(now) == {"pins": 2, "qr_codes": 1}
    assert set(PinCode.objects.filter(active=True).values_list("pk", flat=True)) == {live.pk}
    command = LockCommand.objects.get(kind="code_sync")
    assert {entry["id"] for entry in command.params["codes"]} == {ended.pk, used.pk}
    assert {entry["action"] for entry in command.params["codes"]} == {"remove"}
    old_qr.refresh_from_db()
    assert not old_qr.active
    assert tasks.clean_up_expired(now) == {"pins": 0, "qr_codes": 0}


def test_connectivity_announces_a_silent_lock_once_and_its_return(lock, django_capture_on_commit_callbacks):
    now = timezone.now()
    Device.objects.filter(pk=lock.device_id).update(last_seen=now - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.check_connectivity(now) == 1
        assert tasks.check_connectivity(now) == 0
    assert SecurityEvent.objects.get(kind="offline").resolved is False
    Device.objects.filter(pk=lock.device_id).update(last_seen=now)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.check_connectivity(now) == 1
    assert SecurityEvent.objects.filter(kind="offline", resolved=True).count() == 1


def test_the_suspicious_sweep_flags_addresses_the_inline_check_missed(lock, django_capture_on_commit_callbacks):
    for _ in range(5):
        AccessLog.objects.create(lock=lock, method="pin", success=False, reason="unknown_code", ip="198.51.100.7")
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.detect_suspicious() == 1
        assert tasks.detect_suspicious() == 0  # already blocked
    assert BlockedAddress.objects.get(ip="198.51.100.7").failures == 5


def test_old_access_logs_are_archived_to_csv_then_deleted(lock):
    settings_row = TelemetrySettings.current()
    settings_row.access_log_retention_days = 90
    settings_row.save()
    now = timezone.now()
    AccessLog.objects.create(
        lock=lock, method="pin", success=True, reason="granted", holder="Old", at=now - timedelta(days=91)
    )
    AccessLog.objects.create(
        lock=lock, method="pin", success=True, reason="granted", holder="New", at=now - timedelta(days=1)
    )
    result = tasks.archive_access_logs(now)
    assert result["archived"] == 1
    with default_storage.open(result["file"]) as handle:
        content = handle.read().decode()
    default_storage.delete(result["file"])
    assert "Old" in content and "New" not in content and content.startswith("at,lock_id")
    assert list(AccessLog.objects.values_list("holder", flat=True)) == ["New"]
    assert tasks.archive_access_logs(now) == {"archived": 0}


def test_time_sync_reaches_every_lock(lock):
    make_lock("side-door", "Side door")
    assert tasks.sync_time() == 2
    assert LockCommand.objects.filter(kind="time_sync", source="system").count() == 2


def test_the_monthly_report_goes_to_owners_and_admins(lock, mailoutbox):
    from portal.locks import report

    AccessLog.objects.create(lock=lock, method="pin", success=True, reason="granted", holder="Cleaner")
    month = timezone.localdate().replace(day=1)
    assert report.email_reports([lock], month, report.managers()) == 1
    message = mailoutbox[0]
    assert set(message.to) >= {"acme_owner@example.com", "acme_admin@example.com"}
    assert "acme_viewer@example.com" not in message.to
    assert message.attachments[0][2] == "application/pdf" and message.attachments[0][1].startswith(b"%PDF")


def test_email_me_the_report(as_acme, lock, mailoutbox):
    response = as_acme("acme_viewer").post(f"/locks/{lock.pk}/report/email/", {"month": "2026-11"})
    assert response.status_code == 302
    assert mailoutbox[0].to == ["acme_viewer@example.com"] and "November 2026" in mailoutbox[0].subject


def test_the_demo_gives_acme_locks_codes_and_guests(acme, django_capture_on_commit_callbacks, mailoutbox):
    from django_tenants.utils import schema_context

    from portal.facilities.demo import seed_tenant as seed_facilities
    from portal.locks.demo import seed_tenant

    lines = []
    with schema_context("acme"), django_capture_on_commit_callbacks(execute=True):
        seed_facilities(acme, lines.append)
        seed_tenant(acme, lines.append)
        seed_tenant(acme, lines.append)  # again: nothing more
        assert Lock.objects.count() == 3
        assert Lock.objects.filter(protocol="smartlock").count() == 1
        assert PinCode.objects.filter(kind="scheduled").count() == 3
        assert all(lock.guests.count() == 1 for lock in Lock.objects.all())
        assert LockCommand.objects.filter(kind="code_sync").exists()
    assert any("PIN" in line for line in lines)


def scheduled_expiry(command):
    from huey.contrib.djhuey import HUEY

    return [
        task for task in HUEY.scheduled() if task.name.endswith("expire_command") and task.args[1:] == (command.pk,)
    ]


def test_a_command_expires_at_its_deadline_by_a_task_scheduled_for_it(
    lock, django_capture_on_commit_callbacks, time_machine
):
    """Issue 14: "a Huey task expires unanswered commands after a timeout", not up to a minute
    later at the next sweep: issuing a command schedules its own expiry for its deadline."""
    from huey.contrib.djhuey import HUEY

    time_machine.move_to(timezone.now(), tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        command = LockCommand.issue(lock, "unlock")
    [task] = scheduled_expiry(command)
    assert task.args[0] == "acme"
    assert task.eta == command.expires_at.astimezone(UTC).replace(tzinfo=None)  # huey keeps naive UTC
    time_machine.move_to(command.expires_at, tick=False)  # the worker runs it at its eta
    with django_capture_on_commit_callbacks(execute=True):
        assert HUEY.execute(task) == 1
    command.refresh_from_db()
    assert command.state == "expired" and "no answer from the lock within 30 s" in command.detail
    assert SecurityEvent.objects.get(kind="command_expired").details["request_id"] == str(command.request_id)


def test_a_commands_scheduled_expiry_leaves_an_answered_command_alone(lock, django_capture_on_commit_callbacks):
    from huey.contrib.djhuey import HUEY

    with django_capture_on_commit_callbacks(execute=True):
        command = LockCommand.issue(lock, "lock")
    [task] = scheduled_expiry(command)
    LockCommand.objects.filter(pk=command.pk).update(state="acknowledged", settled_at=timezone.now())
    assert tasks.expire_command.call_local("acme", command.pk) == 0
    command.refresh_from_db()
    assert command.state == "acknowledged"
    HUEY.storage.flush_schedule()  # nothing else in this process waits on the in-memory schedule


class Recorder:
    """A stand-in MQTT client that keeps what is published."""

    def __init__(self):
        self.sent = []

    def publish(self, topic, payload, qos=0):
        self.sent.append((topic, json.loads(payload)))


def test_the_simulated_lock_fails_motor_commands_but_settles_code_syncs():
    """The demo's simulated locks sometimes fail (a motor fault): a lock or an unlock, never a code
    sync, which made the demo's codes show failed from the start."""
    from bridge.simlock import SimLock, SimulatedLocks

    client = Recorder()
    sim = SimLock("door", "tenants/acme/locks/door")
    fleet = SimulatedLocks(client, [sim], delay=0, failure_rate=1.0)
    codes = [{"id": 7, "action": "set", "hash": "ab"}]
    fleet.answer(sim, {"command": "code_sync", "request_id": "r1", "codes": codes}, ota=False)
    fleet.answer(sim, {"command": "unlock", "request_id": "r2"}, ota=False)
    replies = {payload["request_id"]: payload for topic, payload in client.sent if topic.endswith("/response")}
    assert replies["r1"]["success"] is True and replies["r1"]["codes"] == [{"id": 7, "ok": True}]
    assert replies["r2"]["success"] is False and replies["r2"]["error"] == "motor fault"
    assert sim.codes == {7: codes[0]}
