"""MQTT telemetry topics → the facilities hierarchy → the ingest path.

    tenants/{tenant}/sites/{site}/assets/{asset}/telemetry   SenML or the plain object
    tenants/{tenant}/devices/{device}/sensors/{sensor}       {"value", "unit", "timestamp"} or a number

This is the facilities app's topic handler for the bridge (bridge/registry.py: batched lane).
decode() reads one message without touching the database; store() writes a batch of decoded
messages of one tenant inside its schema: it creates the site, asset, device and binding on
first sight, sends every reading through telemetry.ingest.ingest(), and keeps whatever could not
be read as a dead letter with its reason. The bridge and the dead-letter replay both use them.
"""

import threading
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction

from portal.facilities.models import Asset, DeviceBinding, Site
from telemetry.deadletters import per_message
from telemetry.formats import FormatError, parse_asset_payload, parse_sensor_payload
from telemetry.ingest import IngestResult, ReadingIn, ingest
from telemetry.models import DeadLetter, Device

SUBSCRIPTIONS = [
    "tenants/+/sites/+/assets/+/telemetry",
    "tenants/+/devices/+/sensors/+",
]


@dataclass
class Message:
    """One MQTT message, decoded: its readings, or the reason it cannot be stored."""

    topic: str
    raw: str
    tenant_slug: str = ""
    readings: list[ReadingIn] = field(default_factory=list)
    site: str = ""
    asset: str = ""
    reason: str = ""
    detail: str = ""

    def dead_letter(self, source: str = DeadLetter.Source.MQTT) -> DeadLetter:
        letter = DeadLetter(
            source=source,
            topic=self.topic[:300],
            payload=self.raw,
            reason=self.reason,
            detail=self.detail[:300],
        )
        parts = self.topic.split("/")  # tenants/{tenant}/devices/{device}/…: whose allowance it counts against
        letter.sender = parts[3][:100] if len(parts) > 3 and parts[2] == "devices" else ""
        return letter


def decode(topic: str, payload: bytes, now: datetime) -> Message:
    raw = payload.decode("utf-8", "replace")
    parts = topic.split("/")
    message = Message(topic=topic, raw=raw, tenant_slug=parts[1] if len(parts) > 1 and parts[0] == "tenants" else "")
    try:
        if (
            len(parts) == 7
            and parts[0] == "tenants"
            and parts[2] == "sites"
            and parts[4] == "assets"
            and parts[6] == "telemetry"
        ):
            message.site, message.asset = parts[3].strip(), parts[5].strip()
            if not message.site or not message.asset:
                raise FormatError(
                    "missing_site" if not message.site else "missing_asset", "the topic names no site or no asset"
                )
            message.readings = parse_asset_payload(payload, topic=topic, now=now)
        elif len(parts) == 6 and parts[0] == "tenants" and parts[2] == "devices" and parts[4] == "sensors":
            if not parts[3] or not parts[5]:
                raise FormatError("missing_field", "the topic names no device or no sensor")
            message.readings = [parse_sensor_payload(payload, parts[3], parts[5], topic=topic, now=now)]
        else:
            raise FormatError("unknown_topic", "the topic matches none of Fieldwatch's topics")
    except FormatError as error:
        message.readings, message.reason, message.detail = [], error.reason, error.detail
    return message


class HierarchyCache:
    """(schema, site, asset, device) tuples already ensured by this process."""

    def __init__(self):
        self.seen: set[tuple[str, str, str, str]] = set()
        self.lock = threading.Lock()

    def ensure(self, site_name: str, asset_tag: str, device_ids: set[str]) -> None:
        schema = connection.schema_name
        missing = {d for d in device_ids if (schema, site_name, asset_tag, d) not in self.seen}
        if not missing:
            return
        site, _ = Site.objects.get_or_create(name=site_name)
        asset, _ = Asset.objects.get_or_create(site=site, tag=asset_tag)
        Device.objects.bulk_create([Device(device_id=d) for d in missing], ignore_conflicts=True)
        for device in Device.objects.filter(device_id__in=missing):
            # a device already installed elsewhere stays there: moving it is a person's decision
            DeviceBinding.objects.get_or_create(device=device, defaults={"asset": asset})
        # remembered only once committed: a rolled-back batch must ensure them again
        transaction.on_commit(lambda: self.remember(schema, site_name, asset_tag, missing))

    def remember(self, schema, site_name, asset_tag, device_ids) -> None:
        with self.lock:
            self.seen.update((schema, site_name, asset_tag, d) for d in device_ids)

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()


hierarchy = HierarchyCache()


def store(
    messages: list[Message], now: datetime | None = None, source: str = DeadLetter.Source.MQTT, budget=None
) -> IngestResult:
    """Store decoded messages of the current tenant in one transaction (source: MQTT for the
    bridge, webhook for the broker's HTTP rule, which decodes the same messages).

    budget: a LetterBudget (telemetry.deadletters) for all of them (the webhook: one request),
    whose summary letter is written here; without, the ingest path caps each message's own."""
    readings, letters = [], []
    with transaction.atomic():
        for message in messages:
            if message.reason:
                letters.append(message.dead_letter(source))
                continue
            if message.asset:
                hierarchy.ensure(message.site, message.asset, {r.device for r in message.readings})
            readings.extend(message.readings)
        result = ingest(readings, source=source, now=now, budget=budget)
        if letters:
            if budget is None:  # one per message, as many as its sender may still write
                DeadLetter.objects.bulk_create(per_message(letters))
            else:
                budget.extend(letters)
            result.rejected += len(letters)
            result.reasons.update(letter.reason for letter in letters)
        if budget is not None:
            budget.write()
    return result


def replay(letters, now: datetime | None = None) -> IngestResult:
    """Send MQTT dead letters of the current tenant through decode() and store() again, after a
    fix (a sensor's range widened, ingest rules changed…). What still fails becomes a new dead
    letter with its reason; the replayed ones are marked so."""
    from django.utils import timezone

    now = now or timezone.now()
    slug = getattr(connection, "tenant", None) and connection.tenant.slug
    messages = []
    for letter in letters:
        message = decode(letter.topic, letter.payload.encode(), now)
        if message.tenant_slug != slug and not message.reason:
            message.reason, message.detail, message.readings = (
                "wrong_tenant",
                f"the topic names tenant {message.tenant_slug!r}",
                [],
            )
        messages.append(message)
    with transaction.atomic():
        result = store(messages, now)
        DeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).update(replayed_at=now)
    return result
