"""Health checks: each returns (ok, detail); the view answers 200 when all pass, else 503."""

import hmac
import os
import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from huey.contrib.djhuey import HUEY

from portal.core.errors import json_error


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
    """The default storage (bulk uploads wait there) can be listed, and a folder on disk written
    to: judged without writing a file (a probe per call filled the storage with leftovers
    whenever the delete failed, and was a write anyone could cause)."""
    from django.core.files.storage import default_storage

    try:
        location = getattr(default_storage, "location", None)  # FileSystemStorage; object stores have none
        if location:
            os.makedirs(location, exist_ok=True)  # its root, as the first upload would make it
        default_storage.listdir("")
        if location and not os.access(location, os.W_OK | os.X_OK):
            return False, "the storage folder is not writable"
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
    body = {
        "status": "ok" if healthy else "error",
        "version": settings.VERSION,
        "checks": checks,
        "ms": round((time.monotonic() - started) * 1000, 1),
    }
    return JsonResponse(body, status=200 if healthy else 503)


def may_see_details(request) -> bool:
    """Staff signed in, the monitoring token (FIELDWATCH_MONITORING_TOKEN, as a bearer token),
    or on a tenant host one of its API keys: the details name the broker and the processes."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    token = settings.FIELDWATCH_MONITORING_TOKEN
    if token and given and hmac.compare_digest(given.encode(), token.encode()):
        return True
    tenant = getattr(request, "tenant", None)
    if tenant is None or tenant.is_public:
        return False
    from portal.api.models import ApiKey  # the API's keys; portal.api imports this module

    raw = request.headers.get("X-API-Key", "") or given
    return bool(raw) and len(raw) <= 200 and ApiKey.objects.for_raw(raw) is not None


@never_cache
def health_detailed(request):
    """The checks, storage and broker, and the processes around the web: are the bridges alive?
    Only the database and the queue decide the status code; the rest is reported. Only for
    may_see_details(); others get 401 (the plain /health/ is open to everyone)."""
    if not may_see_details(request):
        return json_error(
            401,
            "unauthenticated",
            "Detailed health needs staff, an API key (X-API-Key) or the monitoring token (Authorization: Bearer).",
        )
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
