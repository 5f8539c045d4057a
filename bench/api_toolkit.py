"""Per-request cost of the JSON API toolkit (django-ninja) against the hand-written device path.

    .venv/bin/python bench/api_toolkit.py [--requests 2000] [--rounds 5]

Two measurements, side by side in one run, on a bench tenant of their own:

1. The framework alone: the same work (a device posts a usage event: token look-up, field
   validation, the idempotent insert of portal.api.device_views.store_event) as the hand-written
   view, and as a ninja route built with the toolkit (pydantic schema with the same bounds,
   HttpBearer auth, the toolkit's error shape and guard), both called as WSGI views with a
   ready request, so the difference is what ninja adds per request.
2. Whole requests through Django's handler with its middleware, for context: the device path
   (lean middleware, POST /api/device/events/) and a toolkit route on the people's stack
   (GET /api/outlets/?limit=10 with an API key: sessions, CSRF, tenant access, role check).

Each case runs `--requests` requests per round, cases interleaved, best round kept (a loaded
machine slows rounds, not the code). Wall time and this process's CPU time per request.
"""

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after the project: bench/bridge.py must not hide the bridge package
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "1")

from common import drop_tenants, use_bench_database

use_bench_database("apitoolkit")

import django

django.setup()

import json
from datetime import datetime

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client, RequestFactory
from django.utils import timezone
from ninja import Field
from ninja.security import HttpBearer

from portal.api import device_views, toolkit
from portal.api.endpoint import ApiError
from portal.api.models import ApiKey
from portal.outlets.models import Outlet
from portal.tenancy.provisioning import create_tenant
from telemetry.models import Device, DeviceEvent

SLUG = "bench-apitoolkit"


# --- the same endpoint, built with the toolkit ----------------------------------------------------


class DeviceToken(HttpBearer):
    def authenticate(self, request, token):
        with connection.cursor() as cursor:
            return device_views.device_for_token(cursor, request)


class EventIn(toolkit.Schema):
    device_id: toolkit.text(100) | None = None
    event_id: toolkit.text(100, min_length=1)
    event: toolkit.text(50) = "treatment"
    treatment: str = Field(pattern="^(BASIC|STANDARD|PREMIUM)$")
    counter: int = Field(ge=0, le=2**63 - 1)
    ts: datetime
    firmware: toolkit.text(50) | None = None


class Ack(toolkit.Schema):
    ack: bool
    event_id: str


def ninja_view():
    router = toolkit.Router()

    @router.post("/bench/events/", response=Ack, auth=DeviceToken())
    def events(request, payload: EventIn):
        device = request.auth
        with connection.cursor() as cursor:
            owner = device_views.store_event(
                cursor,
                device,
                payload.event_id,
                event=payload.event,
                treatment=payload.treatment,
                counter=payload.counter,
                ts=payload.ts,
                firmware=payload.firmware or device.firmware,
                source="api",
            )
        if owner != device.pk:
            raise ApiError(409, "event_id_taken", "This event_id was already used by another device.")
        device_views.touch(device, timezone.now(), payload.firmware)
        return {"ack": True, "event_id": payload.event_id}

    api = toolkit.build_api([router], namespace="bench-toolkit")
    (pattern,) = toolkit.urls(api)[0]
    return pattern.callback


# --- measuring ------------------------------------------------------------------------------------


def event_body() -> bytes:
    return json.dumps(
        {"event_id": uuid.uuid4().hex, "treatment": "BASIC", "counter": 1, "ts": "2026-11-30T12:00:00Z"}
    ).encode()


def timed(call, count: int) -> tuple[float, float]:
    """(wall µs, CPU µs) per call over `count` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        call()
    return (time.perf_counter() - wall) / count * 1e6, (time.process_time() - cpu) / count * 1e6


def check(response, status: int = 200):
    code = response.status_code
    if code != status:
        raise SystemExit(f"unexpected {code}: {getattr(response, 'content', b'')[:300]!r}")
    return response


def cases(tenant, token: str, raw_key: str) -> dict:
    factory = RequestFactory()
    ninja_events = ninja_view()
    host = f"{SLUG}.{settings.BASE_DOMAIN}"

    def view_request(path):
        request = factory.post(
            path, event_body(), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST=host
        )
        request.tenant = tenant
        return request

    device_client = Client(HTTP_HOST=host)
    people_client = Client(HTTP_HOST=host)

    return {
        "hand_view": lambda: check(device_views.events(view_request("/api/device/events/"))),
        "ninja_view": lambda: check(ninja_events(view_request("/bench/events/"))),
        "hand_request": lambda: check(
            device_client.post(
                "/api/device/events/",
                event_body(),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {token}",
            )
        ),
        "ninja_request": lambda: check(people_client.get("/api/outlets/", {"limit": 10}, HTTP_X_API_KEY=raw_key)),
    }


def run(requests: int, rounds: int) -> dict:
    tenant = create_tenant("Bench API toolkit", SLUG)
    connection.set_tenant(tenant)
    with connection.cursor() as cursor:  # what is measured is the framework, not the disk's fsync
        cursor.execute("SET synchronous_commit TO off")
    device = Device.objects.create(device_id="bench-counter", mac="02:00:00:00:0B:01", kind=Device.Kind.COUNTER)
    token = device.issue_token()
    device.save()
    _, raw_key = ApiKey.issue("bench", role="viewer")
    Outlet.objects.bulk_create([Outlet(name=f"Outlet {n}") for n in range(10)])
    calls = cases(tenant, token, raw_key)
    for call in calls.values():  # warm: imports, caches, the first connection's search_path
        for _ in range(20):
            call()
    best = {name: (float("inf"), float("inf")) for name in calls}
    for number in range(rounds):
        for name, call in calls.items():
            connection.set_tenant(tenant)
            best[name] = min(best[name], timed(call, requests))
        print(f"round {number + 1}: " + ", ".join(f"{name} {best[name][0]:.0f} µs" for name in calls), flush=True)
    stored = DeviceEvent.objects.count()
    expected = 3 * (requests * rounds + 20)  # three of the cases store an event per call
    if stored != expected:
        raise SystemExit(f"stored {stored} events, expected {expected}")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per case and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    settings.DEBUG = False  # no query log: measure what production runs
    settings.ALLOWED_HOSTS = ["*"]
    settings.FIELDWATCH_DEVICE_RATE = settings.FIELDWATCH_KEY_RATE = f"{10**9}/60"
    drop_tenants(slug=SLUG)
    try:
        best = run(args.requests, args.rounds)
    finally:
        drop_tenants(slug=SLUG)
    hand, ninja = best["hand_view"], best["ninja_view"]
    print(f"figure hand_view_us {hand[0]:.0f} µs goal -")
    print(f"figure ninja_view_us {ninja[0]:.0f} µs goal -")
    print(f"figure ninja_overhead_us {ninja[0] - hand[0]:.0f} µs goal 500")
    print(f"figure ninja_overhead_cpu_us {ninja[1] - hand[1]:.0f} µs goal 500")
    print(f"figure ninja_over_hand {ninja[0] / hand[0]:.2f} x goal -")
    print(f"figure hand_view_cpu_us {hand[1]:.0f} µs goal -")
    print(f"figure ninja_view_cpu_us {ninja[1]:.0f} µs goal -")
    for name in ("hand_request", "ninja_request"):
        print(f"figure {name}_us {best[name][0]:.0f} µs goal -")
        print(f"figure {name}_cpu_us {best[name][1]:.0f} µs goal -")


if __name__ == "__main__":
    main()
