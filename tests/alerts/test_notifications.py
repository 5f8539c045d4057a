"""Delivery that never lies: webhooks signed and retried, email through locmem, SMS skipped honestly,
grouping, quiet hours, silences, repeats, and deliveries a killed worker left behind."""

import hashlib
import hmac
import json
import threading
from datetime import time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from portal.alerts import delivery, notify
from portal.alerts.models import Alert, Channel, Delivery, DeliveryAttempt, Notification, Silence

SECRET = "webhook-secret-for-tests"


class Receiver:
    """A local HTTP server that answers the statuses it is given, in turn, and keeps every request."""

    def __init__(self, statuses):
        self.statuses, self.requests = list(statuses), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"headers": dict(self.headers), "body": body})
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/fieldwatch?x=1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    made = []

    def make(*statuses):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def channel(kind="webhook", **fields) -> Channel:
    defaults = {"name": f"{kind} channel", "kind": kind, "group_wait_seconds": 0}
    if kind == "webhook":
        defaults["webhook_secret"] = SECRET
    return Channel.objects.create(**(defaults | fields))


def fire(sensor, rule_for, send, value=12.0, **rule_fields):
    rule_for(target_id=sensor.pk, **rule_fields)
    send(sensor, value)
    return Alert.objects.get(rule__isnull=False)


def valid_signature(request) -> bool:
    headers = request["headers"]
    expected = hmac.new(
        SECRET.encode(), headers["X-Fieldwatch-Timestamp"].encode() + b"." + request["body"], hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(headers["X-Fieldwatch-Signature"], f"sha256={expected}")


def test_a_webhook_that_fails_twice_is_sent_on_the_third_attempt_with_a_valid_signature(
    sensor, rule_for, send, clock, receiver, django_capture_on_commit_callbacks
):
    hook = receiver(500, 503, 200)
    channel(webhook_url=hook.url)
    alert = fire(sensor, rule_for, send)
    sent = Delivery.objects.get()
    assert sent.status == Delivery.Status.RETRYING and sent.attempts == 1
    for _ in range(2):
        clock.move(seconds=delivery.backoff(sent.attempts) + 1)
        with django_capture_on_commit_callbacks(execute=True):
            delivery.sweep()
        sent.refresh_from_db()
    assert sent.status == Delivery.Status.SENT and sent.attempts == 3
    assert [a.status_code for a in sent.attempt_log.all()] == [500, 503, 200]
    assert [a.ok for a in sent.attempt_log.all()] == [False, False, True]
    assert len(hook.requests) == 3 and all(valid_signature(r) for r in hook.requests)
    keys = {r["headers"]["Idempotency-Key"] for r in hook.requests}
    assert keys == {str(sent.key)}, "every attempt carries the same idempotency key"
    body = json.loads(hook.requests[-1]["body"])
    assert body["alerts"][0]["id"] == alert.pk and body["alerts"][0]["event"] == "firing"
    assert body["tenant"] == "acme" and body["alerts"][0]["values"][0]["value"] == 12.0
    assert Notification.objects.get().status == Notification.Status.SENT


def test_a_webhook_gives_up_after_the_attempt_limit(
    sensor, rule_for, send, clock, receiver, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFY_MAX_ATTEMPTS = 2
    hook = receiver(500, 500, 500)
    channel(webhook_url=hook.url)
    fire(sensor, rule_for, send)
    clock.move(seconds=3600)
    with django_capture_on_commit_callbacks(execute=True):
        delivery.sweep()
    sent = Delivery.objects.get()
    assert sent.status == Delivery.Status.FAILED and sent.attempts == 2 and "HTTP 500" in sent.detail
    assert Notification.objects.get().status == Notification.Status.FAILED


def test_webhooks_to_private_addresses_are_refused_without_the_setting(sensor, rule_for, send, receiver, settings):
    hook = receiver(200)
    settings.WEBHOOK_ALLOW_PRIVATE = False
    channel(webhook_url=hook.url)
    fire(sensor, rule_for, send)
    sent = Delivery.objects.get()
    assert sent.status == Delivery.Status.FAILED and "127.0.0.1" in sent.detail and "loopback" in sent.detail
    assert hook.requests == []


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "192.168.0.5", "169.254.169.254", "::1", "::ffff:10.0.0.1", "0.0.0.0"],  # noqa: S104 (addresses refused, not bound)
)
def test_the_ssrf_guard_refuses_internal_addresses(address):
    assert not delivery.allowed_address(address)


