"""The MQTT broker's rule webhook (POST /ingest/), and the API's health endpoints.

The broker forwards `{device_id, sensor_id, tenant, value, unit, timestamp}` (one, or a list)
with `x-device-token: <hex HMAC-SHA256 of the body, keyed with INGESTION_SECRET>`. Without a
configured secret nothing is accepted: the endpoint would otherwise be open to anyone.
"""

import hashlib
import hmac

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone

from portal.api.endpoint import ApiError, api_endpoint, json_body
from portal.core import health as core_health
from telemetry import ingest as ingest_path
from telemetry.formats import FormatError, parse_timestamp
from telemetry.ingest import ReadingIn
from telemetry.models import DeadLetter

MAX_ITEMS = 5000
REQUIRED = ("device_id", "sensor_id", "value")


def verify_signature(request) -> None:
    secret = settings.INGESTION_SECRET
    if not secret:
        raise ApiError(401, "webhook_not_configured", "INGESTION_SECRET is not configured: the webhook accepts nothing.")
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    given = request.META.get("HTTP_X_DEVICE_TOKEN", "").strip().lower()
    if not hmac.compare_digest(expected, given):
        raise ApiError(401, "bad_signature", "x-device-token is not the HMAC-SHA256 of the body with the ingestion secret.")


def item_problem(item) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return "unknown_format", "each item must be an object"
    for field in REQUIRED:
        if item.get(field) in (None, ""):
            return "missing_field", f"the item has no {field!r}"
    if item.get("tenant") not in (None, "", connection.tenant.slug):
        return "wrong_tenant", f"the item names tenant {item['tenant']!r}, not this host's"
    return None


@api_endpoint(max_bytes=5 * 1024 * 1024)
def ingest(request):
    """Store the webhook's readings; bad items are dead-lettered, the good ones kept."""
    verify_signature(request)
    body = json_body(request)
    items = body if isinstance(body, list) else [body]
    if len(items) > MAX_ITEMS:
        raise ApiError(413, "too_many_items", f"At most {MAX_ITEMS} readings per request.")
    now = timezone.now()
    readings, letters = [], []
    for item in items:
        problem = item_problem(item)
        ts = None
        if problem is None:
            try:
                ts = parse_timestamp(item.get("timestamp"), now) or now
            except FormatError as error:
                problem = (error.reason, error.detail)
        if problem:
            letters.append(DeadLetter(source=DeadLetter.Source.WEBHOOK, topic=request.path, payload=str(item)[:10000],
                                      reason=problem[0], detail=problem[1][:300],
                                      device_ref=str(item.get("device_id", ""))[:100] if isinstance(item, dict) else ""))
            continue
        readings.append(ReadingIn(str(item["device_id"]), str(item["sensor_id"]), ts, item["value"],
                                  unit=str(item.get("unit") or ""), raw=str(item)[:10000], topic=request.path))
    result = ingest_path.ingest(readings, source=DeadLetter.Source.WEBHOOK)
    if letters:
        DeadLetter.objects.bulk_create(letters)
        result.rejected += len(letters)
        result.reasons.update(letter.reason for letter in letters)
    return JsonResponse(result.as_dict())


@api_endpoint(methods=("GET",))
def health(request):
    return core_health.health(request)


@api_endpoint(methods=("GET",))
def health_detailed(request):
    return core_health.health_detailed(request)
