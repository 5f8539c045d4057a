"""The access check: over HTTP with the lock's key and over MQTT; lockout after 5 failures in 15
minutes and its release; suspicious addresses; no clear PIN anywhere."""

import json
import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from lock_builders import make_lock, make_pin

from portal.alerts.models import Alert, AlertRule, SecurityEvent
from portal.locks import access, tasks, topics
from portal.locks.models import AccessLog, BlockedAddress, Lock, LockCommand

pytestmark = pytest.mark.django_db


@pytest.fixture
def keyed_lock(lock):
    key = lock.device.issue_token()
    lock.device.save()
    make_pin(lock)
    return lock, key


def post(client, lock, key, body, **headers):
    return client.post(
        f"/api/locks/{lock.lock_id}/access/",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
        **headers,
    )


def test_the_lock_checks_a_pin_with_its_key(acme_client, keyed_lock):
    lock, key = keyed_lock
    granted = post(acme_client, lock, key, {"method": "pin", "code": "482913"})
    assert granted.status_code == 200 and granted.json() == {
        "allowed": True,
        "reason": "granted",
        "message": "Access granted",
        "remaining_uses": None,
    }
    refused = post(acme_client, lock, key, {"method": "pin", "code": "000001"})
    assert refused.status_code == 200 and refused.json()["reason"] == "unknown_code"
    entry = AccessLog.objects.filter(success=True).get()
    assert (entry.method, entry.holder, entry.source, entry.ip) == ("pin", "Cleaning service", "http", "127.0.0.1")


def test_an_access_check_over_http_is_three_queries_and_a_failure_one_more(acme_client, keyed_lock):
    """The hot path (issue 14's 1,000 checks a second): the lock by its key with the address
    block, the code by its digest, the use counted and logged in one statement; a failure adds the
    two failure counts in one query. Before: five queries, seven for a failure, two commits."""
    from django.test.utils import CaptureQueriesContext

    lock, key = keyed_lock
    post(acme_client, lock, key, {"method": "pin", "code": "000001"})  # the tenant's routing is cached
    with CaptureQueriesContext(connection) as granted:
        assert post(acme_client, lock, key, {"method": "pin", "code": "482913"}).json()["allowed"]
    with CaptureQueriesContext(connection) as refused:
        assert post(acme_client, lock, key, {"method": "pin", "code": "000002"}).json()["reason"] == "unknown_code"
    mine = [q["sql"] for q in granted.captured_queries if "locks_" in q["sql"]]
    assert len(mine) == 3, mine
    assert "blockedaddress" in mine[0] and "RETURNING" in mine[2] and "locks_accesslog" in mine[2]
    assert len([q for q in refused.captured_queries if "locks_" in q["sql"]]) == 4
    assert AccessLog.objects.count() == 3


def test_the_access_check_refuses_bad_callers_in_the_error_shape(acme_client, globex_client, keyed_lock):
    lock, key = keyed_lock
    assert post(acme_client, lock, "wrong", {"code": "482913"}).status_code == 401
    assert post(globex_client, lock, key, {"code": "482913"}).status_code in (401, 404)
    bad = post(acme_client, lock, key, {"method": "finger", "code": ["x"]})
    assert bad.status_code == 400 and set(bad.json()["error"]["fields"]) == {"method", "code"}
    assert acme_client.get(f"/api/locks/{lock.lock_id}/access/").status_code == 405
    assert post(acme_client, lock, key, {"code": "1" * 5000}).status_code == 413


