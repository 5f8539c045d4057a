"""The device HTTP API on tenant hosts, as devices in the field speak it (seed 003): handshake by
MAC address, idempotent usage events, legacy form posts, heartbeats.

Every refusal is a JSON error {"error": {"code", "message"}} with a 4xx, and is kept as a dead
letter (source http: the body, the reason, the device it claimed to be), so that the device page
shows what a device sent and why it was refused. device_endpoint() does both, for all four views.
"""

import functools
import hmac
import json
import logging
import math
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Func, JSONField, Value
from django.http import JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.http.request import RawPostDataException
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt

from portal.api import ratelimit
from portal.api.auth import authenticate_client, authenticate_device, bearer
from portal.api.endpoint import ApiError, api_endpoint, check_rate, content_length, json_body
from portal.api.models import KEY_PREFIX
from portal.audit.log import client_ip, record
from telemetry.bounds import OutOfBounds, clean_text, utc_moment
from telemetry.deadletters import sender_grant
from telemetry.formats import FormatError, parse_timestamp
from telemetry.models import (
    DeadLetter,
    Device,
    DeviceEvent,
    TelemetrySettings,
    hash_token,
)

logger = logging.getLogger(__name__)

MAX_BODY = 16 * 1024  # a device's JSON or form post is a few hundred bytes
PAYLOAD_LIMIT = 10 * 1024  # bytes of a refused body that its dead letter keeps
HANDSHAKE_RATE_MAC = "10/60"  # handshakes per MAC address; a device needs one per boot at most
HANDSHAKE_RATE_IP = "120/60"  # per client address: a site's devices behind one NAT all boot at once
REJECTED_RATE = "120/60"  # dead letters per client address, so a flood of bad requests cannot fill the table
TOUCH_EVERY = timedelta(seconds=5)  # last_seen / token_last_used_at are written at most this often
TREATMENTS = tuple(DeviceEvent.Treatment.values)  # computed once: the enum builds the list on every access
LEGACY_MODES = {"BASIC": "1", "STANDARD": "2", "PREMIUM": "3"}  # mode -> its countN / typeN fields
MAX_BIGINT = 2**63 - 1
# Bounds of what a device reports about itself (kept in Device.status and shown on its page)
MAX_UPTIME = 20 * 366 * 24 * 3600  # seconds: 20 years
MAX_COUNTER = 2**53 - 1  # the largest integer every JSON reader (the page's JavaScript too) keeps exactly


# --- one place for what every device endpoint does ---------------------------------------------


def device_endpoint(max_bytes: int = MAX_BODY):
    """api_endpoint() (CSRF-exempt, POST only, size limit, ApiError as JSON), and a dead letter
    for every refused request. A view sets request.device_ref to the MAC or device id the request
    claims as soon as it knows it, so the letter shows on that device's page."""

    def decorator(view):
        checked = api_endpoint(methods=("POST",), max_bytes=max_bytes)(view)

        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            response = checked(request, *args, **kwargs)
            if response.status_code >= 400:
                keep_rejected(request, response)
            return response

        wrapped.max_bytes = max_bytes
        return wrapped

    return decorator


def keep_rejected(request, response) -> None:
    """Store a refused request as a dead letter, with the code and message it was answered with.

    Not for 429: writing a row per throttled request would do the flood's work for it. Per
    client address at most REJECTED_RATE letters are kept; the caller still gets its answer.
    """
    if response.status_code == 429:
        return
    if ratelimit.retry_after("rejected", client_ip(request) or "-", REJECTED_RATE) is not None:
        logger.warning("not keeping a refused request to %s from %s: too many", request.path, client_ip(request))
        return
    device_ref = getattr(request, "device_ref", "") or ""
    if device_ref and not sender_grant(f"device:{clean_text(device_ref)[:100]}")(1):
        logger.warning("not keeping a refused request to %s for %s: too many", request.path, device_ref[:100])
        return
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        error = {}
    DeadLetter.objects.create(
        source=DeadLetter.Source.HTTP,
        topic=clean_text(request.path)[:300],
        payload=body_excerpt(request, response),
        reason=str(error.get("code") or f"http_{response.status_code}")[:40],
        detail=clean_text(str(error.get("message") or ""))[:300],
        device_ref=clean_text(getattr(request, "device_ref", "") or "")[:100],
    )


