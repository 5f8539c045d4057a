"""Device paths take the lean middleware stack (portal.core.lean): tenant routing, security
headers and the view, none of the session/auth/CSRF/messages machinery; errors keep the JSON
shape there, and every other path keeps the full stack."""

import json

import pytest
from django.conf import settings
from django.test import Client, override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

HOST = "acme.localhost"
EVENTS = "/api/device/events/"


def post(path, body=b"{}", host=HOST, **extra):
    return Client(HTTP_HOST=host).post(path, body, content_type="application/json", **extra)


def assert_security_headers(response):
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert "default-src 'self'" in response["Content-Security-Policy"]


def test_a_device_request_skips_sessions_auth_and_csrf_but_keeps_the_security_headers(acme):
    response = post(EVENTS, json.dumps({"event_id": "x"}), HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    request = response.wsgi_request
    assert request.lean is True
    assert request.tenant.schema_name == "acme"  # routed by host
    assert not hasattr(request, "user") and not hasattr(request, "session") and not hasattr(request, "htmx")
    assert "Set-Cookie" not in response and "Cookie" not in response.get("Vary", "")
    assert response["Content-Length"] == str(len(response.content))  # not chunked: simple HTTP clients
    assert_security_headers(response)


def test_pages_keep_the_full_stack(acme):
    response = Client(HTTP_HOST=HOST).get("/")
    request = response.wsgi_request
    assert not getattr(request, "lean", False)
    assert hasattr(request, "user") and hasattr(request, "session")
    assert_security_headers(response)


def test_hsts_is_sent_on_the_lean_path_behind_tls(acme):
    with override_settings(SECURE_HSTS_SECONDS=3600):
        response = post(EVENTS, secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=3600")
    assert "Strict-Transport-Security" not in post(EVENTS)  # plain HTTP: no HSTS


def test_an_unknown_address_under_a_lean_prefix_is_a_json_404(acme):
    response = post("/api/devices/dev-1/nothing-here/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert_security_headers(response)


def test_an_unknown_host_on_a_lean_path_is_a_json_404(db):
    response = post(EVENTS, host="nobody.localhost")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_host"


def test_a_suspended_tenant_refuses_devices_in_json_on_the_lean_path(acme):
    acme.is_active = False
    acme.save()
    response = post(EVENTS)
    assert response.wsgi_request.lean is True
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"


def test_the_tenant_time_zone_is_active_while_a_lean_view_runs(acme):
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.utils import timezone

    from portal.tenancy.middleware import DeviceTenantMiddleware

    acme.time_zone = "Europe/Lisbon"
    seen = []
    middleware = DeviceTenantMiddleware(
        lambda request: seen.append(timezone.get_current_timezone_name()) or HttpResponse()
    )
    request = RequestFactory().post("/api/iot/")
    request.tenant = acme
    middleware(request)
    assert seen == ["Europe/Lisbon"]
    assert timezone.get_current_timezone_name() == "UTC"  # and only while it runs


@pytest.mark.parametrize("prefix", settings.LEAN_PATH_PREFIXES)
def test_every_lean_prefix_is_served_lean(acme, prefix):
    response = post(prefix + "x/")
    assert response.wsgi_request.lean is True
    assert response.status_code < 500
    assert "error" in response.json() or response.status_code == 200


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from(settings.LEAN_PATH_PREFIXES),
    rest=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="?#"), max_size=40),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    body=st.binary(max_size=200),
)
def test_fuzz_lean_paths_never_answer_500_and_always_in_json(acme, prefix, rest, method, body):
    response = Client(HTTP_HOST=HOST).generic(method, prefix + rest, body, content_type="application/json")
    assert response.status_code < 500
    assert response["Content-Type"].startswith("application/json")
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"code", "message"}


def search_path_sets(queries) -> list[str]:
    return [query["sql"] for query in queries if query["sql"].startswith("SET search_path")]


def test_the_search_path_is_set_only_when_a_request_needs_another_one(acme, globex):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def sets_for(host):
        with CaptureQueriesContext(connection) as queries:
            response = post(EVENTS, host=host, HTTP_AUTHORIZATION="Bearer nope")
        assert response.status_code == 401  # the token look-up ran in that tenant's schema
        return search_path_sets(queries)

    sets_for("globex.localhost"), sets_for("acme.localhost")  # hosts looked up (in public) and cached
    assert sets_for("acme.localhost") == []  # the connection has acme's path already
    assert sets_for("globex.localhost") == ['SET search_path = "globex","public"']
    assert sets_for("acme.localhost") == ['SET search_path = "acme","public"']
    assert sets_for("acme.localhost") == []


def test_the_database_away_is_a_503_devices_retry(db):
    from django.db import OperationalError
    from django.test import RequestFactory

    from portal.tenancy.middleware import DeviceTenantMiddleware

    middleware = DeviceTenantMiddleware(lambda request: None)
    response = middleware.process_exception(
        RequestFactory().post(EVENTS), OperationalError("server closed the connection")
    )
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert json.loads(response.content)["error"]["code"] == "unavailable"
    assert middleware.process_exception(RequestFactory().post(EVENTS), ValueError("a bug")) is None  # a 500
