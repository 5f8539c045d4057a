"""The MQTT broker's rule webhook: `POST /ingest` (and `/ingest/`), on the public host and on
tenant hosts, on the lean device path.

The broker posts one item, or a list of up to MAX_ITEMS, in any of the shapes seeds 000 and 001
configure it to send:

    {"device_id", "sensor_id", "tenant", "value", "unit", "timestamp"}      seed 000's payload
    {"topic", "value", "unit", "timestamp"}                                  seed 000's rule SQL
    {"client_id", "topic", "payload", "ts"}                                  seed 001's rule SQL
                                         (SELECT clientid as client_id, topic, payload, timestamp as ts)

An item with a topic is decoded by portal.facilities.topics.decode(), the code the bridge runs
for the same MQTT message, and stored by topics.store(): both paths store the same readings (and
create the same site, asset and device on first sight). The tenant is the host's on a tenant host
(an item naming another tenant is a dead letter there); on the public host it is the item's
`tenant`, else the topic's `tenants/{slug}/…`; input naming no active tenant is kept as a dead
letter in the public schema, as the bridge keeps it.

Authentication: `x-device-token` is the hex HMAC-SHA256 of the body keyed with INGESTION_SECRET,
or `Authorization: Bearer <INGESTION_SECRET>` from a broker that cannot sign (verify_signature);
without a configured secret nothing is accepted (401). Each device may send
FIELDWATCH_WEBHOOK_DEVICE_RATE requests (seed 000: 1,000 an hour); past it the request gets 429
with Retry-After and nothing of it is stored (the broker sends it again later).
"""

import hashlib
import hmac
import json
import re
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.utils import timezone
from django_tenants.utils import schema_context

from portal.api import ratelimit
from portal.api.endpoint import ApiError, api_endpoint, json_body
from portal.facilities import topics
from portal.tenancy.models import Tenant
from telemetry.deadletters import LetterBudget, sender_grant
from telemetry.formats import FormatError, parse_sensor_payload, parse_timestamp
from telemetry.ingest import IngestResult
from telemetry.models import DeadLetter

MAX_ITEMS = 5000
MAX_PAYLOAD_CHARS = 256 * 1024  # one MQTT message's payload inside an item
SOURCE = DeadLetter.Source.WEBHOOK


def verify_signature(request) -> None:
    """Seed 000's x-device-token (the hex HMAC-SHA256 of the body keyed with INGESTION_SECRET),
    or, for a broker that cannot sign (EMQX's HTTP action: its rule SQL has hashes but no keyed
    MAC, and its headers are fixed templates), `Authorization: Bearer <INGESTION_SECRET>`, the
    shared secret itself, as EMQX sends one to /api/mqtt/auth: over HTTPS or a private network
    only. A request carrying an x-device-token is judged by it alone."""
    secret = settings.INGESTION_SECRET
    if not secret:
        raise ApiError(
            401, "webhook_not_configured", "INGESTION_SECRET is not configured: the webhook accepts nothing."
        )
    given = request.META.get("HTTP_X_DEVICE_TOKEN", "").strip().lower()
    if given:
        expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, given):
            return
    else:
        scheme, _, bearer = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(bearer.strip().encode(), secret.encode()):
            return
    raise ApiError(
        401,
        "bad_signature",
        "x-device-token is not the HMAC-SHA256 of the body with the ingestion secret "
        "(or send Authorization: Bearer <the ingestion secret>).",
    )


SLUG = re.compile(r"^[a-z][a-z0-9-]{0,49}$")


def storable(text: str) -> str:
    """Text PostgreSQL can keep: no NUL, no lone surrogate (a dead letter keeps what came, readably)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def unstorable(*texts: str) -> bool:
    return any(storable(text) != text for text in texts)


def refused(path: str, raw: str, reason: str, detail: str, tenant_slug: str = "") -> topics.Message:
    slug = tenant_slug if SLUG.match(tenant_slug) else ""
    return topics.Message(topic=path, raw=storable(raw), tenant_slug=slug, reason=reason, detail=storable(detail))


def item_text(item) -> str:
    try:
        return storable(json.dumps(item, ensure_ascii=False, default=str)[:10000])
    except (TypeError, ValueError):
        return storable(str(item)[:10000])


def topic_payload(item: dict) -> bytes:
    """The MQTT payload of a topic item: seed 001's `payload` (text, or JSON the broker decoded),
    or seed 000's selected fields."""
    if "payload" in item:
        payload = item["payload"]
        text = payload if isinstance(payload, str) else json.dumps(payload)
    else:
        text = json.dumps({key: item[key] for key in ("value", "unit", "timestamp") if key in item})
    if len(text) > MAX_PAYLOAD_CHARS:
        raise FormatError("too_large", f"the payload is longer than {MAX_PAYLOAD_CHARS} characters")
    return text.encode("utf-8", "replace")