def test_the_ssrf_guard_allows_public_addresses():
    assert delivery.allowed_address("93.184.216.34") and delivery.allowed_address("2606:2800:220:1::1")


def test_email_goes_to_members_by_role_and_addresses(sensor, rule_for, send, people):
    channel("email", name="On call", email_roles="admin,owner", email_addresses="oncall@acme.example")
    fire(sensor, rule_for, send)
    (message,) = mail.outbox
    assert set(message.bcc) == {"acme_admin@example.com", "acme_owner@example.com", "oncall@acme.example"}
    assert "FIRING:1" in message.subject and "Supply too warm" in message.body
    assert Delivery.objects.get().status == Delivery.Status.SENT


def test_sms_and_whatsapp_are_skipped_honestly(sensor, rule_for, send):
    channel("sms", phone_numbers="+351900000000")
    channel("whatsapp", phone_numbers="+351900000001")
    fire(sensor, rule_for, send)
    assert set(Notification.objects.values_list("status", "detail")) == {("skipped", "skipped: no provider configured")}
    assert not Notification.objects.filter(status="sent").exists()


def test_alerts_firing_within_the_group_wait_go_out_as_one_message(
    sensor, rule_for, send, clock, django_capture_on_commit_callbacks
):
    from telemetry.models import Sensor

    other = Sensor.objects.create(device=sensor.device, key="return_temp", type="temperature")
    channel("email", email_addresses="oncall@acme.example", group_wait_seconds=60)
    rule_for(target_kind="tenant", sensor_type="temperature")
    send(sensor, 12.0)
    clock.move(seconds=20)
    send(other, 13.0)
    assert Alert.objects.count() == 2 and not mail.outbox
    clock.move(seconds=41)
    with django_capture_on_commit_callbacks(execute=True):
        delivery.sweep()
    (message,) = mail.outbox
    assert "FIRING:2" in message.subject
    assert Delivery.objects.count() == 1 and Notification.objects.filter(status="sent").count() == 2


def test_quiet_hours_hold_notifications_until_they_end(sensor, rule_for, send, clock, acme):
    # NOW is 12:30 UTC; acme's time zone is UTC in tests
    quiet = channel("email", email_addresses="oncall@acme.example", quiet_start=time(12, 0), quiet_end=time(14, 0))
    fire(sensor, rule_for, send)
    note = Notification.objects.get(channel=quiet)
    assert note.status == "pending" and note.due_at.hour == 14 and not mail.outbox


def test_critical_alerts_pass_quiet_hours_when_the_channel_allows(sensor, rule_for, send):
    channel("email", email_addresses="oncall@acme.example", quiet_start=time(12, 0), quiet_end=time(14, 0))
    fire(sensor, rule_for, send, severity="critical")
    assert len(mail.outbox) == 1


def test_a_silenced_alert_opens_and_shows_but_notifies_nobody(sensor, rule_for, send, clock):
    channel("email", email_addresses="oncall@acme.example")
    Silence.objects.create(
        subject_key=f"sensor:{sensor.pk}", ends_at=clock.now + timedelta(hours=2), reason="Chiller maintenance"
    )
    alert = fire(sensor, rule_for, send)
    assert alert.is_active and not mail.outbox
    note = Notification.objects.get()
    assert note.status == "skipped" and "Chiller maintenance" in note.detail


def test_a_silence_for_another_site_does_not_mute(sensor, rule_for, send, clock):
    from portal.facilities.models import Site

    channel("email", email_addresses="oncall@acme.example")
    Silence.objects.create(
        site=Site.objects.create(name="Elsewhere"), ends_at=clock.now + timedelta(hours=2), reason="x"
    )
    fire(sensor, rule_for, send)
    assert len(mail.outbox) == 1


def test_routing_by_severity_and_rule(sensor, rule_for, send):
    channel("email", name="criticals", email_addresses="a@acme.example", severities="critical")
    fire(sensor, rule_for, send, severity="medium")
    assert not mail.outbox and not Notification.objects.exists()


def test_resolution_is_notified_too(sensor, rule_for, send, clock):
    channel("email", email_addresses="oncall@acme.example")
    fire(sensor, rule_for, send)
    clock.move(minutes=1)
    send(sensor, 5.0)
    assert ["FIRING:1" in mail.outbox[0].subject, "RESOLVED:1" in mail.outbox[1].subject] == [True, True]