def test_five_failures_in_fifteen_minutes_lock_the_keypad_and_open_an_alert(
    lock, time_machine, django_capture_on_commit_callbacks
):
    rule = AlertRule.objects.get(name="Lock security")  # made with the tenant's first lock
    make_pin(lock)
    start = timezone.now()
    time_machine.move_to(start, tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(5):
            time_machine.move_to(start + timedelta(minutes=3 * n), tick=False)
            decision = access.check(lock, access.Attempt("pin", "111222"))
            assert decision.reason == "unknown_code"
    lock.refresh_from_db()
    assert lock.keypad_locked()
    keypad = LockCommand.objects.get(kind="keypad")
    assert keypad.params["enabled"] is False  # the lock is told
    assert access.check(lock, access.Attempt("pin", "482913")).reason == "keypad_locked"  # even the right PIN
    assert SecurityEvent.objects.get(kind="lockout").resolved is False
    assert Alert.objects.get(rule=rule).status == "open"
    # the block ends: the keypad is enabled again, the event resolved, and the PIN works
    time_machine.move_to(lock.keypad_disabled_until + timedelta(seconds=1), tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.release_due() == 1
    lock.refresh_from_db()
    assert not lock.keypad_locked()
    assert LockCommand.objects.filter(kind="keypad", params__enabled=True).exists()
    assert SecurityEvent.objects.filter(kind="lockout", resolved=True).exists()
    assert access.check(lock, access.Attempt("pin", "482913")).allowed
    # the failures that caused the lockout do not count again
    assert access.check(lock, access.Attempt("pin", "111222")).reason == "unknown_code"
    lock.refresh_from_db()
    assert not lock.keypad_locked()


def test_failures_spread_over_more_than_fifteen_minutes_do_not_lock(lock, time_machine):
    start = timezone.now()
    for n in range(5):
        time_machine.move_to(start + timedelta(minutes=4 * n), tick=False)
        access.check(lock, access.Attempt("pin", "111222"))
    lock.refresh_from_db()
    assert not lock.keypad_locked()


def test_an_address_failing_across_locks_is_flagged_and_blocked(lock, django_capture_on_commit_callbacks):
    others = [make_lock(f"door-{n}", f"Door {n}") for n in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        for other in others:
            assert access.check(other, access.Attempt("pin", "111222", ip="203.0.113.9")).reason == "unknown_code"
    assert BlockedAddress.objects.get(ip="203.0.113.9").blocked
    assert SecurityEvent.objects.filter(kind="suspicious_ip", details__ip="203.0.113.9").count() == 1
    make_pin(lock)
    assert access.check(lock, access.Attempt("pin", "482913", ip="203.0.113.9")).reason == "blocked_address"
    assert access.check(lock, access.Attempt("pin", "482913", ip="198.51.100.1")).allowed
    assert not any(Lock.objects.get(pk=o.pk).keypad_locked() for o in others)  # one failure each


def test_the_lock_asks_over_mqtt_and_gets_its_answer_on_the_result_topic(lock, acme):
    make_pin(lock)
    topics.directory.clear()
    replies = topics.handle(
        f"tenants/acme/locks/{lock.lock_id}/access",
        b'{"request_id": "r1", "method": "pin", "code": "482913"}',
        timezone.now(),
    )
    ((topic, payload),) = replies
    assert topic == f"tenants/acme/locks/{lock.lock_id}/access/result"
    assert json.loads(payload)["allowed"] is True and json.loads(payload)["request_id"] == "r1"
    assert AccessLog.objects.get().source == "mqtt"
    connection.set_schema_to_public()


def test_unreadable_lock_messages_become_dead_letters(lock, acme):
    from telemetry.models import DeadLetter

    topics.directory.clear()
    now = timezone.now()
    assert topics.handle(f"tenants/acme/locks/{lock.lock_id}/status", b"{not json", now) == []
    assert topics.handle("tenants/acme/locks/ghost/status", b"{}", now) == []
    assert topics.handle("smartlock/ghost/status", b"{}", now) == []
    from django_tenants.utils import schema_context

    with schema_context("acme"):
        assert set(DeadLetter.objects.values_list("reason", flat=True)) >= {"bad_json", "unknown_lock"}
    with schema_context("public"):
        assert DeadLetter.objects.filter(topic="smartlock/ghost/status", reason="unknown_lock").exists()


def test_an_older_status_changes_nothing_and_values_are_bounded(lock, acme):
    topics.directory.clear()
    now = timezone.now()
    fresh = {"battery": 80, "lock_status": "locked", "timestamp": now.isoformat()}
    topics.handle(f"tenants/acme/locks/{lock.lock_id}/status", json.dumps(fresh).encode(), now)
    stale = {"battery": 10, "lock_status": "unlocked", "timestamp": (now - timedelta(minutes=5)).isoformat()}
    topics.handle(f"tenants/acme/locks/{lock.lock_id}/status", json.dumps(stale).encode(), now)
    wild = {"battery": 1e9, "signal_strength": "x", "lock_status": "exploded", "timestamp": "9999-01-01T00:00:00"}
    topics.handle(f"tenants/acme/locks/{lock.lock_id}/status", json.dumps(wild).encode(), now + timedelta(seconds=1))
    from django_tenants.utils import schema_context

    with schema_context("acme"):
        lock.refresh_from_db()
        assert (lock.battery, lock.status) == (80, "locked")


def test_no_pin_is_ever_stored_or_logged_in_clear(
    acme_client, keyed_lock, caplog, as_acme, django_capture_on_commit_callbacks, mailoutbox
):
    lock, key = keyed_lock
    caplog.set_level(logging.DEBUG)
    with django_capture_on_commit_callbacks(execute=True):
        made = as_acme("acme_admin").post(
            f"/locks/{lock.pk}/pins/new/",
            {"label": "Z", "kind": "permanent", "pin": "730519", "length": 6, "email": "z@example.com"},
        )
    assert made.status_code == 200
    for code in ("730519", "000001", "999x"):
        post(acme_client, lock, key, {"method": "pin", "code": code})
    topics.directory.clear()
    topics.handle(f"tenants/acme/locks/{lock.lock_id}/access", b'{"method": "pin", "code": "730519"}', timezone.now())
    connection.set_schema_to_public()
    assert "730519" not in caplog.text and "000001" not in caplog.text
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ('acme', 'public')"
        )
        tables = cursor.fetchall()
        for schema, table in tables:
            cursor.execute(f'SELECT count(*) FROM "{schema}"."{table}" t WHERE t::text LIKE %s', ["%730519%"])
            assert cursor.fetchone()[0] == 0, f"{schema}.{table} holds the PIN"
    assert "730519" in mailoutbox[0].body  # the one place it goes: the holder's email


def test_a_manual_key_use_the_lock_reports_is_in_the_access_log(lock, acme):
    topics.directory.clear()
    topics.handle(
        f"tenants/acme/locks/{lock.lock_id}/status",
        b'{"lock_status": "unlocked", "event": "manual_unlock"}',
        timezone.now(),
    )
    from django_tenants.utils import schema_context

    with schema_context("acme"):
        entry = AccessLog.objects.get()
        assert (entry.method, entry.action, entry.success, entry.source) == ("manual", "unlock", True, "lock")


def test_a_tenants_first_lock_brings_the_security_rule(lock):
    rule = AlertRule.objects.get(name="Lock security")
    assert rule.target_kind == "all_locks" and "lockout" in rule.conditions.get().event_kinds
    make_lock("second-door", "Second door")
    assert AlertRule.objects.filter(name="Lock security").count() == 1


def test_a_lock_heard_again_gets_the_state_syncs_it_missed_published_again(lock, acme):
    """The demo's code syncs went out before the simulated locks subscribed and expired unanswered
    (issue 14's demo): a lock heard for the first time, or back after being offline, gets its open
    code, settings, time and keypad syncs published again; never a late lock or unlock."""
    from django_tenants.utils import schema_context

    from portal.locks.code_views import sync

    topics.directory.clear()
    now = timezone.now()
    with schema_context("acme"):
        code_sync = sync(lock, [make_pin(lock)], "set", source="system")
        unlock = LockCommand.issue(lock, "unlock")
        LockCommand.objects.update(state="sent", sent_at=now)
    topics.handle(f"tenants/acme/locks/{lock.lock_id}/heartbeat", b'{"uptime": 3}', now)  # never heard before
    with schema_context("acme"):
        assert LockCommand.objects.get(pk=code_sync.pk).state == "pending"
        assert LockCommand.objects.get(pk=unlock.pk).state == "sent"
        assert [pk for pk, *_ in topics.outgoing(10)] == [code_sync.pk]
        topics.published([code_sync.pk])
    later = now + timedelta(seconds=5)
    topics.handle(f"tenants/acme/locks/{lock.lock_id}/status", b'{"battery": 90}', later)  # online meanwhile
    with schema_context("acme"):
        assert LockCommand.objects.get(pk=code_sync.pk).state == "sent"  # not again while it is online
        from telemetry.models import Device

        Device.objects.filter(pk=lock.device_id).update(last_seen=later - timedelta(hours=1))
    topics.handle(f"tenants/acme/locks/{lock.lock_id}/status", b'{"battery": 90}', later)  # back from offline
    with schema_context("acme"):
        assert LockCommand.objects.get(pk=code_sync.pk).state == "pending"
    connection.set_schema_to_public()


def test_the_hot_paths_sql_answers_what_the_orm_answers(lock, lisbon, settings):
    """portal/locks/hotpath.py writes the access check's statements once per process; what they
    read must be what the ORM reads: every field of the lock, its device and site, the live PIN,
    and the failure counts (up to their limits)."""
    from portal.locks import hotpath
    from portal.locks.codes import pin_digest
    from telemetry.models import hash_token

    key = lock.device.issue_token()
    lock.device.status = {"uptime": 7}
    lock.device.save()
    pin = make_pin(lock, schedule=[{"day": 0, "start": "10:00", "end": "14:00"}], kind="scheduled")
    now = timezone.now()
    BlockedAddress.objects.create(ip="203.0.113.5", failures=5, blocked_until=now + timedelta(hours=1))
    fast = hotpath.lock_by_key(hash_token(key), "203.0.113.5", now)
    orm = Lock.objects.select_related("device", "site").get(pk=lock.pk)
    for mine, theirs in ((fast, orm), (fast.device, orm.device), (fast.site, orm.site)):
        fields = [field.attname for field in type(theirs)._meta.concrete_fields]
        assert {f: getattr(mine, f) for f in fields} == {f: getattr(theirs, f) for f in fields}
    assert fast.address_blocked and not hotpath.lock_by_key(hash_token(key), "198.51.100.1", now).address_blocked
    assert hotpath.lock_by_key(hash_token(key), None, now).address_blocked is False
    assert hotpath.lock_by_key(hash_token("not a key"), None, now) is None
    digest, wrong = pin_digest(lock.pk, "482913"), pin_digest(lock.pk, "000000")
    found = hotpath.live_pins({lock.pk: fast}, [digest, wrong])
    assert list(found) == [(lock.pk, digest)]  # the wrong PIN's digest finds nothing
    found = found[(lock.pk, digest)]
    assert found.pk == pin.pk and found.schedule == pin.schedule and found.refusal(now, fast.zone) == pin.refusal(now)
    assert found.lock is fast
    settings.LOCK_LOCKOUT_FAILURES = settings.LOCK_SUSPICIOUS_FAILURES = 100  # no block while they pile up
    for n in range(7):
        access.check(lock, access.Attempt("pin", f"90000{n}", ip="198.51.100.9"), now)
    settings.LOCK_LOCKOUT_FAILURES, settings.LOCK_SUSPICIOUS_FAILURES = 5, 6
    since = now - timedelta(minutes=15)
    assert access.counted_failures(lock, since).count() == 7 == access.address_failures("198.51.100.9", since).count()
    assert access.failure_counts(lock, "198.51.100.9", since, since) == (5, 6)  # each up to its threshold
    assert access.failure_counts(lock, None, since, since) == (5, 0)
