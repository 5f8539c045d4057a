"""One CSV format on every export: true/false, floats as stored (no binary noise), ISO 8601 times
with the tenant's offset, every column filled (the asset history's time column was empty)."""

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.core.lists import format_cell
from portal.facilities.models import Asset, DeviceBinding, Site
from portal.tenancy.models import Tenant
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import Device


def csv_of(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.parametrize(
    "value, text",
    [
        (True, "true"),
        (False, "false"),
        (None, ""),
        (0.1 + 0.2, "0.3"),
        (20.0, "20"),
        (-3.25, "-3.25"),
        (1 / 3, "0.333333333333333"),
        (1e-7, "1e-07"),
        (7, "7"),
        ("CHILLER-001", "CHILLER-001"),
    ],
)
def test_cells_have_one_format(value, text):
    assert format_cell(value) == text


def test_times_carry_the_offset_of_the_zone():
    moment = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert format_cell(moment, ZoneInfo("Europe/Lisbon")) == "2026-07-01T13:00:00+01:00"
    assert format_cell(moment, ZoneInfo("UTC")) == "2026-07-01T12:00:00+00:00"


@pytest.fixture
def kolkata(acme):
    Tenant.objects.filter(pk=acme.pk).update(time_zone="Asia/Kolkata")  # rolled back with the test


@pytest.fixture
def asset_with_history(db):
    with schema_context("acme"):
        site = Site.objects.create(name="Plant")
        asset = Asset.objects.create(site=site, tag="CHILLER-001")
        now = timezone.now()
        ingest(
            # every 7 minutes up to 1 minute ago: within the 5-minute online window
            [ReadingIn("gw", "t", now - timedelta(minutes=7 * i + 1), 0.1 * (i % 4)) for i in range(0, 60)],
            source="internal",
        )
        ingest([ReadingIn("gw", "t", now - timedelta(minutes=7 * i + 2), 0.2) for i in range(1, 60)], source="internal")
        DeviceBinding.objects.create(asset=asset, device=Device.objects.get(device_id="gw"))
        return asset


@pytest.mark.parametrize("bucket", ["raw", "5m", "1h", "1d"])
def test_asset_history_csv_has_a_time_on_every_row(as_acme, asset_with_history, kolkata, bucket):
    response = as_acme("acme_viewer").get(f"/assets/{asset_with_history.pk}/", {"bucket": bucket, "export": "csv"})
    rows = csv_of(response)
    assert rows
    for row in rows:
        moment = datetime.fromisoformat(row["time"])
        assert moment.utcoffset() == timedelta(hours=5, minutes=30)
        assert row["device"] == "gw" and row["sensor"] == "t"
        assert "0000000" not in row["avg"] + row["min"] + row["max"]  # 0.1 + 0.2 is 0.3 here too


def test_list_csv_booleans_and_times_in_the_tenant_zone(as_acme, asset_with_history, kolkata):
    (device,) = csv_of(as_acme("acme_viewer").get("/devices/", {"export": "csv"}))
    assert device["online"] == "true" and device["registered"] == "false"
    assert device["last_seen"].endswith("+05:30")
    (asset,) = csv_of(as_acme("acme_viewer").get("/assets/", {"export": "csv"}))
    assert asset["online"] == "true"