def test_open_alerts_repeat_after_the_interval_until_acknowledged(
    sensor, rule_for, send, clock, django_capture_on_commit_callbacks
):
    from portal.alerts import alerting

    channel("email", email_addresses="oncall@acme.example", repeat_interval_minutes=60)
    alert = fire(sensor, rule_for, send)
    clock.move(minutes=30)
    assert notify.repeat_due() == 0
    clock.move(minutes=31)
    with django_capture_on_commit_callbacks(execute=True):
        assert notify.repeat_due() == 1
    assert len(mail.outbox) == 2 and Notification.objects.filter(event="repeat").count() == 1
    alerting.acknowledge([alert.pk], None, "on it")
    clock.move(minutes=61)
    assert notify.repeat_due() == 0


def test_a_delivery_left_sending_by_a_killed_worker_is_sent_again(
    sensor, rule_for, send, clock, receiver, django_capture_on_commit_callbacks
):
    hook = receiver(200)
    made = channel(webhook_url=hook.url, group_wait_seconds=0)
    alert = fire(sensor, rule_for, send, severity="low", name="Low")
    Delivery.objects.all().delete()
    stuck = Delivery.objects.create(channel=made, status=Delivery.Status.SENDING, claimed_at=clock.now)
    Notification.objects.create(alert=alert, channel=made, event="firing", delivery=stuck, status="sending")
    clock.move(seconds=60)
    delivery.sweep()
    stuck.refresh_from_db()
    assert stuck.status == Delivery.Status.SENDING, "a delivery under way is left alone"
    clock.move(seconds=121)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.sweep()["stuck"] == 1
    stuck.refresh_from_db()
    assert stuck.status == Delivery.Status.SENT
    assert [a.error or a.status_code for a in stuck.attempt_log.all()] == [
        "interrupted: the worker stopped mid-delivery",
        200,
    ]
    assert hook.requests[-1]["headers"]["Idempotency-Key"] == str(stuck.key)


def test_send_test_reaches_the_channel(receiver, in_acme, django_capture_on_commit_callbacks):
    hook = receiver(200)
    made = channel(webhook_url=hook.url)
    with django_capture_on_commit_callbacks(execute=True):
        sent = delivery.send_test(made)
    sent.refresh_from_db()
    assert sent.status == "sent" and json.loads(hook.requests[0]["body"])["test"] is True


class KeepAliveReceiver(Receiver):
    """A receiver speaking HTTP/1.1, as real ones do: connections stay open between requests. It
    notes the client port of every request (one port: one connection) and can answer a long body."""

    def __init__(self, body=b""):
        self.requests, self.ports = [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                outer.requests.append(
                    {"headers": dict(self.headers), "body": self.rfile.read(int(self.headers["Content-Length"]))}
                )
                outer.ports.append(self.client_address[1])
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/fieldwatch"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def queued(made, count) -> list[int]:
    alert = Alert.objects.create(subject_key="sensor:1", severity="high", summary="hot", opened_at=made.created_at)
    ids = []
    for _ in range(count):
        pending = Delivery.objects.create(channel=made)
        Notification.objects.create(alert=alert, channel=made, event="firing", delivery=pending)
        ids.append(pending.pk)
    return ids


def test_deliveries_to_one_receiver_share_one_kept_alive_connection(in_acme, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    hook = KeepAliveReceiver()
    try:
        made = channel(webhook_url=hook.url)
        assert [delivery.deliver(pk) for pk in queued(made, 3)] == ["sent"] * 3
    finally:
        hook.close()
    assert len(hook.requests) == 3 and all(valid_signature(r) for r in hook.requests)
    assert len(set(hook.ports)) == 1, "one connection for the three deliveries"
    assert hook.requests[0]["headers"]["Host"] == f"127.0.0.1:{hook.server.server_port}"
    assert sorted(DeliveryAttempt.objects.values_list("status_code", flat=True)) == [200, 200, 200]


def test_a_receiver_answering_more_than_we_read_gets_a_fresh_connection_next_time(in_acme, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    hook = KeepAliveReceiver(body=b"x" * 200_000)  # more than the 64 KiB a delivery reads
    try:
        made = channel(webhook_url=hook.url)
        assert [delivery.deliver(pk) for pk in queued(made, 2)] == ["sent"] * 2
    finally:
        hook.close()
    assert len(set(hook.ports)) == 2, "the unread rest of a body is never taken for the next answer"


def test_a_skipped_delivery_records_no_attempt(sensor, rule_for, send):
    channel("sms", phone_numbers="+351900000000")
    fire(sensor, rule_for, send)
    sent = Delivery.objects.get()
    assert (sent.status, sent.attempts, sent.attempt_log.count()) == ("skipped", 0, 0)
