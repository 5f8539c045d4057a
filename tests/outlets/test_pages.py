"""The outlet pages as people use them: lists, details, registering a device, usage statistics
(its CSV is its table), flushing events; roles and isolation."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from fuzzing import hostile_text, query_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from outlets.usage_builders import bound, counter_device, event

from portal.audit.models import AuditLog
from portal.outlets.models import Machine, MachineDevice, Outlet
from portal.outlets.usage import roll_up_usage
from telemetry.models import DeviceEvent


@pytest.fixture
def fleet(db):
    """acme: Riverside with machine A (device bound, events today and last week), an unregistered device."""
    with schema_context("acme"):
        machine, device = bound("Riverside", "A", at=timezone.now() - timedelta(days=30))
        now = timezone.now()
        for n in range(5):
            event(device, now - timedelta(minutes=5 + n), "BASIC", counter=n)
        event(device, now - timedelta(days=8), "PREMIUM", counter=9)
        spare = counter_device("spare-01")
        event(spare, now - timedelta(hours=1))
        roll_up_usage()
        return {"machine": machine, "device": device, "spare": spare, "outlet": machine.outlet}


PAGES = ["/outlets/", "/machines/", "/counters/", "/counters/?status=unregistered", "/usage/events/", "/usage/"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_shows_for_a_viewer(as_acme, fleet, path):
    response = as_acme("acme_viewer").get(path)
    assert response.status_code == 200, path


def test_the_outlet_page_shows_machines_usage_and_the_owners_count(as_acme, fleet):
    with schema_context("acme"):
        Outlet.objects.filter(pk=fleet["outlet"].pk).update(number_of_machines=3)
    html = as_acme("acme_viewer").get(f"/outlets/{fleet['outlet'].pk}/").content.decode()
    assert 'data-testid="usage-today">5<' in html  # today's five, not last week's
    assert "The owner reports 3" in html and 'data-testid="machines-on-record">1' in html
    client = as_acme("acme_viewer")
    url = f"/outlets/{fleet['outlet'].pk}/live/"
    with schema_context("acme"):
        from telemetry.models import Device

        Device.objects.filter(pk=fleet["device"].pk).update(last_seen=timezone.now())
    earlier = str((timezone.now() - timedelta(minutes=1)).timestamp())
    live = client.get(url, {"since": earlier})
    assert live.status_code == 200 and "outlet-live" in live.content.decode()
    cursor = live.content.decode().split("since=")[1].split('"')[0].split("&")[0]
    assert client.get(url, {"since": cursor}).status_code == 204  # nothing new since
    assert client.get(url, {"since": "nonsense"}).status_code == 400


def test_the_machine_page_shows_its_history_and_events(as_acme, fleet):
    response = as_acme("acme_viewer").get(f"/machines/{fleet['machine'].pk}/")
    assert response.status_code == 200
    assert len(response.context["events"]) == 6 and len(response.context["bindings"]) == 1


def test_an_operator_registers_an_unregistered_device_as_a_new_machine(as_acme, fleet):
    client = as_acme("acme_operator")
    response = client.post(
        f"/counters/{fleet['spare'].pk}/register/", {"outlet": fleet["outlet"].pk, "name": "Spare bay"}
    )
    assert response.status_code == 302
    with schema_context("acme"):
        machine = Machine.objects.get(name="Spare bay")
        assert machine.binding.device == fleet["spare"]
        assert AuditLog.objects.filter(action="machine.device_bound", object_id=str(machine.pk)).exists()
        fleet["spare"].refresh_from_db()
        assert fleet["spare"].assigned
    unregistered = client.get("/counters/", {"status": "unregistered"}).context["rows"]
    assert [d.device_id for d in unregistered] == []


def test_binding_to_an_existing_machine_moves_the_device_and_keeps_history(as_acme, fleet):
    as_acme("acme_operator").post(f"/counters/{fleet['spare'].pk}/register/", {"machine": fleet["machine"].pk})
    with schema_context("acme"):
        bindings = MachineDevice.objects.filter(machine=fleet["machine"]).order_by("assigned_date")
        assert [(b.device.device_id, b.is_active) for b in bindings] == [
            (fleet["device"].device_id, False),
            ("spare-01", True),
        ]


def test_viewers_cannot_bind_unbind_or_flush(as_acme, fleet):
    client = as_acme("acme_viewer")
    assert client.post(f"/counters/{fleet['spare'].pk}/register/", {"machine": fleet["machine"].pk}).status_code == 403
    with schema_context("acme"):
        binding = MachineDevice.objects.get(is_active=True, machine=fleet["machine"])
    assert client.post(f"/machines/bindings/{binding.pk}/end/").status_code == 403
    assert client.get("/usage/flush/").status_code == 403
    assert as_acme("acme_admin").get("/usage/flush/").status_code == 403  # owners only


def test_an_owner_flushes_after_seeing_the_count(as_acme, fleet):
    client = as_acme("acme_owner")
    form = {"device": fleet["device"].pk}
    preview = client.post("/usage/flush/", form)
    assert preview.status_code == 200 and preview.context["count"] == 6
    assert "This deletes <strong>6</strong> events" in preview.content.decode()
    stale = client.post("/usage/flush/", form | {"confirm": 5})  # not the count shown: nothing goes
    assert stale.context["count"] == 6
    with schema_context("acme"):
        assert DeviceEvent.objects.filter(device=fleet["device"]).count() == 6
    assert client.post("/usage/flush/", form | {"confirm": 6}).status_code == 302
    with schema_context("acme"):
        assert not DeviceEvent.objects.filter(device=fleet["device"]).exists()
        entry = AuditLog.objects.get(action="events.flushed")
        assert entry.changes["deleted"] == 6 and entry.actor_email == "acme_owner@example.com"
        roll_up_usage()
    answer = client.get("/usage/", {"machine": fleet["machine"].pk, "days": 30}).context["answer"]
    assert answer.current.totals["TOTAL"] == 0


def test_the_usage_csv_is_the_table(as_acme, fleet):
    client = as_acme("acme_viewer")
    query = {"granularity": "day", "days": 10, "compare": "on", "cumulative": "on"}
    page = client.get("/usage/", query)
    rows = page.context["rows"]
    exported = client.get("/usage/", query | {"export": "csv"})
    assert exported["Content-Type"].startswith("text/csv")
    parsed = list(csv.reader(io.StringIO(exported.content.decode())))
    assert parsed == [["" if cell is None else str(cell) for cell in row] for row in rows]
    assert parsed[0][:3] == ["bucket", "start", "BASIC"] and "previous_TOTAL" in parsed[0]


def test_the_usage_page_answers_htmx_with_the_stats_part_and_explains_bad_input(as_acme, fleet):
    client = as_acme("acme_viewer")
    partial = client.get("/usage/", {"granularity": "hour", "days": 2}, HTTP_HX_REQUEST="true")
    html = partial.content.decode()
    assert partial.status_code == 200 and "<nav" not in html and 'id="stats"' in html
    assert int(html.split('data-points="')[1].split('"')[0]) >= 48  # hours of two days
    too_fine = client.get("/usage/", {"granularity": "minute", "days": 30})
    assert too_fine.status_code == 400 and "too many" in too_fine.content.decode()


def test_options_narrow_each_other(as_acme, fleet):
    with schema_context("acme"):
        other, _ = bound("Harbour", "H1")
    options = as_acme("acme_viewer").get("/usage/", {"outlet": fleet["outlet"].pk}).context["options"]
    assert [m["name"] for m in options["machines"]] == ["A"]
    assert [d["device_id"] for d in options["devices"]] == [fleet["device"].device_id]
    assert {o["name"] for o in options["outlets"]} == {"Riverside", "Harbour"} and other


def test_another_tenants_outlet_is_404(globex_client, people, fleet):
    from helpers import sign_in

    client = sign_in(globex_client, people["globex_owner"], "globex")
    assert client.get(f"/outlets/{fleet['outlet'].pk}/").status_code == 404
    assert client.get(f"/machines/{fleet['machine'].pk}/").status_code == 404


def test_the_dashboard_shows_usage_today_and_counters_online(as_acme, fleet):
    html = as_acme("acme_viewer").get("/").content.decode()
    assert 'data-testid="widget-usage-today"' in html and 'data-testid="widget-counters-online"' in html
    # today's BASIC counters in time order are 4, 3, 2, 1, 0: the first has none before it, each
    # later one is a reset and counts whole (3 + 2 + 1 + 0)
    assert "counters +6" in html


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "granularity",
                "days",
                "start",
                "end",
                "outlet",
                "machine",
                "device",
                "treatment",
                "ma",
                "compare",
                "cumulative",
                "export",
            ]
        ),
        st.one_of(
            st.text(max_size=12),
            st.integers(-5, 10**6).map(str),
            st.sampled_from(["minute", "hour", "day", "month", "2026-01-01", "on", "csv"]),
        ),
        max_size=6,
    )
)
def test_the_usage_page_never_answers_500(as_acme, fleet, params):
    assert as_acme("acme_viewer").get("/usage/", params).status_code in (200, 400)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(PAGES),
    key=st.sampled_from(
        ["q", "status", "outlet", "machine", "days", "start", "end", "sort", "page", "treatment", "exclude_status"]
    ),
    value=st.text(max_size=20),
)
def test_the_lists_never_answer_500(as_acme, fleet, path, key, value):
    assert as_acme("acme_viewer").get(path.split("?")[0], {key: value}).status_code in (200, 400)


def test_event_time_bounds_are_exact(as_acme, fleet):
    """The events list's range is the tenant's local days; status events can be left out."""
    with schema_context("acme"):
        from outlets.usage_builders import status

        status(fleet["device"], datetime.now(UTC) - timedelta(minutes=1))
    client = as_acme("acme_viewer")
    assert len(client.get("/usage/events/", {"device": fleet["device"].device_id}).context["page"].object_list) == 6
    without = client.get("/usage/events/", {"device": fleet["device"].device_id, "exclude_status": "on"})
    assert without.context["page"].paginator.count == 5  # the status event and the 8-day-old one are out


@pytest.mark.parametrize("path", ["/usage/events/", "/locks/access-log/"])
def test_a_date_beyond_2099_is_a_form_error_not_an_overflow(as_acme, fleet, path):
    # 9999-12-31 plus the day "to (included)" adds overflowed: a 500 the page fuzz found.
    response = as_acme("acme_viewer").get(path, {"start": "1900-01-01", "end": "9999-12-31"})
    assert response.status_code == 200
    assert "between 1970 and 2099" in response.content.decode()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    form=st.dictionaries(
        st.sampled_from(["machine", "outlet", "name", "next"]),
        st.one_of(st.text(max_size=160), st.integers(-3, 10**12).map(str)),
        max_size=4,
    )
)
def test_registering_never_answers_500(as_acme, fleet, form):
    response = as_acme("acme_operator").post(f"/counters/{fleet['spare'].pk}/register/", form)
    assert response.status_code in (302, 400)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    form=st.dictionaries(
        st.sampled_from(["device", "start", "end", "confirm"]),
        st.one_of(st.text(max_size=30), st.integers(-3, 10**12).map(str), st.just("2026-11-20T10:00")),
        max_size=4,
    )
)
def test_the_flush_form_never_answers_500(as_acme, fleet, form):
    form.pop("confirm", None)  # never delete while fuzzing: the count step only
    assert as_acme("acme_owner").post("/usage/flush/", form).status_code in (200, 400)


def test_the_machine_page_is_live(as_acme, fleet):
    """The machine page polls its live endpoint (portal.core.live): 204 while its device posted
    nothing newer than the cursor; after a post, its usage, device state, events and chart points."""
    client = as_acme("acme_viewer")
    page = client.get(f"/machines/{fleet['machine'].pk}/").content.decode()
    url = f"/machines/{fleet['machine'].pk}/live/"
    assert f'hx-get="{url}?since=' in page
    with schema_context("acme"):
        from telemetry.models import Device

        Device.objects.filter(pk=fleet["device"].pk).update(last_seen=timezone.now())
        cursor = str(Device.objects.get(pk=fleet["device"].pk).last_seen.timestamp())
    assert client.get(url, {"since": cursor}).status_code == 204
    event(fleet["device"], timezone.now(), "STANDARD", counter=7)
    with schema_context("acme"):
        Device.objects.filter(pk=fleet["device"].pk).update(last_seen=timezone.now())
    answer = client.get(url, {"since": cursor})
    html = answer.content.decode()
    assert answer.status_code == 200 and answer["X-Fieldwatch-Live"] == "1"
    assert 'id="machine-usage-today" hx-swap-oob="true"' in html and 'data-testid="usage-today">6<' in html
    assert html.count('data-testid="event-row"') == 7 and "data-chart-updates" in html
    assert client.get(url, {"since": "nonsense"}).status_code == 400
    assert client.get("/machines/999999/live/").status_code == 404


def test_the_outlet_page_asks_one_statement_for_all_its_machines_usage(as_acme, fleet):
    """Usage today and this month for every machine of an outlet in one statement: the page's
    query count does not grow with its machines."""
    from outlets.usage_builders import bound as bind_new

    client = as_acme("acme_viewer")
    url = f"/outlets/{fleet['outlet'].pk}/"
    client.get(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        client.get(url)
    with schema_context("acme"):
        for n in range(4):
            _, device = bind_new("Riverside", f"extra {n}", at=timezone.now() - timedelta(days=1))
            event(device, timezone.now() - timedelta(minutes=1))
    client.get(url)  # the schema switch's SET search_path is not the page's
    with CaptureQueriesContext(connection) as five:
        html = client.get(url).content.decode()
    assert len(five) == len(one) and html.count('data-testid="machine-row"') == 5
    assert 'data-testid="usage-today">9<' in html


def test_the_device_lists_are_live(as_acme, fleet):
    """The counting devices' lists poll /counters/live/ with their filters: 204 until a device
    reports; then the shown rows' status cells out of band (not the registration form), and a
    note when another device now matches."""
    from telemetry.models import Device

    with schema_context("acme"):
        Device.objects.filter(pk=fleet["spare"].pk).update(last_seen=timezone.now() - timedelta(minutes=1))
        Device.objects.exclude(pk=fleet["spare"].pk).update(last_seen=timezone.now() - timedelta(minutes=2))
        cursor = str(Device.objects.get(pk=fleet["spare"].pk).last_seen.timestamp())
    client = as_acme("acme_operator")
    page = client.get("/counters/", {"status": "unregistered"}).content.decode()
    assert f'hx-get="/counters/live/?status=unregistered&amp;since={float(cursor):.6f}&amp;n=1"' in page
    url = "/counters/live/"
    assert client.get(url, {"status": "unregistered", "since": cursor, "n": 1}).status_code == 204
    with schema_context("acme"):
        Device.objects.filter(pk=fleet["spare"].pk).update(last_seen=timezone.now(), firmware="2.1.0")
    answer = client.get(url, {"status": "unregistered", "since": cursor, "n": 1})
    html = answer.content.decode()
    assert answer.status_code == 200 and answer["X-Fieldwatch-Live"] == "1"
    assert f'id="counter-{fleet["spare"].pk}-firmware" hx-swap-oob="true">2.1.0<' in html
    assert "register-form" not in html and 'data-testid="list-changed"' not in html
    with schema_context("acme"):
        counter_device("spare-02")
        Device.objects.filter(device_id="spare-02").update(last_seen=timezone.now())
    changed = client.get(url, {"status": "unregistered", "since": cursor, "n": 1}).content.decode()
    assert 'data-testid="list-changed"' in changed and "2 devices match now" in changed
    assert 'href="/counters/?status=unregistered"' in changed
    assert client.get(url, {"since": "nonsense"}).status_code == 400
    assert client.get(url, {"status": "nonsense", "since": cursor}).status_code in (200, 286)


# --- property-based: the detail pages, their live polls and unbinding never answer 500 ----------------

LIVE_KEYS = ["since", "n", "status", "page", "q", "sort", "export", "online", "firmware"]
ids = st.one_of(st.integers(0, 2**63 - 1), st.sampled_from(["pk"]))


def fuzzed_path(template: str, fleet, pk) -> str:
    real = {"outlet": fleet["outlet"].pk, "machine": fleet["machine"].pk}
    return template.format(pk=real[template.split("/")[1].rstrip("s")] if pk == "pk" else pk)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    template=st.sampled_from(["/outlets/{pk}/", "/machines/{pk}/", "/outlets/{pk}/live/", "/machines/{pk}/live/"]),
    pk=ids,
    query=st.dictionaries(st.sampled_from(LIVE_KEYS), hostile_text, max_size=4),
)
def test_the_detail_pages_and_their_polls_never_answer_500(as_acme, fleet, template, pk, query):
    path = fuzzed_path(template, fleet, pk)
    response = as_acme("acme_viewer").get(f"{path}?{query_string(query)}" if query else path)
    assert response.status_code in (200, 204, 400, 404), (path, query)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(query=st.dictionaries(st.sampled_from(LIVE_KEYS), hostile_text, max_size=5))
def test_the_device_lists_poll_never_answers_500(as_acme, fleet, query):
    response = as_acme("acme_operator").get(f"/counters/live/?{query_string(query)}")
    assert response.status_code in (200, 204, 286, 400), query


form_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)  # what a form can post


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    pk=st.one_of(st.integers(0, 2**63 - 1), st.just("binding")), form=st.dictionaries(form_text, form_text, max_size=3)
)
def test_unbinding_never_answers_500(as_acme, fleet, pk, form):
    with schema_context("acme"):
        binding = MachineDevice.objects.filter(machine=fleet["machine"]).order_by("-pk").first()
    target = binding.pk if pk == "binding" else pk
    response = as_acme("acme_operator").post(f"/machines/bindings/{target}/end/", form)
    assert response.status_code in (302, 404), (target, form)
    assert as_acme("acme_operator").get(f"/machines/bindings/{target}/end/").status_code == 405


def test_the_flush_confirmation_is_for_exactly_what_was_counted(as_acme, fleet):
    """The confirm step carries the counted device and range back as they were, not as fields
    that could be changed to another device between counting and deleting."""
    html = as_acme("acme_owner").post("/usage/flush/", {"device": fleet["device"].pk}).content.decode()
    assert f'<input type="hidden" name="device" value="{fleet["device"].pk}">' in html
    assert '<select name="device"' not in html and 'data-testid="flush-scope"' in html
    assert 'class="form-select"' in as_acme("acme_owner").get("/usage/flush/").content.decode()


def test_list_pages_name_what_they_show_and_checkboxes_are_boxes(as_acme, fleet):
    client = as_acme("acme_operator")
    assert (
        '<h1 class="h3 mb-0" data-testid="heading">Unregistered devices<'
        in client.get("/counters/", {"status": "unregistered"}).content.decode()
    )
    assert "Devices online<" in client.get("/counters/", {"status": "online"}).content.decode()
    events = client.get("/usage/events/").content.decode()
    assert 'type="checkbox" name="exclude_status" class="form-check-input"' in events


def test_the_usage_table_shows_the_csvs_cells(as_acme, fleet):
    """The table on the page is the CSV's rows (without the ISO start), cell for cell, escaped."""
    import re
    from html import unescape

    client = as_acme("acme_viewer")
    query = {"granularity": "day", "days": 10, "compare": "on", "ma": 2}
    html = client.get("/usage/", query).content.decode()
    table = html[html.index('data-testid="stats-table"') :]
    table = table[: table.index("</table>")]
    cells = [
        [unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", row)] for row in re.findall(r"<tr>(.*?)</tr>", table)
    ]
    exported = list(csv.reader(io.StringIO(client.get("/usage/", query | {"export": "csv"}).content.decode())))
    page = [["" if cell == "–" else cell for cell in row] for row in cells]  # "–": an empty moving average
    assert page == [[cell for n, cell in enumerate(row) if n != 1] for row in exported]
    assert "–" in cells[1]  # the first day has no two-day average yet
    assert len(cells) == 1 + 10 + 2  # header, ten days, totals and change %
