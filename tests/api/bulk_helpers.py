"""Builders for the bulk upload and analytics tests: seed 002's payloads, gzip, API keys."""

import gzip
import json
import zlib
from datetime import timedelta

from django.utils import timezone
from django_tenants.utils import schema_context

from portal.api.models import ApiKey

BULK_URL = "/api/v1/telemetry/bulk"


def make_key(schema: str = "acme", name: str = "test key") -> str:
    """A new API key of a tenant; returns the raw secret."""
    with schema_context(schema):
        return ApiKey.issue(name)[1]


def stamp(minutes_ago: float, now=None) -> str:
    moment = (now or timezone.now()) - timedelta(minutes=minutes_ago)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def equipment(
    uuid="eq-1",
    name="Freezer 1",
    sensors=(("s-temp", "temperatura"),),
    readings=3,
    value=lambda i, s: 20.0 + i + s,
    now=None,
) -> dict:
    """One equipment item with `readings` readings per sensor, a minute apart, ending a minute ago."""
    return {
        "equip_uuid": uuid,
        "equip_nome": name,
        "sensor": [
            {"sensor_uuid": key, "sensor_tipo": kind, "valor": value(i, s), "timestamp": stamp(readings - i, now)}
            for i in range(readings)
            for s, (key, kind) in enumerate(sensors)
        ],
    }


def gz(payload) -> bytes:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return gzip.compress(raw, compresslevel=6)


def post(client, body: bytes, key: str | None, *, compressed=True, path=BULK_URL, **headers):
    extra = {"HTTP_X_API_KEY": key} if key else {}
    if compressed:
        extra["HTTP_CONTENT_ENCODING"] = "gzip"
    return client.post(path, body, content_type="application/json", **extra, **headers)


def whitespace_bomb(gigabytes: float = 1.0) -> bytes:
    """Valid JSON ("[", spaces, "]") that decompresses to `gigabytes`, as a ~1 MB multi-member gzip.

    One member of 64 MiB of spaces is compressed once and repeated (gzip readers join members),
    so no gigabyte is ever held or compressed here."""
    member = zlib.compressobj(9, zlib.DEFLATED, 31)
    spaces = member.compress(b" " * (64 << 20)) + member.flush()
    count = max(1, int(gigabytes * 1024 / 64))
    return gzip.compress(b"[") + spaces * count + gzip.compress(b"]")
