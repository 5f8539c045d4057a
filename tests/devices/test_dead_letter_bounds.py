"""Dead letters are bounded (issue 11 §3): what one request or message keeps, what one sender
may write per hour, how long they are kept; the page counts them by reason."""

import gzip
import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from api.bulk_helpers import make_key, post
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from telemetry.deadletters import MAX_PER_INPUT, purge_expired
from telemetry.formats import parse_senml
from telemetry.ingest import ingest
from telemetry.models import DeadLetter, TelemetrySettings


def letters(**filters):
    with schema_context("acme"):
        return list(DeadLetter.objects.filter(**filters))


def test_a_tiny_gzip_of_100001_zeros_writes_101_letters_and_counts_them_all(acme_client, db):
    body = gzip.compress(b"[" + b",".join([b"0"] * 100_001) + b"]")
    assert len(body) < 1000
    result = post(acme_client, body, make_key("acme")).json()
    assert result["rejected"] == 100_001 and result["reasons"] == {"item_not_an_object": 100_001}
    kept = letters()
    assert len(kept) == MAX_PER_INPUT + 1
    summary = [letter for letter in kept if letter.reason == "capped"]
    assert len(summary) == 1 and json.loads(summary[0].payload)["not_kept"] == 100_001 - MAX_PER_INPUT
    assert "item_not_an_object 99901" in summary[0].detail


def test_one_mqtt_message_keeps_at_most_its_cap_and_another_message_its_own(in_acme):
    now = timezone.now()

    def message(n):
        raw = json.dumps([{"bn": f"gw-{n}", "bt": now.timestamp()}] + [{"n": f"s{i}", "v": "x"} for i in range(300)])
        return parse_senml(json.loads(raw), raw=raw, topic=f"tenants/acme/t/{n}", now=now)

    result = ingest(message(1) + message(2), source="mqtt", auto_create=True, now=now)
    assert result.rejected == 600
    for n in (1, 2):
        topic = f"tenants/acme/t/{n}"
        assert DeadLetter.objects.filter(topic=topic).exclude(reason="capped").count() == MAX_PER_INPUT
        assert DeadLetter.objects.filter(topic=topic, reason="capped").count() == 1


SECRET = "webhook-secret-for-tests-0123456789abcdef"


def test_one_webhook_request_keeps_at_most_its_cap(db, settings):
    settings.INGESTION_SECRET = SECRET
    raw = json.dumps([{"device_id": "d", "sensor_id": None, "value": 1}] * 3000).encode()
    signature = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    response = Client(HTTP_HOST="acme.localhost").post(
        "/ingest/", raw, content_type="application/json", HTTP_X_DEVICE_TOKEN=signature
    )
    assert response.json()["rejected"] == 3000
    assert len(letters()) == MAX_PER_INPUT + 1


def test_a_key_may_write_only_so_many_letters_an_hour(acme_client, db, settings):
    settings.FIELDWATCH_DEAD_LETTER_RATE = "150/3600"
    key = make_key("acme")
    for _ in range(3):
        body = gzip.compress(json.dumps([0] * 120).encode())
        assert post(acme_client, body, key).json()["rejected"] == 120
    kept = [letter for letter in letters() if letter.reason != "capped"]
    assert len(kept) == 150  # 100 of the first upload, 50 of the second, none of the third
    # a summary for each of the first two; the third, whose key may write nothing, adds no row
    assert len(letters(reason="capped")) == 2


def test_a_device_may_write_only_so_many_letters_an_hour(db, settings):
    settings.FIELDWATCH_DEAD_LETTER_RATE = "5/3600"
    client = Client(HTTP_HOST="acme.localhost")
    for _ in range(8):
        client.post(
            "/api/handshake/", json.dumps({"mac": "EC:E3:34:46:2B:C0", "firmware": 5}), content_type="application/json"
        )
    assert len(letters(device_ref="EC:E3:34:46:2B:C0")) == 5


