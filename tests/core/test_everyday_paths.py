"""The small defects a new user met (issue 10, "Small"): each test failed before its fix."""

import re

import pytest
from django_tenants.utils import schema_context
from helpers import sign_in, sign_in_staff
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.core.templatetags.lists import readable_payload
from portal.facilities.models import Asset, DeviceBinding, Site
from telemetry.models import DeadLetter, Device

PAYLOAD = '{"device": "gw-1", "sensor": "t", "value": 90, "unit": "\\u00b0C"}'


def letter(**fields) -> DeadLetter:
    with schema_context("acme"):
        return DeadLetter.objects.create(
            **{"source": "internal", "payload": PAYLOAD, "reason": "out_of_range", "topic": ""} | fields
        )


@pytest.mark.parametrize(
    "raw, shown",
    [
        (PAYLOAD, '{"device": "gw-1", "sensor": "t", "value": 90, "unit": "°C"}'),
        ('{"a": "\\\\u00b0"}', '{"a": "\\\\u00b0"}'),  # an escaped backslash, then the letters u00b0
        ('{"a": "\\u0000\\u001f"}', '{"a": "\\u0000\\u001f"}'),  # control characters stay escaped
        ('{"a": "\\ud83d"}', '{"a": "\\ud83d"}'),  # a lone surrogate stays escaped
        ('{"v": 1.50, "w":2}', '{"v": 1.50, "w":2}'),  # numbers and spacing as they came
        ("not json \\u00b0", "not json °"),
        ("", ""),
    ],
)
def test_payloads_read_as_characters_not_escapes(raw, shown):
    assert readable_payload(raw) == shown


def test_dead_letter_payloads_show_degrees_in_a_details_element(as_acme):
    letter()
    html = as_acme("acme_operator").get("/dead-letters/").content.decode()
    assert "°C" in html and "\\u00b0C" not in html
    assert re.search(r'<td class="small fw-payload">\s*<details><summary', html)


def test_replay_selected_shows_only_when_a_letter_can_be_selected(as_acme):
    letter(source="http")
    client = as_acme("acme_operator")
    html = client.get("/dead-letters/").content.decode()
    assert 'data-testid="replay"' not in html and 'name="ids"' not in html
    assert 'data-testid="nothing-to-replay"' in html
    letter(source="mqtt", topic="tenants/acme/devices/gw-1/sensors/t")
    html = client.get("/dead-letters/").content.decode()
    assert 'data-testid="replay"' in html and html.count('name="ids"') == 1


def test_the_filter_bar_keeps_its_buttons_and_csv_on_one_line(as_acme):
    html = as_acme("acme_admin").get("/assets/").content.decode()
    group = re.search(r'<div class="d-flex flex-nowrap gap-2">(.*?)</div>', html, re.S).group(1)
    assert "Filter" in group and "Reset" in group and 'data-testid="csv-link"' in group
    assert "{#" not in html  # a comment Django printed as text
    assert 'class="row g-2 align-items-start mb-3"' in html  # an error under one field moves no other


def test_a_bad_from_on_the_audit_page_is_an_error_shown_on_the_page(as_acme):
    client = as_acme("acme_admin")
    response = client.get("/audit/", {"from": "yesterday"})
    assert response.status_code == 200
    assert "Enter a valid date" in response.content.decode()
    assert client.get("/audit/", {"from": "2000-01-01", "to": "2099-12-31"}).context["rows"]
    assert not client.get("/audit/", {"from": "2099-01-01"}).context["rows"]


def test_dead_letters_take_from_and_to_as_the_audit_page_does(as_acme):
    letter()
    client = as_acme("acme_operator")
    assert "Enter a valid date" in client.get("/dead-letters/", {"to": "31/12/2026"}).content.decode()
    assert not client.get("/dead-letters/", {"from": "2099-01-01"}).context["rows"]


def test_one_organisation_gets_its_name_and_no_switcher(as_acme, acme_client, people):
    html = as_acme("acme_viewer").get("/").content.decode()
    assert 'data-testid="tenant-name"' in html and 'data-testid="tenant-switcher"' not in html
    two = sign_in(acme_client, people["acme_owner"], "acme").get("/").content.decode()
    assert 'data-testid="tenant-switcher"' in two and "Globex" in two


def test_the_console_slug_help_names_the_host_and_agrees_with_its_errors(public_client, people):
    sign_in_staff(public_client, people["staff"])  # the console asks staff for a second factor
    form = public_client.get("/ops/tenants/new/").content.decode()
    assert "acme.localhost" in form and "hyphens" in form
    response = public_client.post("/ops/tenants/new/", {"name": "Under Score", "slug": "under_score"})
    assert response.status_code in (200, 400)
    assert "no underscores" in response.content.decode()
    response = public_client.post("/ops/tenants/new/", {"name": "Dash", "slug": "dash-"})
    assert "cannot end with a hyphen" in response.content.decode()


def test_install_device_says_when_every_device_is_installed(as_acme):
    with schema_context("acme"):
        asset = Asset.objects.create(site=Site.objects.create(name="Plant"), tag="CH-1")
        DeviceBinding.objects.create(asset=asset, device=Device.objects.create(device_id="gw-1"))
    html = as_acme("acme_operator").get(f"/assets/{asset.pk}/devices/new/").content.decode()
    assert "Every device is installed on an asset already" in html and "<select" not in html
    with schema_context("acme"):
        Device.objects.create(device_id="gw-2")
    html = as_acme("acme_operator").get(f"/assets/{asset.pk}/devices/new/").content.decode()
    assert "<select" in html and "gw-2" in html


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(["/audit/", "/dead-letters/", "/devices/", "/assets/"]),
    params=st.dictionaries(
        st.sampled_from(["from", "to", "q", "page", "sort", "reason", "source", "replayed", "export"]),
        st.text(max_size=30)
        | st.sampled_from(["2026-02-30", "0000-01-01", "9999-12-31", "-1", "99999999999999999999"]),
        max_size=5,
    ),
)
def test_list_filters_and_page_jumps_never_500(as_acme, in_acme, path, params):
    response = as_acme("acme_admin").get(path, params)
    assert response.status_code < 500
