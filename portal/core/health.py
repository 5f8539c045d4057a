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


CHECKS = {"database": check_database, "queue": check_queue}


@never_cache
def health(request):
    started = time.monotonic()
    results = {name: check() for name, check in CHECKS.items()}
    healthy = all(ok for ok, _ in results.values())
    body = {
        "status": "ok" if healthy else "error",
        "version": settings.VERSION,
        "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in results.items()},
        "ms": round((time.monotonic() - started) * 1000, 1),
    }
    return JsonResponse(body, status=200 if healthy else 503)