def body_excerpt(request, response) -> str:
    """The first PAYLOAD_LIMIT bytes of the body, as text PostgreSQL accepts."""
    if response.status_code == 413 or content_length(request) is None:  # refused before reading the body
        return ""
    try:
        raw = request.body
    except RawPostDataException:  # a multipart post was parsed as a stream; its fields are what is left
        raw = request.POST.urlencode().encode()  # empty if it could not be parsed
    return clean_text(raw[:PAYLOAD_LIMIT].decode("utf-8", errors="replace"))


def claimed(value, mac: bool = False) -> str:
    """The device id (or MAC address) the input claims, for its dead letter (never trusted)."""
    if not isinstance(value, str):
        return ""
    return (mac and normalise_mac(value)) or value.strip()[:100]


def form_data(request):
    """The body as a form post (urlencoded or multipart); ApiError 400 if it cannot be read."""
    try:
        return request.POST
    except (MultiPartParserError, SuspiciousOperation) as error:  # also too many fields
        raise ApiError(400, "malformed_form", f"The body is not a readable form post: {error}") from None


def json_object(request, empty_ok: bool = False) -> dict:
    """The body as a JSON object; ApiError 400 otherwise."""
    if empty_ok and not request.body.strip():
        return {}
    data = json_body(request)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "The body must be a JSON object.")
    return data


# --- reading fields ------------------------------------------------------------------------------

MAC_PATTERN = re.compile(r"[0-9A-Fa-f]{2}([:-]?)[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}")
INTEGER_PATTERN = re.compile(r"[+-]?\d{1,19}")
TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def normalise_mac(value) -> str | None:
    """ "ec-e3-34-46-2b-c0" or "ECE334462BC0" -> "EC:E3:34:46:2B:C0"; None if it is not a MAC."""
    if not isinstance(value, str) or not MAC_PATTERN.fullmatch(value.strip()):
        return None
    digits = re.sub("[:-]", "", value.strip()).upper()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


