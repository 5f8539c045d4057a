"""Seed 003's JSON API on its paths: the same answers as the pages (one query layer), its device
lists, registration, events, statistics, CSV and flush; roles as on the pages."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context
from helpers import sign_in
from outlets.usage_builders import bound, counter_device, event, status

from portal.api.models import ApiKey
from portal.audit.models import AuditLog
from portal.outlets.models import Machine
from portal.outlets.usage import roll_up_usage
from telemetry.models import DeviceEvent


@pytest.fixture
def fleet(db):
    with schema_context("acme"):
        machine, device = bound("Riverside", "A", at=timezone.now() - timedelta(days=40))
        now = timezone.now()
        for n in range(12):
            event(device, now - timedelta(hours=5 * n, minutes=3), ["BASIC", "STANDARD", "PREMIUM"][n % 3], counter=n)
        status(device, now - timedelta(minutes=1))
        spare = counter_device("spare-01")
        event(spare, now - timedelta(hours=2))
        roll_up_usage()
        keys = {role: ApiKey.issue(role, role=role)[1] for role in ("viewer", "operator", "admin")}
    return {"machine": machine, "device": device, "spare": spare, "keys": keys}


def get(fleet, path, role="viewer", **params):
    response = Client(HTTP_HOST="acme.localhost").get(path, params, HTTP_X_API_KEY=fleet["keys"][role])
    assert response.status_code == 200, response.content
    return response


def post(fleet, path, body, role="viewer", client=None):
    client = client or Client(HTTP_HOST="acme.localhost")
    headers = {"HTTP_X_API_KEY": fleet["keys"][role]} if role else {}
    return client.post(path, json.dumps(body), content_type="application/json", **headers)


def test_stats_equal_the_usage_page(as_acme, fleet):
    params = {"granularity": "hour", "days": 3, "compare": "true", "ma": 3, "machine_id": fleet["machine"].pk}
    api = get(fleet, "/api/test/stats/", **params).json()
    page = as_acme("acme_viewer").get(
        "/usage/", {"granularity": "hour", "days": 3, "compare": "on", "ma": 3, "machine": fleet["machine"].pk}
    )
    answer = page.context["answer"]
    assert api["labels"] == answer.labels and api["series"] == answer.current.values
    assert api["previous"]["series"] == answer.previous.values and api["deltas"] == answer.deltas
    assert api["totals"]["TOTAL"] == 12 - sum(1 for n in range(12) if 5 * n * 60 + 3 > 3 * 24 * 60 + 60)


def test_the_stats_csv_equals_the_pages_csv(as_acme, fleet):
    api = get(fleet, "/api/test/stats-export.csv", days=10, cumulative="true").content.decode()
    page = as_acme("acme_viewer").get("/usage/", {"days": 10, "cumulative": "on", "export": "csv"}).content.decode()
    assert api == page and list(csv.reader(io.StringIO(api)))[0][0] == "bucket"


def test_stats_options_narrow_by_outlet(fleet):
    options = get(fleet, "/api/test/stats-options/", outlet_id=fleet["machine"].outlet_id).json()
    assert [m["name"] for m in options["machines"]] == ["A"]
    assert [d["device_id"] for d in options["devices"]] == [fleet["device"].device_id]


def test_bad_stats_ranges_are_400_with_a_message(fleet):
    client = Client(HTTP_HOST="acme.localhost")
    response = client.get(
        "/api/test/stats/", {"granularity": "minute", "days": 30}, HTTP_X_API_KEY=fleet["keys"]["viewer"]
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_range"
    response = client.get("/api/test/stats/", {"granularity": "week"}, HTTP_X_API_KEY=fleet["keys"]["viewer"])
    assert response.status_code == 400 and "granularity" in response.json()["error"]["fields"]


def test_events_filter_by_device_and_leave_status_out(fleet):
    rows = get(fleet, "/api/events/", device_id=fleet["device"].device_id).json()
    assert len(rows) == 13 and rows[0]["event_type"] == "status"  # newest first
    without = get(fleet, "/api/events/", device_id=fleet["device"].device_id, exclude_status="true").json()
    assert len(without) == 12 and all(row["treatment"] for row in without)
    assert without[0]["machine"] == "A" and without[0]["outlet"] == "Riverside"


def test_events_analytics_and_export(fleet):
    analytics = get(fleet, "/api/events/analytics/", device_id=fleet["device"].device_id, days=7).json()
    assert analytics["total"] == 12 and sum(analytics["by_treatment"].values()) == 12
    exported = get(fleet, "/api/export/", device_id=fleet["device"].device_id).getvalue().decode()
    assert len(exported.strip().splitlines()) == 1 + 13


def test_device_lists_and_summary(fleet):
    with schema_context("acme"):
        from telemetry.models import Device

        Device.objects.filter(pk=fleet["device"].pk).update(
            last_seen=timezone.now(), status={"current_count_basic": 4, "mode": "status"}
        )
    online = get(fleet, "/api/devices/online/").json()
    assert [d["device_id"] for d in online] == [fleet["device"].device_id]
    every = {d["device_id"]: d for d in get(fleet, "/api/devices/all/").json()}
    assert set(every) == {fleet["device"].device_id, "spare-01"} and every["spare-01"]["machine"] is None
    data = get(fleet, "/api/devices-data/").json()
    assert data["counts"] == {"total": 2, "online": 1, "unregistered": 1, "offline": 1}
    summary = get(fleet, "/api/telemetry/summary/", device_id=fleet["device"].device_id).json()
    assert summary["counts"]["basic"] == 4 and summary["mode"] == "status"
    latest = get(fleet, "/api/telemetry/latest/", device_id=fleet["device"].device_id).json()
    assert latest["event_type"] == "status"


def test_the_device_lists_take_a_session_they_are_not_on_the_lean_path(people, fleet):
    client = sign_in(Client(HTTP_HOST="acme.localhost"), people["acme_viewer"], "acme")
    assert client.get("/api/devices/online/").status_code == 200
    assert client.get("/api/devices/all/").status_code == 200


def test_an_operator_registers_a_device_as_a_machine(fleet):
    assert [d["device_id"] for d in get(fleet, "/api/machines/unregistered/").json()] == ["spare-01"]
    body = {"device_id": "spare-01", "outlet_id": fleet["machine"].outlet_id, "name": "Bay 2"}
    assert post(fleet, "/api/machines/register/", body, role="viewer").status_code == 403
    response = post(fleet, "/api/machines/register/", body, role="operator")
    assert response.status_code == 201 and response.json()["device_id"] == "spare-01"
    assert get(fleet, "/api/machines/unregistered/").json() == []
    machines = get(fleet, "/api/machines/", device_id="spare-01").json()
    assert [m["name"] for m in machines] == ["Bay 2"]
    with schema_context("acme"):
        assert AuditLog.objects.filter(action="machine.device_bound").count() == 1
        assert Machine.objects.get(name="Bay 2").binding.device.device_id == "spare-01"


def test_flush_is_for_owners_and_names_its_count_first(people, fleet):
    body = {"device_id": fleet["device"].device_id}
    assert post(fleet, "/api/flush/", body, role="admin").status_code == 403  # a key is never an owner
    client = sign_in(Client(HTTP_HOST="acme.localhost"), people["acme_owner"], "acme")
    first = post(fleet, "/api/flush/", body, role=None, client=client)
    assert first.status_code == 409 and first.json()["error"]["count"] == 13
    done = post(fleet, "/api/flush/", body | {"confirm": 13}, role=None, client=client)
    assert done.status_code == 200 and done.json()["deleted"] == 13
    with schema_context("acme"):
        assert not DeviceEvent.objects.filter(device=fleet["device"]).exists()
        assert AuditLog.objects.get(action="events.flushed").actor_email == "acme_owner@example.com"


def test_outlets_and_machines_answer_as_their_pages(as_acme, fleet):
    api = get(fleet, "/api/outlets/").json()
    page = as_acme("acme_viewer").get("/outlets/").context["rows"]
    assert [o["name"] for o in api] == [o.name for o in page] and api[0]["machines_on_record"] == 1
    api_machines = get(fleet, "/api/machines/", outlet_id=fleet["machine"].outlet_id).json()
    page_machines = as_acme("acme_viewer").get("/machines/", {"outlet_id": fleet["machine"].outlet_id}).context["rows"]
    assert [m["id"] for m in api_machines] == [m.pk for m in page_machines]


def test_an_outlet_update_is_audited_as_text_like_every_api(fleet):
    """One apply_changes() (portal.api.toolkit) for every API's updates: the audit trail holds
    {field: [old, new]} as text, here as for sites, assets, devices and machines."""
    outlet = fleet["machine"].outlet
    client = Client(HTTP_HOST="acme.localhost")
    body = {"name": outlet.name, "address": "1 Quay", "contact_person": "", "is_active": True, "total_sva": 4}
    response = client.put(
        f"/api/outlets/{outlet.pk}/",
        json.dumps(body),
        content_type="application/json",
        HTTP_X_API_KEY=fleet["keys"]["admin"],
    )
    assert response.status_code == 200, response.content
    with schema_context("acme"):
        details = AuditLog.objects.get(action="outlet.updated").changes
    assert {k: v for k, v in details.items() if k != "api_key"} == {
        "address": ["", "1 Quay"],
        "total_sva": ["None", "4"],
    }


def test_stats_and_analytics_offer_the_counter_increase_as_the_page_does(as_acme, fleet):
    """The rollups' counter delta, not only event counts: measure=counter on the API and the page."""
    # four local days start at least 72 h back, so every event of the fleet (the oldest is 55 h old)
    # is inside whatever the time of day: three would start 48-72 h back and drop it before 07:03
    api = get(fleet, "/api/test/stats/", granularity="day", days=4, measure="counter").json()
    page = as_acme("acme_viewer").get("/usage/", {"granularity": "day", "days": 4, "measure": "counter"})
    answer = page.context["answer"]
    assert api["measure"] == "counter" and api["series"] == answer.current.values
    # the fleet's counters go down in time (11 is the oldest): each later one is a reset, counted from 0
    assert (
        api["totals"]
        == answer.current.totals
        == {"BASIC": 6 + 3, "STANDARD": 7 + 4 + 1, "PREMIUM": 8 + 5 + 2, "TOTAL": 36}
    )
    # the machine's twelve events and the spare device's one (no counter, so no increase)
    assert api["totals_by_measure"]["events"]["TOTAL"] == 12 + 1
    assert "Counter increase" in page.content.decode()
    analytics = get(fleet, "/api/events/analytics/", days=4).json()
    assert analytics["counter_total"] == api["totals"]["TOTAL"]
    assert analytics["counter_by_treatment"] == {k: v for k, v in api["totals"].items() if k != "TOTAL"}
    refused = Client(HTTP_HOST="acme.localhost").get(
        "/api/test/stats/", {"measure": "litres"}, HTTP_X_API_KEY=fleet["keys"]["viewer"]
    )
    assert refused.status_code in (400, 422) and "error" in refused.json()
