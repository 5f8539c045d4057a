import pytest
from django.test import Client


def test_health_answers_on_every_host(db):
    for host in ["localhost", "acme.localhost", "globex.localhost", "127.0.0.1"]:
        response = Client(HTTP_HOST=host).get("/health/")
        assert response.status_code == 200, host
        body = response.json()
        assert body["status"] == "ok"
        assert body["checks"]["database"]["ok"] and body["checks"]["queue"]["ok"]
        assert body["version"]


def test_health_is_503_when_the_queue_is_unreachable(db, monkeypatch):
    """A real Redis client pointed at a port nobody listens on, not a mock."""
    from huey import RedisHuey

    from portal.core import health

    unreachable = RedisHuey("fieldwatch-health-test", url="redis://127.0.0.1:1/0")
    monkeypatch.setattr(health, "HUEY", unreachable)
    response = Client(HTTP_HOST="acme.localhost").get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["queue"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_htmx_requests_get_an_error_fragment(as_acme):
    client = as_acme("acme_viewer")
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and b"<html" in page.content
    fragment = client.get("/no-such-page/", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 404
    assert b"<html" not in fragment.content and b"Not found" in fragment.content
    denied = client.get("/members/", HTTP_HX_REQUEST="true")
    assert denied.status_code == 403 and b"<html" not in denied.content


def test_server_errors_get_the_500_page(rf, acme):
    from portal.core.errors import server_error

    request = rf.get("/", HTTP_HOST="acme.localhost")
    request.tenant = acme
    response = server_error(request)
    assert response.status_code == 500
    assert b"Something went wrong" in response.content


def test_detailed_health_says_whether_bridges_are_alive(db, settings):
    from datetime import timedelta

    from django.utils import timezone

    from portal.core.models import ProcessHeartbeat

    ProcessHeartbeat.objects.all().delete()  # other tests' bridges may have beaten
    settings.FIELDWATCH_MONITORING_TOKEN = "monitor-secret-0123456789"
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION="Bearer monitor-secret-0123456789")
    assert client.get("/health/detailed/").json()["bridges"] == {"alive": 0, "known": 0, "processes": []}
    ProcessHeartbeat.beat("bridge:a", "bridge", timezone.now(), {"messages": 5})
    body = client.get("/health/detailed/").json()
    assert body["status"] == "ok" and body["bridges"]["alive"] == 1
    ProcessHeartbeat.objects.update(beat_at=timezone.now() - timedelta(minutes=5))
    body = client.get("/health/detailed/").json()
    assert body["status"] == "degraded" and body["bridges"]["alive"] == 0
    assert body["bridges"]["processes"][0]["alive"] is False


@pytest.mark.parametrize("path", ["/health/detailed/", "/api/v1/health/detailed"])
def test_detailed_health_is_refused_to_anonymous_callers(db, path, settings):
    settings.FIELDWATCH_MONITORING_TOKEN = "monitor-secret-0123456789"
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_X_API_KEY": "fwk_nothing"}):
        response = Client(HTTP_HOST="acme.localhost", **headers).get(path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
        assert "broker" not in response.content.decode()


def test_detailed_health_opens_to_staff_the_monitoring_token_and_api_keys(db, settings, people):
    from api.bulk_helpers import make_key
    from helpers import sign_in, sign_in_staff

    settings.FIELDWATCH_MONITORING_TOKEN = "monitor-secret-0123456789"
    staff = sign_in_staff(Client(HTTP_HOST="localhost"), people["staff"])
    assert staff.get("/health/detailed/").json()["checks"]["broker"]
    token = Client(HTTP_HOST="acme.localhost", HTTP_AUTHORIZATION="Bearer monitor-secret-0123456789")
    assert token.get("/health/detailed/").status_code in (200, 503)
    key = Client(HTTP_HOST="acme.localhost", HTTP_X_API_KEY=make_key("acme"))
    assert "checks" in key.get("/api/v1/health/detailed").json()
    member = sign_in(Client(HTTP_HOST="acme.localhost"), people["acme_owner"], "acme")
    assert member.get("/health/detailed/").status_code == 401  # an owner is no operator of the service


def test_detailed_health_checks_storage_without_leaving_files(db, settings, tmp_path):
    settings.FIELDWATCH_MONITORING_TOKEN = "monitor-secret-0123456789"
    root = tmp_path / "media"
    settings.STORAGES = settings.STORAGES | {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}}
    }
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION="Bearer monitor-secret-0123456789")
    for _ in range(3):
        assert client.get("/health/detailed/").json()["checks"]["storage"] == {"ok": True, "detail": "ok"}
    assert list(root.rglob("*")) == []
    root.rmdir()
    root.write_text("not a folder")  # the storage broken (a volume mounted wrong)
    assert client.get("/health/detailed/").json()["checks"]["storage"]["ok"] is False
