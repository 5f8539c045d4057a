"""The organisation settings page: admins set its name and time zone; pages then show times in it."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.audit.models import AuditLog
from portal.tenancy.models import Tenant
from telemetry.ingest import ReadingIn, ingest
from telemetry.models import Device

URL = "/settings/organisation/"


def test_an_admin_sets_the_time_zone_and_pages_follow_it(as_acme, acme):
    with schema_context("acme"):
        ingest([ReadingIn("gw-1", "t", timezone.now() - timedelta(minutes=1), 1.0)], source="mqtt")
        device = Device.objects.get()
    client = as_acme("acme_admin")
    response = client.post(URL, {"name": "Acme Cooling", "time_zone": "Asia/Kolkata"})
    assert response.status_code == 302
    acme.refresh_from_db()
    assert (acme.name, acme.time_zone) == ("Acme Cooling", "Asia/Kolkata")
    with schema_context("acme"):
        entry = AuditLog.objects.get(action="organisation.updated")
        assert entry.changes["time_zone"] == ["UTC", "Asia/Kolkata"]
    shown = timezone.localtime(device.last_seen, acme.zone).strftime("%Y-%m-%d %H:%M:%S")
    assert shown in client.get(f"/devices/{device.pk}/").content.decode()
    assert "Times in Asia/Kolkata" in client.get("/explorer/").content.decode()


@pytest.mark.parametrize("zone", ["Mars/Olympus", "utc+2", "", "x" * 65])
def test_a_time_zone_that_is_not_a_zone_is_a_form_error(as_acme, acme, zone):
    response = as_acme("acme_admin").post(URL, {"name": "Acme", "time_zone": zone})
    assert response.status_code == 400
    assert Tenant.objects.get(pk=acme.pk).time_zone == "UTC"


def test_the_admin_menu_links_to_it(as_acme):
    assert URL in as_acme("acme_admin").get("/").content.decode()
    assert URL not in as_acme("acme_operator").get("/").content.decode()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=st.dictionaries(st.sampled_from(["name", "time_zone", "slug", "is_active"]), st.text(max_size=80), max_size=4)
)
def test_the_form_never_500s(as_acme, acme, data):
    assert as_acme("acme_admin").post(URL, data).status_code < 500
    assert Tenant.objects.get(pk=acme.pk).slug == "acme" and Tenant.objects.get(pk=acme.pk).is_active