def decode_item(item, path: str, now: datetime) -> topics.Message:
    """One item as the bridge's Message: its tenant slug and readings, or why it cannot be stored."""
    raw = item_text(item)
    if not isinstance(item, dict):
        return refused(path, raw, "unknown_format", "each item must be an object")
    named = item.get("tenant")
    named = named.strip() if isinstance(named, str) else ""
    topic = item.get("topic")
    try:
        if topic is not None:
            if not isinstance(topic, str) or not topic or len(topic) > 300 or unstorable(topic):
                raise FormatError("unknown_topic", "the topic must be a text of at most 300 characters")
            sent_at = parse_timestamp(item.get("ts"), now) or now
            message = topics.decode(topic, topic_payload(item), sent_at)
            if named and message.tenant_slug and named != message.tenant_slug:
                return refused(
                    path, raw, "wrong_tenant", f"the item names {named!r}, its topic {message.tenant_slug!r}"
                )
            message.tenant_slug = message.tenant_slug or named
            return checked_ids(message, path, raw)
        for field in ("device_id", "sensor_id", "value"):
            if item.get(field) in (None, ""):
                raise FormatError("missing_field", f"the item has no {field!r}")
        reading = parse_sensor_payload(raw, str(item["device_id"]), str(item["sensor_id"]), topic=path, now=now)
        return checked_ids(topics.Message(topic=path, raw=raw, tenant_slug=named, readings=[reading]), path, raw)
    except FormatError as error:
        return refused(path, raw, error.reason, error.detail, named)


ID_LENGTH = 100  # Device.device_id and Sensor.key hold this many (found by the OpenAPI fuzz: a 500)


def checked_ids(message: topics.Message, path: str, raw: str) -> topics.Message:
    """A message whose tenant, device or sensor ids the database cannot hold is refused whole."""
    ids = [message.tenant_slug, *(r.device for r in message.readings), *(r.sensor for r in message.readings)]
    if unstorable(*ids) or (message.tenant_slug and not SLUG.match(message.tenant_slug)):
        return refused(path, raw, "invalid_id", "a tenant, device or sensor id holds characters that cannot be stored")
    if any(len(r.device) > ID_LENGTH or len(r.sensor) > ID_LENGTH for r in message.readings):
        return refused(path, raw, "invalid_id", f"a device or sensor id is longer than {ID_LENGTH} characters")
    if message.reason:
        message.raw, message.detail = storable(message.raw), storable(message.detail)
    return message


def devices_of(message: topics.Message, item) -> set[str]:
    devices = {reading.device for reading in message.readings}
    if not devices and isinstance(item, dict) and item.get("client_id"):
        devices = {str(item["client_id"])[:100]}
    return devices


def check_device_rates(keys: set[tuple[str, str]]) -> None:
    """Count one request for each (tenant, device) the body carries; 429 if any is over its rate.
    The cache key holds a digest: the ids come from outside, of any length and alphabet."""
    rate = settings.FIELDWATCH_WEBHOOK_DEVICE_RATE
    waits = [ratelimit.retry_after("webhook", device_key(slug, device), rate) for slug, device in keys]
    waits = [wait for wait in waits if wait is not None]
    if waits:
        wait = max(waits)
        raise ApiError(
            429,
            "rate_limited",
            f"A device of this request is over its rate; retry in {wait} s.",
            headers={"Retry-After": str(wait)},
        )


def device_key(slug: str, device: str) -> str:
    return hashlib.sha256(f"{slug}\x00{device}".encode("utf-8", "replace")).hexdigest()[:32]


def by_tenant(request, messages: list[topics.Message]) -> dict[str | None, list[topics.Message]]:
    """{schema (None: the public schema keeps them as dead letters): messages}."""
    host = request.tenant
    if not host.is_public:
        for message in messages:
            if message.tenant_slug not in ("", host.slug) and not message.reason:
                message.reason, message.detail = (
                    "wrong_tenant",
                    f"the item names tenant {message.tenant_slug!r}, not this host's",
                )
                message.readings = []
        return {host.schema_name: messages}
    slugs = {message.tenant_slug for message in messages if message.tenant_slug}
    schemas = dict(Tenant.objects.active().filter(slug__in=slugs).values_list("slug", "schema_name"))
    groups = defaultdict(list)
    for message in messages:
        schema = schemas.get(message.tenant_slug)
        if schema is None and not message.reason:
            named = message.tenant_slug
            message.reason = "unknown_tenant"
            message.detail = f"no active tenant {named!r}" if named else "neither the item nor its topic names a tenant"
            message.readings = []
        groups[schema].append(message)
    return groups


def store(groups: dict[str | None, list[topics.Message]]) -> IngestResult:
    """Each tenant's messages in its schema. What one request dead-letters is capped per schema
    (telemetry.deadletters: the first 100 and one summary letter), and rate-limited per tenant."""
    result = IngestResult()
    for schema, messages in groups.items():
        budget = LetterBudget(grant=sender_grant(f"webhook:{schema or 'public'}"))
        if schema is None:
            letters = [m.dead_letter(SOURCE) for m in messages]
            budget.extend(letters)
            with schema_context(settings.PUBLIC_SCHEMA_NAME), transaction.atomic():
                budget.write()
            result.rejected += len(letters)
            result.reasons.update(letter.reason for letter in letters)
            continue
        with schema_context(schema):
            result.add(topics.store(messages, source=SOURCE, budget=budget))
    return result


@api_endpoint(max_bytes=5 * 1024 * 1024)
def ingest(request):
    """Store the broker's readings; bad items are dead-lettered with their reason, the good ones kept."""
    verify_signature(request)
    body = json_body(request)
    items = body if isinstance(body, list) else [body]
    if len(items) > MAX_ITEMS:
        raise ApiError(413, "too_many_items", f"At most {MAX_ITEMS} readings per request.")
    now = timezone.now()
    messages = [decode_item(item, request.path, now) for item in items]
    host_slug = "" if request.tenant.is_public else request.tenant.slug
    check_device_rates(
        {(m.tenant_slug or host_slug, d) for m, item in zip(messages, items, strict=True) for d in devices_of(m, item)}
    )
    return JsonResponse(store(by_tenant(request, messages)).as_dict())