class Fields:
    """Typed values read out of a JSON object or a form post, one message per bad field.

    Each reader returns the clean value, or None (absent or invalid: the message is in `errors`);
    check() raises ApiError 400 listing them all, with `fields` {name: message} for programs.
    """

    def __init__(self, data):
        self.data, self.errors = data, {}

    def _raw(self, name, required):
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                self.errors[name] = "required"
            return None
        return value

    def _bad(self, name, message):
        self.errors[name] = message
        return None

    def text(self, name, max_length, required=True):
        value = self._raw(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            return self._bad(name, "must be a string")
        value = value.strip()
        if not value and required:
            return self._bad(name, "required")
        if len(value) > max_length:
            return self._bad(name, f"at most {max_length} characters")
        if value != clean_text(value):
            return self._bad(name, "must not contain NUL or unpaired surrogate characters")
        return value

    def integer(self, name, minimum=0, maximum=MAX_BIGINT, required=True):
        value = self._raw(name, required)
        if value is None:
            return None
        if isinstance(value, str) and INTEGER_PATTERN.fullmatch(value.strip()):
            value = int(value.strip())  # str.strip() removes more than int() skips ("3\x1e")
        if isinstance(value, bool) or not isinstance(value, int):
            return self._bad(name, "must be a whole number")
        if value < minimum:
            return self._bad(name, f"must be {minimum} or more")
        if value > maximum:
            return self._bad(name, f"must be {maximum} or less")
        return value

    def number(self, name, minimum=0.0, maximum=1e12, required=False):
        value = self._raw(name, required)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return self._bad(name, "must be a number")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return self._bad(name, "must be a number")
        if not minimum <= value <= maximum:
            return self._bad(name, f"must be between {minimum:g} and {maximum:g}")
        return value

    def boolean(self, name, required=False):
        value = self._raw(name, required)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, str | int) else ""
        if text in TRUE or text in FALSE:
            return text in TRUE
        return self._bad(name, "must be true or false")

    def choice(self, name, choices, required=True):
        value = self._raw(name, required)
        if value is None:
            return None
        if not isinstance(value, str) or value not in choices:
            return self._bad(name, f"must be one of {', '.join(choices)}")
        return value

    def mac(self, name, required=True):
        value = self._raw(name, required)
        if value is None:
            return None
        mac = normalise_mac(value)
        if mac is None:
            return self._bad(
                name, "must be a MAC address such as EC:E3:34:46:2B:C0 (separated by : or - or not at all)"
            )
        return mac

    def timestamp(self, name, format=None, required=True):
        """ISO 8601 (a time without offset is UTC), or `format` in UTC; between 1970 and 2100."""
        value = self._raw(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            return self._bad(name, "must be a string")
        expected = (
            f"a UTC time such as {datetime(2025, 9, 16, 12, 34, 56).strftime(format)}"
            if format
            else "an ISO 8601 time such as 2025-09-16T12:34:56Z"
        )
        try:
            moment = datetime.strptime(value.strip(), format) if format else parse_datetime(value.strip())
        except ValueError:
            moment = None
        if moment is None:
            return self._bad(name, f"must be {expected}")
        try:
            return utc_moment(moment)
        except OutOfBounds as error:
            return self._bad(name, str(error).removeprefix("the time "))

    def check(self, code: str) -> None:
        if self.errors:
            message = "; ".join(f"{name}: {text}" for name, text in self.errors.items()) + "."
            raise ApiError(400, code, message, fields=self.errors)


# --- writing -------------------------------------------------------------------------------------


class JsonMerge(Func):
    """`status || patch`: the patch's keys replace the stored ones inside one UPDATE, so two
    writers (a heartbeat and a status post) never lose each other's keys."""

    arg_joiner = " || "
    template = "(%(expressions)s)"
    output_field = JSONField()


def merged_status(patch: dict) -> JsonMerge:
    return JsonMerge(
        F("status"), Value({key: value for key, value in patch.items() if value is not None}, output_field=JSONField())
    )


def store_event(cursor, device: Device, event_id: str, **fields) -> int:
    """Insert the event unless its event_id is stored already; return the id of the device that
    owns event_id (this one, or another that used it first).

    The unique constraint decides, not a look before the insert: of 50 copies arriving at once
    one inserts and the others wait for it to commit and then do nothing.
    """
    table = connection.ops.quote_name(DeviceEvent._meta.db_table)
    columns = ["event_id", "device_id", "event", "treatment", "counter", "ts", "firmware", "source", "received_at"]
    values = [
        event_id,
        device.pk,
        fields["event"],
        fields["treatment"],
        fields["counter"],
        fields["ts"],
        fields["firmware"],
        fields["source"],
        timezone.now(),
    ]
    for _ in range(3):  # the owner's row may vanish (device deleted) between the two statements
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING device_id",
            values,
        )
        row = cursor.fetchone()
        if row is None:  # a separate statement: it sees the row a concurrent request just committed
            cursor.execute(f"SELECT device_id FROM {table} WHERE event_id = %s", [event_id])
            row = cursor.fetchone()
        if row is not None:
            return row[0]
    raise ApiError(409, "event_conflict", "The event could not be stored; send it again.")


def device_for_token(cursor, request) -> Device:
    """authenticate_device() for the busiest endpoint: the same lookup by hash and constant-time
    check, as one plain statement on the cursor the insert uses next. (The ORM's query building
    and a second cursor's search_path round trip were a third of the endpoint's time.)"""
    raw = bearer(request)
    if raw and len(raw) <= 200:
        digest = hash_token(raw)
        cursor.execute(
            f"SELECT id, device_id, firmware, last_seen, token_last_used_at, token_hash FROM {connection.ops.quote_name(Device._meta.db_table)} "
            "WHERE token_hash = %s",
            [digest],
        )
        row = cursor.fetchone()
        if row is not None and hmac.compare_digest(row[5], digest):
            return Device(
                id=row[0],
                device_id=row[1],
                firmware=row[2],
                last_seen=row[3],
                token_last_used_at=row[4],
                token_hash=row[5],
            )
    raise ApiError(401, "invalid_token", "A valid device token is required (Authorization: Bearer <token>).")


def touch(device: Device, now: datetime, firmware: str | None = None, token: bool = True, **changes) -> None:
    """Record that the device was heard from, in one UPDATE: last_seen (and token_last_used_at
    when it used its token), firmware when it changed, and `changes`.

    Without other changes the times are written at most every TOUCH_EVERY: a device posting
    many events a second would otherwise queue every request on its one row's lock.
    """

    def stale(moment):
        return moment is None or now - moment >= TOUCH_EVERY

    if stale(device.last_seen) or (token and stale(device.token_last_used_at)):
        changes["last_seen"] = now
        if token:
            changes["token_last_used_at"] = now
    if firmware and firmware != device.firmware:
        changes["firmware"] = firmware
    if changes:
        Device.objects.filter(pk=device.pk).update(**changes)


