from datetime import timedelta

from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.devices.tasks import purge_raw_readings, roll_up_readings
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import DirtyHour, HourlyRollup, Reading, TelemetrySettings


def test_rollup_task_runs_in_the_tenant_it_is_given_wherever_it_is_started(db):
    now = timezone.now()
    with schema_context("acme"):
        ingest([ReadingIn("gw", "t", now - timedelta(minutes=m), float(m)) for m in range(1, 200)], source="internal")
    with schema_context("globex"):  # started from another tenant's schema, as a worker might be
        assert roll_up_readings("acme").get() > 0  # immediate mode in tests: runs now
        assert connection.schema_name == "globex"  # and the caller's schema is back afterwards
        assert not HourlyRollup.objects.exists()
    with schema_context("acme"):
        assert not DirtyHour.objects.exists()
        assert sum(HourlyRollup.objects.values_list("count", flat=True)) == 199


def test_retention_deletes_old_raw_readings_and_keeps_rollups(in_acme):
    now = timezone.now()
    ingest([ReadingIn("gw", "t", now - timedelta(days=d, minutes=5), 1.0) for d in range(0, 20)], source="internal")
    roll_up_readings("acme")
    rules = TelemetrySettings.current()
    rules.raw_retention_days = 10
    rules.save()
    deleted = purge_raw_readings("acme").get()
    assert deleted == 10  # days 10..19
    assert Reading.objects.count() == 10
    assert HourlyRollup.objects.count() == 20  # rollups are kept
    assert purge_raw_readings("acme").get() == 0  # idempotent


def test_fan_out_enqueues_one_run_per_active_tenant(db, acme):
    acme.is_active = False
    acme.save(update_fields=["is_active"])
    assert roll_up_readings.fan_out.call_local() == 1  # globex only
