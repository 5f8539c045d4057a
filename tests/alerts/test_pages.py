"""The alert pages as people use them: read by every member, acted on by operators, configured by
admins, audited, exported as CSV, isolated per tenant, and never a 500 whatever the input."""

import csv
import io
from datetime import timedelta

import pytest
from django_tenants.utils import schema_context
from helpers import sign_in, unchanged
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.alerts.models import Alert, AlertRule, Channel, RuleState, Silence, State
from portal.audit.models import AuditLog

LISTS = ["/alerts/", "/alerts/rules/", "/alerts/silences/", "/alerts/channels/", "/alerts/deliveries/"]


@pytest.fixture
def firing(sensor, rule_for, send, clock):
    rule_for(target_id=sensor.pk, name="Supply too warm")
    send(sensor, 12.0)
    return Alert.objects.get()


def csv_rows(response):
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.parametrize("path", LISTS)
def test_every_member_reads_the_alert_pages_and_outsiders_do_not(path, as_acme, acme_client, people, in_acme):
    assert as_acme("acme_viewer").get(path).status_code == 200
    assert sign_in(acme_client, people["outsider"], "acme").get(path).status_code == 403


def test_the_list_shows_open_alerts_and_the_navigation_counts_them(as_acme, firing):
    response = as_acme("acme_viewer").get("/alerts/?status=active")
    html = response.content.decode()
    assert [a.pk for a in response.context["rows"]] == [firing.pk]
    assert "Supply too warm" in html and 'data-testid="open-alert-count"' in html
    assert response.context["open_alert_count"] == 1


def test_the_alert_page_shows_timeline_values_and_chart(as_acme, firing):
    html = as_acme("acme_viewer").get(f"/alerts/{firing.pk}/").content.decode()
    assert (
        "Timeline" in html
        and "Firing: value above 10" in html
        and "12.0" in html
        and 'data-testid="alert-chart"' in html
    )


def test_viewers_cannot_acknowledge(as_acme, firing):
    viewer = as_acme("acme_viewer")
    with unchanged():
        assert viewer.post("/alerts/acknowledge/", {"ids": firing.pk}).status_code == 403
    firing.refresh_from_db()
    assert firing.status == "open"


def test_operators_acknowledge_in_bulk_with_a_note_and_it_is_audited(as_acme, firing, sensor, rule_for, send):
    rule_for(target_id=sensor.pk, name="Second", conditions=[("above", {"threshold": 5})])
    send(sensor, 13.0)
    ids = list(Alert.objects.values_list("pk", flat=True))
    assert len(ids) == 2
    response = as_acme("acme_operator").post(
        "/alerts/acknowledge/", {"ids": ",".join(map(str, ids)), "note": "Technician called"}
    )
    assert response.status_code == 302
    for alert in Alert.objects.all():
        assert alert.status == "acknowledged" and alert.acknowledged_by_email == "acme_operator@example.com"
        assert alert.acknowledge_note == "Technician called"
        assert alert.events.filter(kind="acknowledged", actor_email="acme_operator@example.com").exists()
    assert AuditLog.objects.filter(action="alert.acknowledged").count() == 2


def test_a_person_resolves_and_the_rule_starts_over(as_acme, firing, send, sensor, clock):
    response = as_acme("acme_operator").post(f"/alerts/{firing.pk}/resolve/", {"note": "Valve replaced"})
    assert response.status_code == 302
    firing.refresh_from_db()
    assert firing.status == "resolved" and firing.resolved_by_email == "acme_operator@example.com"
    assert "Valve replaced" in firing.resolution
    assert RuleState.objects.get().state == State.NORMAL
    assert AuditLog.objects.filter(action="alert.resolved").exists()
    clock.move(minutes=1)
    send(sensor, 12.5)  # still too warm: a new alert, not the resolved one reopened
    assert Alert.objects.active().exclude(pk=firing.pk).count() == 1


def test_the_navigation_count_polls_answer_nothing_new_until_an_alert_opens(as_acme, sensor, rule_for, send, clock):
    client = as_acme("acme_viewer")
    html = client.get("/alerts/").content.decode()
    assert 'id="nav-alert-count"' in html and "/alerts/count/live/?count=0" in html
    assert client.get("/alerts/count/live/?count=0").status_code == 204
    rule_for(target_id=sensor.pk)
    send(sensor, 12.0)
    response = client.get("/alerts/count/live/?count=0")
    assert response.status_code == 200 and response["X-Fieldwatch-Live"] == "1"
    badge = response.content.decode()
    assert ">1</span>" in badge and "count=1" in badge and "text-bg-danger" in badge
    assert client.get("/alerts/count/live/?count=1").status_code == 204


def test_a_navigation_count_poll_is_one_query(as_acme, firing, django_assert_max_num_queries):
    client = as_acme("acme_viewer")
    client.get("/alerts/count/live/?count=1")  # the session and membership are read once per process
    with django_assert_max_num_queries(4):  # session, user, membership (the request's own), the count
        assert client.get("/alerts/count/live/?count=1").status_code == 204


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(count=st.text(max_size=30))
def test_navigation_count_polls_never_500(as_acme, in_acme, count):
    assert as_acme("acme_viewer").get("/alerts/count/live/", {"count": count}).status_code in (200, 204)