# --- the endpoints -------------------------------------------------------------------------------


@device_endpoint()
def handshake(request):
    """POST /api/handshake/ {mac, firmware} -> {device_id, token, assigned}.

    Steps: read and normalise the MAC; rate-limit per client address and per MAC; lock the
    device of this MAC, or create it unregistered; refuse a known MAC unless the request carries
    its current token (rotation), an admin reset its provisioning, or the tenant re-provisions by
    MAC (TelemetrySettings.reprovision_by_mac: audited and flagged); issue the token (shown in
    this response only, stored as a hash) and note firmware and times. `assigned` stays false
    until an administrator assigns the device (seed 003: "admin must assign device_id first").
    """
    data = json_object(request)
    request.device_ref = claimed(data.get("mac"), mac=True)
    fields = Fields(data)
    mac = fields.mac("mac")
    firmware = fields.text("firmware", 50, required=False)
    fields.check("invalid_handshake")
    request.device_ref = mac
    check_rate("handshake-ip", client_ip(request) or "-", HANDSHAKE_RATE_IP)
    check_rate("handshake-mac", mac, HANDSHAKE_RATE_MAC)
    now = timezone.now()
    with transaction.atomic():
        device = Device.objects.select_for_update().filter(mac=mac).first()
        created = device is None
        if created:
            device, created = create_unregistered(mac)
        reprovisioned = not created and not may_handshake_again(device, bearer(request))
        if reprovisioned and not TelemetrySettings.current().reprovision_by_mac:
            raise ApiError(
                403,
                "already_provisioned",
                "This MAC address is already provisioned. Send the device's current token (Authorization: Bearer) "
                "to get a new one, or ask an administrator to reset provisioning on the device's page.",
            )
        token = device.issue_token()  # the old token stops working
        if reprovisioned:  # the tenant re-provisions by MAC: flagged on the device's page, audited
            device.reprovisioned_at = now
            device.save(update_fields=["reprovisioned_at"])
            record(request, "device.reprovisioned", device, {"mac": mac, "firmware": firmware or device.firmware})
        device.firmware = firmware or device.firmware
        device.last_handshake_at = device.last_seen = now
        device.save(
            update_fields=[
                "token_hash",
                "token_created_at",
                "token_last_used_at",
                "provisioning_reset_at",
                "firmware",
                "last_handshake_at",
                "last_seen",
            ]
        )
    return JsonResponse({"device_id": device.device_id, "token": token, "assigned": device.assigned})


def create_unregistered(mac: str) -> tuple[Device, bool]:
    """A new unregistered counter for this MAC, locked; or, when a concurrent handshake made it
    first, that one (and False)."""
    base = "dev-" + mac.replace(":", "").lower()
    device_id, n = base, 1
    while Device.objects.filter(device_id=device_id).exists():  # taken by a device without this MAC
        n += 1
        device_id = f"{base}-{n}"
    try:
        with transaction.atomic():
            return Device.objects.create(device_id=device_id, mac=mac, kind=Device.Kind.COUNTER), True
    except IntegrityError:
        device = Device.objects.select_for_update().filter(mac=mac).first()
        if device is None:  # the id, not the MAC, was taken in between
            raise ApiError(
                409, "handshake_conflict", "Another device registered at the same moment; try again."
            ) from None
        return device, False


def may_handshake_again(device: Device, raw_token: str) -> bool:
    """A known MAC gets a new token with its current token (rotation), after a provisioning reset,
    or when it never had one (it was first heard through a legacy post)."""
    if device.token_hash is None and device.last_handshake_at is None:
        return True
    if raw_token and device.token_hash and hmac.compare_digest(device.token_hash, hash_token(raw_token)):
        return True
    return device.provisioning_reset_at is not None