def test_letters_older_than_the_tenants_retention_are_purged(in_acme):
    now = timezone.now()
    DeadLetter.objects.bulk_create(
        [
            DeadLetter(source="http", payload="x", reason="r", received_at=now - timedelta(days=d))
            for d in (1, 29, 31, 90)
        ]
    )
    assert purge_expired(now) == 2
    TelemetrySettings.objects.update_or_create(
        pk=TelemetrySettings.current().pk, defaults={"dead_letter_retention_days": 7}
    )
    assert purge_expired(now) == 1
    assert DeadLetter.objects.count() == 1


def test_the_purge_runs_nightly_for_each_tenant():
    from portal.devices.tasks import purge_dead_letters

    assert purge_dead_letters.fan_out.name == "purge_dead_letters.fan_out"


def test_the_page_counts_letters_by_reason(as_acme):
    with schema_context("acme"):
        DeadLetter.objects.bulk_create(
            [DeadLetter(source="http", payload="x", reason="invalid_event") for _ in range(3)]
            + [DeadLetter(source="mqtt", payload="y", reason="unknown_sensor")]
        )
    response = as_acme("acme_admin").get("/dead-letters/")
    assert [(row["reason"], row["count"]) for row in response.context["by_reason"]] == [
        ("invalid_event", 3),
        ("unknown_sensor", 1),
    ]
    assert 'data-testid="reason-counts"' in response.content.decode()
    filtered = as_acme("acme_admin").get("/dead-letters/", {"source": "mqtt"})
    assert [(row["reason"], row["count"]) for row in filtered.context["by_reason"]] == [("unknown_sensor", 1)]


@pytest.mark.parametrize("days", ["0", "4000", "-1"])
def test_the_retention_setting_is_bounded(as_acme, days):
    other = {"online_window_seconds": 300, "access_log_retention_days": 90}
    response = as_acme("acme_admin").post(
        "/settings/telemetry/",
        {
            "raw_retention_days": 90,
            "future_window_seconds": 300,
            "auto_create_sensors": "on",
            "dead_letter_retention_days": days,
        }
        | other,
    )
    assert response.status_code == 400
    assert "dead_letter_retention_days" in response.context["form"].errors


def senml(device: str, bad: int, now) -> bytes:
    return json.dumps([{"bn": device, "bt": now.timestamp()}] + [{"n": f"s{i}", "v": "x"} for i in range(bad)]).encode()


def test_a_device_over_mqtt_may_write_only_so_many_letters_an_hour(in_acme, settings):
    """The bridge's path (facilities' topic handler, as bridge.service stores a batch): the
    rejections of a flooding device count against its allowance, another device keeps its own."""
    from portal.facilities import topics

    settings.FIELDWATCH_DEAD_LETTER_RATE = "150/3600"
    now = timezone.now()
    flood = "tenants/acme/sites/roof/assets/ahu-1/telemetry"
    for _ in range(3):  # three batches of one message each, 120 bad readings apiece
        result = topics.store([topics.decode(flood, senml("gw-flood", 120, now), now)], now)
        assert result.rejected == 120
    assert DeadLetter.objects.filter(topic=flood).exclude(reason="capped").count() == 150
    assert DeadLetter.objects.filter(topic=flood, reason="capped").count() == 2  # the third: no row at all
    # the same device's unreadable message counts against the same allowance: spent, so not kept
    unreadable = "tenants/acme/devices/gw-flood/sensors/s1"
    assert topics.store([topics.decode(unreadable, b"{not json", now)], now).rejected == 1
    assert not DeadLetter.objects.filter(topic=unreadable).exists()
    quiet = "tenants/acme/sites/roof/assets/ahu-2/telemetry"
    topics.store([topics.decode(quiet, senml("gw-quiet", 120, now), now)], now)
    assert DeadLetter.objects.filter(topic=quiet).exclude(reason="capped").count() == MAX_PER_INPUT
    assert DeadLetter.objects.filter(topic=quiet, reason="capped").count() == 1


def test_a_lock_over_mqtt_may_write_only_so_many_letters_an_hour(in_acme, settings):
    from portal.locks import topics

    settings.FIELDWATCH_DEAD_LETTER_RATE = "5/3600"
    for _ in range(8):
        assert topics.handle("tenants/acme/locks/NO-SUCH-LOCK/status", b"{}", timezone.now()) == []
    assert DeadLetter.objects.filter(device_ref="NO-SUCH-LOCK", reason="unknown_lock").count() == 5
