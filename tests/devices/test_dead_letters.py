from datetime import timedelta

from django.utils import timezone
from django_tenants.utils import schema_context
from helpers import unchanged

from portal.audit.models import AuditLog
from portal.facilities.topics import decode, store
from telemetry.models import DeadLetter, Reading, Sensor, TelemetrySettings


def set_maximum(value):
    sensor = Sensor.objects.get(key="t")
    sensor.max_value = value
    sensor.save()  # as a person's edit does: the ingest path's sensor cache forgets it


def reject_out_of_range():
    """A reading beyond the sensor's declared range, dead-lettered."""
    with schema_context("acme"):
        now = timezone.now()
        store([decode("tenants/acme/devices/probe/sensors/t", b'{"value": 10}', now)])
        set_maximum(50)
        store(
            [
                decode(
                    "tenants/acme/devices/probe/sensors/t",
                    f'{{"value": 80, "timestamp": "{(now - timedelta(minutes=1)).isoformat()}"}}'.encode(),
                    now,
                )
            ]
        )
        return DeadLetter.objects.get(reason="out_of_range")


def test_admins_see_dead_letters_with_filters_and_csv(as_acme):
    letter = reject_out_of_range()
    client = as_acme("acme_admin")
    page = client.get("/dead-letters/?reason=out_of_range")
    assert [row.pk for row in page.context["rows"]] == [letter.pk]
    body = b"".join(client.get("/dead-letters/?reason=out_of_range&export=csv").streaming_content).decode()
    assert body.splitlines()[0] == "received_at,source,reason,detail,topic,payload,replayed_at"
    assert len(body.strip().splitlines()) == 2 and "out_of_range" in body
    assert as_acme("acme_viewer").get("/dead-letters/").status_code == 403


def test_replay_after_a_fix_stores_the_reading(as_acme):
    letter = reject_out_of_range()
    with schema_context("acme"):
        set_maximum(100)  # the fix: the range was too narrow
    response = as_acme("acme_admin").post("/dead-letters/replay/", {"ids": [letter.pk]}, follow=True)
    assert b"1 readings written" in response.content
    with schema_context("acme"):
        letter.refresh_from_db()
        assert letter.replayed_at is not None
        assert Reading.objects.filter(value=80).count() == 1
        assert AuditLog.objects.filter(action="dead_letters.replayed").exists()


def test_replay_that_still_fails_makes_a_new_dead_letter(as_acme):
    letter = reject_out_of_range()
    as_acme("acme_admin").post("/dead-letters/replay/", {"ids": [letter.pk]})
    with schema_context("acme"):
        assert DeadLetter.objects.filter(reason="out_of_range").count() == 2
        assert not Reading.objects.filter(value=80).exists()


def test_replay_ignores_other_tenants_and_bad_ids(as_acme):
    with schema_context("globex"):
        foreign = DeadLetter.objects.create(
            source="mqtt", topic="tenants/globex/devices/d/sensors/s", payload="1", reason="x"
        )
    response = as_acme("acme_admin").post("/dead-letters/replay/", {"ids": [str(foreign.pk), "junk"]}, follow=True)
    assert b"Select dead letters" in response.content
    with schema_context("globex"):
        foreign.refresh_from_db()
        assert foreign.replayed_at is None


def test_a_letter_naming_another_tenant_is_not_replayed_into_this_one(in_acme):
    from portal.facilities.topics import replay

    letter = DeadLetter.objects.create(
        source="mqtt", topic="tenants/globex/devices/d/sensors/s", payload="5", reason="x"
    )
    from django.db import connection

    from portal.tenancy.models import Tenant

    connection.set_tenant(Tenant.objects.get(slug="acme"))
    result = replay([letter])
    assert result.written == 0 and DeadLetter.objects.filter(reason="wrong_tenant").count() == 1


def test_telemetry_settings_page(as_acme):
    client = as_acme("acme_admin")
    assert client.get("/settings/telemetry/").status_code == 200
    with unchanged():
        bad = client.post("/settings/telemetry/", {"raw_retention_days": 0, "future_window_seconds": 300})
    assert bad.status_code == 400 and b"between 1 day" in bad.content
    fields = {
        "raw_retention_days": 30,
        "future_window_seconds": 60,
        "auto_create_sensors": "on",
        "access_log_retention_days": 90,
        "dead_letter_retention_days": 14,
    }
    too_short = client.post("/settings/telemetry/", fields | {"online_window_seconds": 5})
    assert too_short.status_code == 400 and b"Between 30 seconds and a day" in too_short.content
    ok = client.post("/settings/telemetry/", fields | {"online_window_seconds": 600, "reprovision_by_mac": "on"})
    assert ok.status_code == 302
    with schema_context("acme"):
        assert TelemetrySettings.current().raw_retention_days == 30
        assert TelemetrySettings.current().dead_letter_retention_days == 14
        assert (
            TelemetrySettings.current().online_window_seconds == 600 and TelemetrySettings.current().reprovision_by_mac
        )
        assert AuditLog.objects.get(action="telemetry_settings.updated").changes["raw_retention_days"] == [90, 30]
    operator = as_acme("acme_operator")
    assert operator.get("/settings/telemetry/").status_code == 403
    with unchanged():
        assert operator.post("/settings/telemetry/", {"raw_retention_days": 5}).status_code == 403