@device_endpoint()
def events(request):
    """POST /api/device/events/ (Bearer) {event_id, event, treatment, counter, ts, firmware,
    device_id?} -> {"ack": true, "event_id"}; a repeat of an event_id gets the same ack and
    stores nothing.

    The busiest endpoint, so its queries are counted: token lookup and insert on one cursor
    (plus a look-up of the owner for a repeat), and an UPDATE of last_seen at most every
    TOUCH_EVERY.
    """
    data = json_object(request)
    request.device_ref = claimed(data.get("device_id"))
    with connection.cursor() as cursor:
        device = device_for_token(cursor, request)
        request.device_ref = device.device_id
        check_rate("device", device.device_id, settings.FIELDWATCH_DEVICE_RATE)
        if data.get("device_id") not in (None, "", device.device_id):
            raise ApiError(403, "device_mismatch", "device_id is not the device this token belongs to.")
        fields = Fields(data)
        event_id = fields.text("event_id", 100)
        event = fields.text("event", 50, required=False) or "treatment"
        treatment = fields.choice("treatment", TREATMENTS)
        counter = fields.integer("counter")
        ts = fields.timestamp("ts")
        firmware = fields.text("firmware", 50, required=False)
        fields.check("invalid_event")
        owner = store_event(
            cursor,
            device,
            event_id,
            event=event,
            treatment=treatment,
            counter=counter,
            ts=ts,
            firmware=firmware or device.firmware,
            source="api",
        )
    if owner != device.pk:
        raise ApiError(409, "event_id_taken", "This event_id was already used by another device.")
    touch(device, timezone.now(), firmware)
    return JsonResponse({"ack": True, "event_id": event_id})


@device_endpoint()
def legacy_iot(request):
    """POST /api/iot/, form-encoded (old firmware): mode, macaddr, type1-3, count1-3, timestamp
    (UTC), rtc_available, sd_available -> {"status": "ok"}.

    Every post is kept as an event whose event_id is made from MAC, time and mode, so a repeated
    post stores nothing: a treatment mode as a usage event, mode=status as a status event (no
    usage; the events page can leave them out); both update the device's status.
    Authenticated by the device's token when it sends one. Without one (old firmware cannot), and
    while the tenant's telemetry settings allow it, a known MAC is accepted and flagged on its
    page, and an unknown MAC becomes a new unregistered device (seed 003: the legacy firmware
    never handshakes), so a fielded device loses nothing and shows under unregistered devices.
    """
    data = form_data(request)
    request.device_ref = claimed(data.get("macaddr"), mac=True)
    fields = Fields(data)
    mode = fields.choice("mode", [*LEGACY_MODES, "status"])
    mac = fields.mac("macaddr")
    moment = fields.timestamp("timestamp", format="%Y-%m-%d %H:%M:%S")
    counts = {
        n: fields.integer(f"count{n}", maximum=MAX_COUNTER, required=mode in LEGACY_MODES and n == LEGACY_MODES[mode])
        for n in "123"
    }
    on_times = {n: fields.number(f"type{n}") for n in "123"}
    rtc, sd = fields.boolean("rtc_available"), fields.boolean("sd_available")
    fields.check("invalid_legacy_post")
    device, with_token = legacy_device(request, mac)
    request.device_ref = device.device_id
    check_rate("device", device.device_id, settings.FIELDWATCH_DEVICE_RATE)
    now = timezone.now()
    treatment = mode if mode in LEGACY_MODES else ""
    event_id = f"legacy-{mac.replace(':', '').lower()}-{moment:%Y%m%d%H%M%S}-{mode}"
    with connection.cursor() as cursor:
        owner = store_event(
            cursor,
            device,
            event_id,
            event="treatment" if treatment else "status",
            treatment=treatment,
            counter=counts[LEGACY_MODES[mode]] if treatment else None,
            ts=moment,
            firmware=device.firmware,
            source="legacy",
        )
    if owner != device.pk:
        raise ApiError(409, "event_id_taken", "This post's event was already stored for another device.")
    names = {"1": "basic", "2": "standard", "3": "premium"}
    status = {f"current_count_{names[n]}": counts[n] for n in "123"} | {
        f"on_time_{names[n]}": on_times[n] for n in "123"
    }
    status |= {
        "rtc_available": rtc,
        "sd_card_available": sd,
        "device_timestamp": moment.isoformat(),
        "mode": mode,
        "reported_at": now.isoformat(),
    }
    changes = {"status": merged_status(status), "last_seen": now}
    if not with_token:
        changes["legacy_tokenless_at"] = now
    touch(device, now, token=with_token, **changes)
    return JsonResponse({"status": "ok"})