def test_alerts_csv_has_the_filtered_rows(as_acme, firing):
    client = as_acme("acme_viewer")
    rows = csv_rows(client.get("/alerts/?status=active&export=csv"))
    assert [int(r["id"]) for r in rows] == [firing.pk] and rows[0]["severity"] == "medium"
    assert csv_rows(client.get("/alerts/?status=resolved&export=csv")) == []


def test_filters_by_severity_site_and_time(as_acme, firing):
    client = as_acme("acme_viewer")
    assert len(client.get("/alerts/?severity=critical").context["rows"]) == 0
    assert len(client.get("/alerts/?severity=medium").context["rows"]) == 1
    later = (firing.opened_at + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert len(client.get(f"/alerts/?since={later}").context["rows"]) == 0


def test_an_alert_of_acme_is_404_on_globex(firing, globex_client, people):
    client = sign_in(globex_client, people["globex_owner"], "globex")
    assert client.get(f"/alerts/{firing.pk}/").status_code == 404
    with unchanged("acme"), unchanged("globex"):
        assert client.post(f"/alerts/{firing.pk}/resolve/").status_code == 404
    with schema_context("globex"):
        assert not Alert.objects.exists()


def rule_post(**changes):
    data = {
        "name": "Freezer too warm",
        "target": "",
        "severity": "high",
        "combine": "all",
        "for_minutes": "5",
        "keep_firing_minutes": "2",
        "no_data_handling": "nodata",
        "error_handling": "error",
        "enabled": "on",
        "labels_text": "team=cold-chain",
        "conditions-TOTAL_FORMS": "1",
        "conditions-INITIAL_FORMS": "0",
        "conditions-MIN_NUM_FORMS": "0",
        "conditions-MAX_NUM_FORMS": "8",
        "conditions-0-kind": "above",
        "conditions-0-threshold": "-15",
        "conditions-0-hysteresis": "0.5",
    }
    return data | changes


def test_admins_create_a_rule_with_conditions_and_it_is_audited(as_acme, sensor):
    response = as_acme("acme_admin").post("/alerts/rules/new/", rule_post(target=f"sensor:{sensor.pk}"))
    assert response.status_code == 302, response.content.decode()[:3000]
    rule = AlertRule.objects.get()
    assert (rule.target_kind, rule.target_id, rule.for_seconds, rule.keep_firing_for_seconds) == (
        "sensor",
        sensor.pk,
        300,
        120,
    )
    assert rule.labels == {"team": "cold-chain"}
    (condition,) = rule.conditions.all()
    assert (condition.kind, condition.threshold, condition.hysteresis) == ("above", -15, 0.5)
    assert AuditLog.objects.filter(action="alert_rule.created", object_id=str(rule.pk)).exists()


def test_operators_cannot_edit_rules(as_acme, sensor):
    client = as_acme("acme_operator")
    with unchanged():
        assert client.post("/alerts/rules/new/", rule_post(target=f"sensor:{sensor.pk}")).status_code == 403
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"target": ""}, "Choose what this rule watches"),
        ({"target": "tenant:"}, "choose the type"),
        ({"conditions-0-threshold": ""}, "Required for this condition"),
        ({"conditions-0-kind": "outside", "conditions-0-low": "5", "conditions-0-high": "1"}, "upper bound"),
        ({"labels_text": "not a label"}, "key=value"),
        ({"target": "sensor:999999"}, "Select a valid choice"),
    ],
)
def test_bad_rules_get_clear_form_errors(as_acme, sensor, changes, message):
    data = rule_post(target=f"sensor:{sensor.pk}") | changes
    response = as_acme("acme_admin").post("/alerts/rules/new/", data)
    assert response.status_code == 400 and message in response.content.decode()


def test_a_device_target_needs_the_sensor_key_of_a_value_condition(as_acme, sensor):
    response = as_acme("acme_admin").post("/alerts/rules/new/", rule_post(target=f"device:{sensor.device_id}"))
    assert response.status_code == 400 and "needs the key of the sensor" in response.content.decode()


def test_testing_a_rule_says_how_often_it_would_have_fired(as_acme, sensor, clock):
    from telemetry.ingest import ReadingIn, ingest

    values = [5, 12, 12, 5, 5, 13, 13, 5]  # two excursions above 10, each 10 minutes long
    ingest(
        [
            ReadingIn(sensor.device.device_id, "supply_temp", clock.now - timedelta(minutes=5 * (8 - i)), v)
            for i, v in enumerate(values)
        ],
        source="mqtt",
    )
    data = rule_post(
        target=f"sensor:{sensor.pk}",
        **{"conditions-0-threshold": "10", "for_minutes": "0", "keep_firing_minutes": "0", "test": "1"},
    )
    response = as_acme("acme_admin").post("/alerts/rules/new/", data)
    assert response.status_code == 200 and not AlertRule.objects.exists()
    assert response.context["test"].fired == 2
    assert "would have fired 2 times" in response.content.decode()


