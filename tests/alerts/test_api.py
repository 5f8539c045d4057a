"""The alerts' JSON API: the page's filters over the same rows, acknowledge and resolve by
operators (keys and tokens), viewers refused with nothing changed, isolation, never a 500."""

import json

import pytest
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.alerts.models import Alert, RuleState, State
from portal.api.models import ApiKey
from portal.audit.models import AuditLog

LIST = "/api/v1/alerts/"


def key(role: str, schema: str = "acme") -> dict:
    with schema_context(schema):
        return {"HTTP_X_API_KEY": ApiKey.issue(f"{role} key", role=role)[1]}


def post(client, path, body=None, **headers):
    return client.post(path, json.dumps(body or {}), content_type="application/json", **headers)


@pytest.fixture
def firing(sensor, rule_for, send, clock):
    rule_for(target_id=sensor.pk, name="Supply too warm", severity="high")
    send(sensor, 12.0)
    return Alert.objects.get()


def test_the_list_answers_the_pages_rows_with_its_filters(acme_client, in_acme, firing, as_acme):
    viewer = key("viewer")
    body = acme_client.get(LIST, **viewer).json()
    assert body["count"] == 1 and body["next"] is None and body["previous"] is None
    (row,) = body["results"]
    assert row["id"] == firing.pk and row["status"] == "open" and row["severity"] == "high"
    assert row["rule_name"] == "Supply too warm" and row["sensor"] == firing.sensor_id
    assert row["trigger_values"] == firing.trigger_values
    page = as_acme("acme_viewer").get("/alerts/", {"status": "active", "severity": "high"})
    api = acme_client.get(LIST, {"status": "active", "severity": "high"}, **viewer).json()
    assert [r["id"] for r in api["results"]] == [a.pk for a in page.context["rows"]]
    assert acme_client.get(LIST, {"severity": "low"}, **viewer).json()["count"] == 0
    assert acme_client.get(LIST, {"status": "resolved"}, **viewer).json()["count"] == 0
    assert acme_client.get(LIST, {"since": "2099-01-01T00:00:00Z"}, **viewer).json()["count"] == 0


def test_bad_filters_are_400_naming_the_field(acme_client, in_acme, firing):
    viewer = key("viewer")
    for params, field in [
        ({"site": 999999}, "site"),
        ({"severity": "huge"}, "severity"),
        ({"since": "1-1-1"}, "since"),
    ]:
        response = acme_client.get(LIST, params, **viewer)
        assert response.status_code == 400, (params, response.content)
        assert field in response.json()["error"]["fields"]
    response = acme_client.get(LIST, {"since": "9999-01-01T00:00:00"}, **viewer)
    assert response.status_code == 400 and "2100" in response.json()["error"]["message"]


def test_an_operator_key_acknowledges_with_a_note_and_it_is_audited(acme_client, in_acme, firing):
    response = post(acme_client, f"{LIST}{firing.pk}/acknowledge/", {"note": "on it"}, **key("operator"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "acknowledged" and response.json()["acknowledge_note"] == "on it"
    firing.refresh_from_db()
    assert firing.status == "acknowledged" and firing.events.filter(kind="acknowledged").exists()
    log = AuditLog.objects.get(action="alert.acknowledged")
    assert log.changes["note"] == "on it" and log.changes["api_key"].startswith("key:")
    again = post(acme_client, f"{LIST}{firing.pk}/acknowledge/", {"note": "twice"}, **key("operator"))
    assert again.json()["acknowledge_note"] == "on it"  # already acknowledged: left as it was
    assert AuditLog.objects.filter(action="alert.acknowledged").count() == 1


def test_resolving_closes_the_alert_and_the_rule_starts_over(acme_client, in_acme, firing):
    response = acme_client.generic("POST", f"{LIST}{firing.pk}/resolve/", **key("operator"))  # no body: no note
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "resolved" and response.json()["resolved_at"]
    assert RuleState.objects.get(rule=firing.rule).state == State.NORMAL
    assert AuditLog.objects.filter(action="alert.resolved").count() == 1


def test_viewers_cannot_act_and_nothing_changes(acme_client, in_acme, firing):
    viewer = key("viewer")
    for action in ("acknowledge", "resolve"):
        response = post(acme_client, f"{LIST}{firing.pk}/{action}/", **viewer)
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    firing.refresh_from_db()
    assert firing.status == "open" and firing.resolved_at is None
    assert not AuditLog.objects.filter(action__startswith="alert.").exists()


def test_nobody_is_401_and_another_tenants_alert_is_404(acme_client, globex_client, in_acme, firing):
    assert acme_client.get(LIST).status_code == 401
    globex_operator = key("operator", "globex")
    assert globex_client.get(f"{LIST}{firing.pk}/", **globex_operator).status_code == 404
    assert post(globex_client, f"{LIST}{firing.pk}/resolve/", **globex_operator).status_code == 404
    assert globex_client.get(LIST, **globex_operator).json()["count"] == 0
    with schema_context("acme"):
        assert Alert.objects.get(pk=firing.pk).resolved_at is None


def test_the_routes_are_in_the_openapi_document(acme_client, db):
    paths = acme_client.get("/api/schema/").json()["paths"]
    assert {"/api/v1/alerts/", "/api/v1/alerts/{alert_id}/acknowledge/", "/api/v1/alerts/{alert_id}/resolve/"} <= set(
        paths
    )


text = st.text(max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    params=st.dictionaries(
        st.sampled_from(["q", "status", "severity", "site", "asset", "rule", "kind", "since", "until", "page"]),
        text | st.integers(min_value=-(2**70), max_value=2**70).map(str),
        max_size=5,
    ),
    pk=st.integers(min_value=0, max_value=2**70),
    note=text,
)
def test_the_alerts_api_never_500s(acme_client, in_acme, params, pk, note):
    headers = key("operator")
    assert acme_client.get(LIST, params, **headers).status_code < 500
    assert acme_client.get(f"{LIST}{pk}/", **headers).status_code < 500
    assert post(acme_client, f"{LIST}{pk}/acknowledge/", {"note": note}, **headers).status_code < 500