def legacy_device(request, mac: str) -> tuple[Device, bool]:
    """The device a legacy post comes from, and whether it proved itself with its token."""
    if bearer(request):
        device = authenticate_device(request)
        if device.mac != mac:
            raise ApiError(
                403, "device_mismatch", "macaddr is not the MAC address of the device this token belongs to."
            )
        return device, True
    if not TelemetrySettings.current().accept_tokenless_legacy:
        raise ApiError(
            401,
            "token_required",
            "This organisation requires the device's token (Authorization: Bearer) on legacy posts.",
        )
    device = Device.objects.filter(mac=mac).first()
    if device is None:
        with transaction.atomic():
            device, _ = create_unregistered(mac)
    return device, False


@device_endpoint()
def heartbeat(request, device_id):
    """POST /api/devices/<device_id>/heartbeat/ (Bearer) {uptime, wifi: {rssi, connected},
    firmware, timestamp}, all optional -> {"status": "ok"}; kept in the device's status.

    Seed 000's devices have no handshake token: for them the tenant's API key or a member's access
    token vouches instead (heartbeat_caller), and `timestamp` says when the device was alive."""
    request.device_ref = claimed(device_id)
    device, by_token = heartbeat_device(request, device_id)
    check_rate("device", device.device_id, settings.FIELDWATCH_DEVICE_RATE)
    data = json_object(request, empty_ok=True)
    fields = Fields(data)
    now = timezone.now()
    alive_at = heartbeat_time(data.get("timestamp"), now, fields)
    uptime = fields.integer("uptime", maximum=MAX_UPTIME, required=False)
    firmware = fields.text("firmware", 50, required=False)
    wifi = data.get("wifi") or {}
    if not isinstance(wifi, dict):
        fields.errors["wifi"] = 'must be an object such as {"rssi": -61, "connected": true}'
        wifi = {}
    wifi_fields = Fields(wifi)
    rssi = wifi_fields.integer("rssi", minimum=-200, maximum=200, required=False)
    connected = wifi_fields.boolean("connected")
    fields.errors |= {f"wifi.{name}": text for name, text in wifi_fields.errors.items()}
    fields.check("invalid_heartbeat")
    status = {
        "uptime_seconds": uptime,
        "wifi_rssi": rssi,
        "wifi_connected": connected,
        "heartbeat_at": alive_at.isoformat(),
    }
    seen = {"last_seen": alive_at} if device.last_seen is None or alive_at > device.last_seen else {}
    used = {"token_last_used_at": now} if by_token else {}
    # the device's own time of life decides last_seen (touch() never moves it back)
    touch(device, alive_at, firmware, token=by_token, status=merged_status(status), **seen, **used)
    return JsonResponse({"status": "ok"})


def heartbeat_device(request, device_id: str) -> tuple[Device, bool]:
    """The device a heartbeat is for, and whether its own token said so. A device token must be
    the named device's; otherwise an API key or access token of this tenant names the device."""
    raw = bearer(request)
    device = Device.objects.for_token(raw) if raw and not raw.startswith(KEY_PREFIX) else None
    if device is not None:
        if device.device_id != device_id:
            raise ApiError(
                403, "device_mismatch", "The address names another device than the one this token belongs to."
            )
        return device, True
    if not raw and not request.META.get("HTTP_X_API_KEY"):
        raise ApiError(401, "invalid_token", "A valid device token is required (Authorization: Bearer <token>).")
    authenticate_client(request)  # 401 unless a key or member's token of this tenant
    found = Device.objects.filter(device_id=device_id).first() if "\x00" not in device_id else None
    if found is None:
        raise ApiError(404, "unknown_device", "This organisation has no device with this id.")
    return found, False


def heartbeat_time(value, now: datetime, fields) -> datetime:
    """The optional `timestamp` (seed 000): when the device was alive; not ahead of now by more
    than a minute of clock skew, nor older than a day (then it says nothing about now)."""
    if value in (None, ""):
        return now
    try:
        moment = parse_timestamp(value, now)
    except FormatError as error:
        fields.errors["timestamp"] = error.detail
        return now
    if moment is None or not now - timedelta(days=1) <= moment <= now + timedelta(minutes=1):
        fields.errors["timestamp"] = "must be within the last day (ISO 8601 or epoch seconds)"
        return now
    return min(moment, now)