def test_silences_are_set_by_operators_and_ended_early(as_acme, firing, clock):
    viewer = as_acme("acme_viewer")
    with unchanged():
        response = viewer.post("/alerts/silences/new/", {"reason": "x", "subject_key": firing.subject_key})
    assert response.status_code == 403
    response = as_acme("acme_operator").post(
        "/alerts/silences/new/", {"reason": "Maintenance", "subject_key": firing.subject_key, "duration_hours": "2"}
    )
    assert response.status_code == 302
    silence = Silence.objects.get()
    assert silence.created_by_email == "acme_operator@example.com" and silence.ends_at == clock.now + timedelta(hours=2)
    assert as_acme("acme_operator").post(f"/alerts/silences/{silence.pk}/expire/").status_code == 302
    silence.refresh_from_db()
    assert silence.status == "expired"
    assert {"silence.created", "silence.expired"} <= set(AuditLog.objects.values_list("action", flat=True))


def test_a_silence_needs_a_matcher(as_acme, in_acme):
    operator = as_acme("acme_operator")
    with unchanged():
        response = operator.post("/alerts/silences/new/", {"reason": "Everything", "duration_hours": "1"})
    assert response.status_code == 400 and "at least one of rule" in response.content.decode()


def test_admins_add_channels_and_private_webhooks_are_refused(as_acme, in_acme):
    client = as_acme("acme_admin")
    base = {
        "name": "Hook",
        "kind": "webhook",
        "enabled": "on",
        "webhook_secret": "s" * 20,
        "severities": ["high", "critical"],
        "group_wait_seconds": "30",
        "repeat_interval_minutes": "0",
        "notify_resolved": "on",
    }
    with unchanged():
        response = client.post("/alerts/channels/new/", base | {"webhook_url": "http://127.0.0.1:8080/hook"})
    assert response.status_code == 400 and "loopback" in response.content.decode()
    response = client.post("/alerts/channels/new/", base | {"webhook_url": "https://hooks.example.com/fw"})
    assert response.status_code == 302
    channel = Channel.objects.get()
    assert channel.severity_list == ["high", "critical"]
    operator = as_acme("acme_operator")
    with unchanged():
        assert operator.post("/alerts/channels/new/", base).status_code == 403


def test_send_test_on_an_sms_channel_is_skipped_honestly(as_acme, in_acme, django_capture_on_commit_callbacks):
    channel = Channel.objects.create(name="Phones", kind="sms", phone_numbers="+351910000000")
    with django_capture_on_commit_callbacks(execute=True):
        response = as_acme("acme_admin").post(f"/alerts/channels/{channel.pk}/test/")
    assert response.status_code == 302
    rows = as_acme("acme_viewer").get(f"/alerts/deliveries/?channel={channel.pk}").context["rows"]
    assert [(n.status, n.detail) for n in rows] == [("skipped", "skipped: no provider configured")]


def test_the_dashboard_counts_open_alerts_by_severity(as_acme, firing):
    html = as_acme("acme_viewer").get("/").content.decode()
    assert 'data-testid="open-alerts-widget"' in html and "1 medium" in html


text = st.text(max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(LISTS),
    params=st.dictionaries(
        st.sampled_from(
            [
                "q",
                "status",
                "severity",
                "site",
                "asset",
                "rule",
                "kind",
                "since",
                "until",
                "sort",
                "page",
                "channel",
                "event",
                "enabled",
                "target_kind",
                "export",
            ]
        ),
        text,
        max_size=5,
    ),
)
def test_list_filters_never_500(as_acme, in_acme, path, params):
    assert as_acme("acme_viewer").get(path, params).status_code < 500


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(
        [
            "/alerts/rules/new/",
            "/alerts/silences/new/",
            "/alerts/channels/new/",
            "/alerts/acknowledge/",
            "/alerts/1/resolve/",
        ]
    ),
    data=st.dictionaries(
        st.sampled_from(
            [
                "name",
                "target",
                "kind",
                "severity",
                "ids",
                "note",
                "reason",
                "subject_key",
                "duration_hours",
                "ends_at",
                "webhook_url",
                "for_minutes",
                "conditions-TOTAL_FORMS",
                "conditions-0-kind",
                "conditions-0-threshold",
                "labels_text",
                "email_addresses",
                "phone_numbers",
            ]
        ),
        text,
        max_size=8,
    ),
)
def test_forms_never_500(as_acme, in_acme, path, data):
    assert as_acme("acme_admin").post(path, data).status_code < 500


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(pk=st.integers(min_value=0, max_value=2**63 - 1), test=st.sampled_from(["", "24h"]))
def test_detail_pages_never_500(as_acme, in_acme, pk, test):
    client = as_acme("acme_viewer")
    for path in (f"/alerts/{pk}/", f"/alerts/rules/{pk}/?test={test}", f"/alerts/deliveries/{pk}/"):
        assert client.get(path).status_code in (200, 404)
