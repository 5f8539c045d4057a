"""Health checks: each returns (ok, detail); the view answers 200 when all pass, else 503."""

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from huey.contrib.djhuey import HUEY


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, "ok"
    except Exception as error:  # any failure is the answer here, not a crash
        return False, f"{type(error).__name__}: {error}"[:200]


def check_queue() -> tuple[bool, str]:
    try:
        pending = HUEY.pending_count()
        return True, f"ok, {pending} pending"
    except Exception as error:
        return False, f"{type(error).__name__}: {error}"[:200]


def check_storage() -> tuple[bool, str]:
    """The default storage (bulk uploads wait there) accepts a write and a delete."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    try:
        name = default_storage.save("health/probe.txt", ContentFile(b"ok"))
        default_storage.delete(name)
        return True, "ok"
    except Exception as error:
        return False, f"{type(error).__name__}: {error}"[:200]


def check_broker() -> tuple[bool, str]:
    """The MQTT broker at MQTT_URL accepts a TCP connection."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(settings.MQTT_URL)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or (8883 if parsed.scheme == "mqtts" else 1883)
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True, f"ok, {host}:{port}"
    except OSError as error:
        return False, f"{host}:{port}: {error}"[:200]


CHECKS = {"database": check_database, "queue": check_queue}


def run_checks(checks=CHECKS) -> tuple[bool, dict]:
    results = {name: check() for name, check in checks.items()}
    healthy = all(ok for ok, _ in results.values())
    return healthy, {name: {"ok": ok, "detail": detail} for name, (ok, detail) in results.items()}


def bridge_status() -> dict:
    """Each bridge's last heartbeat: alive when it beat within ProcessHeartbeat.STALE_AFTER."""
    from portal.core.models import ProcessHeartbeat

    beats = [
        {"name": b.name, "host": b.host, "alive": b.alive, "last_beat": b.beat_at.isoformat(), "stats": b.stats}
        for b in ProcessHeartbeat.objects.filter(kind="bridge")
    ]
    return {"alive": sum(b["alive"] for b in beats), "known": len(beats), "processes": beats}


@never_cache
def health(request):
    started = time.monotonic()
    healthy, checks = run_checks()
    body = {"status": "ok" if healthy else "error", "version": settings.VERSION, "checks": checks,
            "ms": round((time.monotonic() - started) * 1000, 1)}
    return JsonResponse(body, status=200 if healthy else 503)


@never_cache
def health_detailed(request):
    """The checks, storage and broker, and the processes around the web: are the bridges alive?
    Only the database and the queue decide the status code; the rest is reported."""
    started = time.monotonic()
    healthy, checks = run_checks(CHECKS)
    checks.update(run_checks({"storage": check_storage, "broker": check_broker})[1])
    body = {"status": "ok" if healthy else "error", "version": settings.VERSION, "checks": checks}
    if checks["database"]["ok"]:
        body["bridges"] = bridge_status()
        if body["bridges"]["known"] and not body["bridges"]["alive"]:
            body["status"] = "degraded"  # readings are not flowing in; the web still serves
    body["ms"] = round((time.monotonic() - started) * 1000, 1)
    return JsonResponse(body, status=200 if healthy else 503)
