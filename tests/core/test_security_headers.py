"""Every response carries the security headers, the ones answered before or outside a view too:
the unknown-host page, 404/403/500 pages, device endpoints' JSON errors (issue 11 §4)."""

import pytest
from django.test import Client
from helpers import sign_in

HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy")


def assert_secured(response):
    missing = [name for name in HEADERS if name not in response]
    assert not missing, (response.status_code, missing)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/", "/assets/", "/api/device/events/", "/static/../etc"])
def test_the_unknown_host_page_carries_them(db, path):
    response = Client(HTTP_HOST="nobody.localhost").get(path)
    assert response.status_code == 404
    assert_secured(response)


def test_a_404_page_carries_them(as_acme):
    response = as_acme("acme_viewer").get("/no-such-page/")
    assert response.status_code == 404
    assert_secured(response)


def test_a_403_page_carries_them(globex_client, people):
    response = sign_in(globex_client, people["acme_viewer"], "globex").get("/")
    assert response.status_code == 403
    assert_secured(response)


def test_a_500_page_carries_them(as_acme, monkeypatch):
    from portal.core import overview

    def broken(request):
        raise RuntimeError("a dashboard card failed")

    monkeypatch.setattr(overview, "all_sections", lambda: (overview.Section("broken", lambda *_: "", cards=broken),))
    client = as_acme("acme_viewer")
    client.raise_request_exception = False
    response = client.get("/")
    assert response.status_code == 500
    assert_secured(response)


def test_a_device_endpoints_json_error_carries_them(db):
    response = Client(HTTP_HOST="acme.localhost").post("/api/device/events/", "{}", content_type="application/json")
    assert response.status_code == 401
    assert_secured(response)


def test_hsts_is_sent_behind_tls_on_every_response_the_unknown_host_too(db, settings):
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_SSL_REDIRECT = False
    for host, path in [
        ("nobody.localhost", "/"),
        ("acme.localhost", "/accounts/login/"),
        ("acme.localhost", "/api/iot/"),
    ]:
        response = Client(HTTP_HOST=host).get(path, secure=True)
        assert response["Strict-Transport-Security"].startswith("max-age=3600"), (host, path)
