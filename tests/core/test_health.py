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
