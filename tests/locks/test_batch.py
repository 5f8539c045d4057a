"""access.check_batch (issue 14: the bridge settles the MQTT access requests that arrive together):
the same decisions, log rows and counts as one check after the other, one-use PINs used once within
and across batches, the lockout counted across a batch, and topics.handle_batch around it."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lock_builders import in_acme_committed, make_lock, make_pin, own_copies, race

from portal.locks import access, topics
from portal.locks.models import AccessLog, Lock, LockCommand, PinCode, QrCode
from telemetry.models import DeadLetter

AT = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)  # a Monday
LOG_FIELDS = ["lock_id", "at", "method", "action", "success", "reason", "pin_id", "qr_id", "holder", "source", "ip"]


@pytest.fixture
def codes(lock, lisbon):
    """Two locks and codes of every kind a decision depends on; the PINs by their clear value."""
    other = make_lock("side-door", "Side door", site=lisbon)
    make_pin(lock, "111111", label="one use", kind="one_time", max_uses=1)
    make_pin(lock, "222222", label="two uses", max_uses=2)
    make_pin(lock, "333333", label="always")
    make_pin(lock, "444444", label="expired", valid_until=AT - timedelta(days=1))
    make_pin(lock, "555555", label="not yet", valid_from=AT + timedelta(days=1))
    revoked = make_pin(lock, "666666", label="revoked")
    revoked.revoked_at, revoked.active = AT - timedelta(hours=1), False
    revoked.save()
    make_pin(lock, "777777", label="mondays 9-11", schedule=[{"day": 0, "start": "09:00", "end": "11:00"}])
    make_pin(other, "111111", label="other's one use", kind="one_time", max_uses=1)
    qr = QrCode.objects.create(lock=lock, label="courier", max_uses=1)
    return lock, other, str(qr.code)


CODES = ["111111", "222222", "333333", "444444", "555555", "666666", "777777", "999999", "12", "abcdef"]
attempts = st.lists(
    st.tuples(
        st.integers(0, 1),  # which lock
        st.one_of(
            st.tuples(st.just("pin"), st.sampled_from(CODES)),
            st.tuples(st.just("qr"), st.sampled_from(["QR", "not-a-uuid"])),
        ),
        st.sampled_from([None, None, "203.0.113.7", "198.51.100.2"]),
    ),
    min_size=1,
    max_size=14,
)


def outcome(locks, decisions):
    """What a run leaves: each decision, the log rows, the codes' counts, the locks' keypads."""
    logs = list(AccessLog.objects.filter(lock__in=locks).order_by("id").values_list(*LOG_FIELDS))
    counts = sorted(PinCode.objects.values_list("id", "uses", "last_used_at")) + sorted(
        QrCode.objects.values_list("id", "uses", "last_used_at")
    )
    keypads = sorted(Lock.objects.filter(pk__in=locks).values_list("id", "keypad_disabled_until"))
    answers = [(d.allowed, d.reason, d.as_json(), d.log.pk is not None) for d in decisions]
    return answers, logs, counts, keypads, LockCommand.objects.filter(kind="keypad").count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attempts)
def test_a_batch_decides_as_one_check_after_the_other(codes, django_settings_for_lockout, chosen):
    lock, other, qr = codes
    pks = [lock.pk, other.pk]

    def items():
        fresh = {pk: Lock.objects.select_related("device", "site").get(pk=pk) for pk in pks}
        return [
            (fresh[pks[which]], access.Attempt(method, qr if code == "QR" else code, ip=ip))
            for which, (method, code), ip in chosen
        ]

    with transaction.atomic():
        one_by_one = outcome(pks, [access.check(lock, attempt, AT) for lock, attempt in items()])
        transaction.set_rollback(True)
    with transaction.atomic():
        together = outcome(pks, access.check_batch(items(), AT))
        transaction.set_rollback(True)
    assert together == one_by_one


@pytest.fixture
def django_settings_for_lockout(settings):
    """Low thresholds, so that a short example reaches the lockout and the address block."""
    settings.LOCK_LOCKOUT_FAILURES, settings.LOCK_SUSPICIOUS_FAILURES = 3, 4
    return settings


def test_two_uses_of_a_one_time_pin_in_one_batch_give_one_allow_one_deny(lock):
    make_pin(lock, kind="one_time", max_uses=1)
    decisions = access.check_batch(
        [(lock, access.Attempt("pin", "482913")), (lock, access.Attempt("pin", "482913"))], AT
    )
    assert [(d.allowed, d.reason) for d in decisions] == [(True, "granted"), (False, "used_up")]
    assert decisions[0].as_json()["remaining_uses"] == 0
    assert PinCode.objects.get().uses == 1
    assert list(AccessLog.objects.order_by("id").values_list("reason", flat=True)) == ["granted", "used_up"]


def test_five_failures_in_one_batch_lock_the_keypad_for_the_rest_of_it(lock, django_capture_on_commit_callbacks):
    make_pin(lock)
    wrong = [(lock, access.Attempt("pin", f"00000{n}")) for n in range(6)]
    with django_capture_on_commit_callbacks(execute=True):
        decisions = access.check_batch([*wrong, (lock, access.Attempt("pin", "482913"))], timezone.now())
    assert [d.reason for d in decisions] == ["unknown_code"] * 5 + ["keypad_locked"] * 2
    assert Lock.objects.get(pk=lock.pk).keypad_locked()
    assert LockCommand.objects.filter(lock=lock, kind="keypad").count() == 1  # one lockout, once


def test_failures_before_the_batch_count_toward_its_lockout(lock):
    now = timezone.now()
    for n in range(3):
        access.check(lock, access.Attempt("pin", f"10000{n}"), now)
    decisions = access.check_batch([(lock, access.Attempt("pin", f"20000{n}")) for n in range(3)], now)
    assert [d.reason for d in decisions] == ["unknown_code", "unknown_code", "keypad_locked"]


def test_of_concurrent_batches_using_one_time_pins_each_pin_opens_once(race_lock):
    in_acme_committed(lambda: make_pin(race_lock, "482913", kind="one_time", max_uses=1))
    in_acme_committed(lambda: make_pin(race_lock, "519203", kind="one_time", max_uses=1))
    copies = own_copies(race_lock, 8)

    def batch():
        mine = next(copies)
        pins = ["482913", "519203", "482913", "519203"]
        return [d.reason for d in access.check_batch([(mine, access.Attempt("pin", p)) for p in pins], timezone.now())]

    outcomes = [reason for batch_reasons in race("acme", batch, 8) for reason in batch_reasons]
    assert outcomes.count("granted") == 2  # each PIN once, of 16 tries across 8 concurrent batches
    granted = in_acme_committed(lambda: list(AccessLog.objects.filter(lock_id=race_lock.pk, success=True)))
    assert sorted(log.pin_id for log in granted) == sorted(
        in_acme_committed(lambda: list(PinCode.objects.values_list("id", flat=True)))
    )


def test_handle_batch_answers_each_request_in_order_and_keeps_the_unreadable(lock, acme):
    make_pin(lock, kind="one_time", max_uses=1)
    other = make_lock("back-door", "Back door")
    make_pin(other, "271828")
    topics.directory.clear()
    base, now = f"tenants/acme/locks/{lock.lock_id}", timezone.now()
    messages = [
        (f"{base}/access", b'{"request_id": "a", "code": "482913"}'),
        (f"{base}/access", b'{"request_id": "b", "code": "482913"}'),
        ("tenants/acme/locks/back-door/access", b'{"request_id": "c", "code": "271828", "method": "pin"}'),
        ("tenants/acme/locks/ghost/access", b'{"request_id": "d", "code": "1"}'),
        (f"{base}/access", b'{"request_id": "e", "method": "fingerprint"}'),
        (f"{base}/access", b"{not json"),
        (f"{base}/status", b'{"battery": 77}'),
    ]
    replies = topics.handle_batch(messages, now)
    answers = [[json.loads(payload) | {"topic": topic} for topic, payload in reply] for reply in replies]
    assert [(a["request_id"], a["allowed"], a["reason"]) for (a,) in answers[:3]] == [
        ("a", True, "granted"),
        ("b", False, "used_up"),
        ("c", True, "granted"),
    ]
    assert answers[0][0]["topic"] == f"{base}/access/result"
    assert answers[3:] == [[], [], [], []]
    assert sorted(DeadLetter.objects.values_list("reason", flat=True)) == ["bad_json", "bad_method", "unknown_lock"]
    assert Lock.objects.get(pk=lock.pk).battery == 77
    assert Lock.objects.get(pk=lock.pk).device.last_seen == now
    assert set(AccessLog.objects.values_list("source", flat=True)) == {"mqtt"}
    connection.set_schema_to_public()


field_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=80), st.lists(st.integers(), max_size=3)
)
payloads = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(
        st.sampled_from(["request_id", "method", "code", "action", "timestamp", "x"]), field_values, max_size=6
    ).map(lambda d: json.dumps(d).encode()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["front-door", "ghost"]), payloads), min_size=1, max_size=6))
def test_no_lock_message_in_a_batch_makes_it_fail(lock, acme, messages):
    """Whatever locks send, each request gets its answer or becomes a dead letter; nothing raises."""
    with schema_context("acme"), transaction.atomic():  # each example from the same state
        make_pin(lock, kind="one_time", max_uses=1)
        topics.directory.clear()
        batch = [(f"tenants/acme/locks/{lock_id}/access", payload) for lock_id, payload in messages]
        replies = topics.handle_batch(batch, timezone.now())
        transaction.set_rollback(True)
    assert len(replies) == len(batch)
    for (topic, _), reply in zip(batch, replies, strict=True):
        for answer_topic, payload in reply:
            assert answer_topic == f"{topic}/result" and set(json.loads(payload)) >= {"allowed", "reason", "request_id"}
