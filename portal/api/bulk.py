"""Bulk telemetry upload (seed 002): POST /api/v1/telemetry/bulk and its aliases.

The body is a JSON list of equipment, plain or gzip (Content-Encoding: gzip, or just the gzip
magic bytes):

    [{"equip_uuid": "550e8400-…", "equip_nome": "Freezer 1",
      "sensor": [{"sensor_uuid": "660e8400-…", "sensor_tipo": "temperatura",
                  "valor": 25.5, "timestamp": "2024-01-15T10:00:00Z"}, …]}, …]

Steps of upload():

1. authenticate the client (API key or access token) and count it against its rate limit;
2. read the body in 64 KiB pieces. One of at most BULK_INLINE_BYTES (as received, compressed or
   not) is processed in the request, in one transaction: 200 with
   {written, duplicates, rejected, equipment, reasons}; an unreadable body (bad or truncated
   gzip, malformed JSON, a decompression bomb) is a 400/413 and leaves nothing written;
3. a larger one (up to BULK_MAX_BYTES) is streamed to the default storage, never held in
   memory whole, a BulkJob row is made and a Huey task processes the file (claim check):
   202 {job_id, status_url}. The status URL reports status, progress and error.

Storage is Django's default storage: a folder under MEDIA_ROOT (.data/media) by default. Any
S3-compatible store (MinIO, AWS S3, Ceph…) works by pointing STORAGES["default"] at it, e.g.
django-storages' "storages.backends.s3.S3Storage" with its bucket and endpoint options; nothing
here depends on the file system.

Processing (Loader) stream-parses the JSON with ijson, so neither the compressed nor the
decompressed upload is ever in memory at once, only the current batch:

- equipment are created on first sight: a device (device_id = equip_uuid, named equip_nome)
  bound to an asset (tag = equip_uuid, in the site "Bulk uploads", unless an asset of that
  tag exists already); sensors (key = sensor_uuid, type = sensor_tipo) are created by the
  ingest path. The tenant's "auto-create" telemetry setting turns all of that off;
- readings go through telemetry.ingest.ingest(source="bulk") in batches of BATCH;
- a bad item or reading (missing equip_uuid or sensor_uuid, "sensor" not a list, valor not a
  number, an unreadable timestamp…) is skipped, counted and kept as a dead letter with its
  reason; the valid ones around it are written;
- decompression is watched: more than MAX_EXPANDED_FACTOR × BULK_MAX_BYTES decompressed, or a
  ratio decompressed/compressed above BULK_MAX_RATIO, stops it with "decompression_bomb".

A job commits batch by batch, its progress with each. A job that fails part-way (bomb,
truncated gzip, malformed JSON further down the file) is marked failed with the error and
reports what was written so far; sending the whole file again is safe, as readings are
deduplicated on (sensor, timestamp) and only what is missing gets written.

The parser (yajl) refuses numbers beyond 64-bit integers or doubles (1e400) as malformed JSON:
such a body is refused whole.

Clients should put "equip_uuid" before "sensor" in each item (seed 002's clients do): the
readings of an item whose uuid comes after its sensor list wait in memory until it is seen.
"""

import gc
import gzip
import io
import json
import logging
import threading
import uuid
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import ijson
from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F
from django.http import JsonResponse, UnreadablePostError
from django.urls import reverse
from django.utils import timezone

from portal.api.auth import authenticate_client
from portal.api.endpoint import ApiError, api_endpoint, check_rate, content_length
from portal.api.models import BulkJob
from portal.api.ratelimit import key_rate
from portal.facilities.models import Asset, DeviceBinding, Site
from telemetry.bounds import storable
from telemetry.deadletters import LetterBudget, sender_grant
from telemetry.formats import FormatError, parse_timestamp
from telemetry.ingest import IngestResult, ReadingIn, ingest, sensor_cache
from telemetry.models import DeadLetter, Device, TelemetrySettings

log = logging.getLogger(__name__)

BATCH = 20_000  # readings per ingest call and per committed step of a job: per-batch costs (sensor
# look-up, dirty hours, commit) spread over more readings; a few MB of ReadingIn at most
CHUNK = 64 * 1024  # bytes per read of the request, the stored file and the JSON parser
GZIP_MAGIC = b"\x1f\x8b"
SITE_NAME = "Bulk uploads"
# Decompressed bytes allowed: this many times BULK_MAX_BYTES (5 GB by default). Seed 002's JSON
# gzips about 25× (its keys and uuids repeat), so a full 100 MB upload fits with room; the ratio
# check stops a bomb long before.
MAX_EXPANDED_FACTOR = 50
# The ratio is judged from this many decompressed bytes on: the first kilobytes of any gzip
# stream (headers, repeated keys) expand far more than the file as a whole.
RATIO_FROM_BYTES = 1024 * 1024


class Nested:
    """Stands for an object or list where a scalar was expected (its content is skipped)."""

    def __repr__(self):
        return "<object or list>"

    __str__ = __repr__


NOT_A_VALUE = Nested()
A_LIST = object()  # an item's "sensor" was a list


# --- reading the upload ---------------------------------------------------------------------


class Counting:
    """A file-like reader that counts the bytes read through it (the compressed side)."""

    def __init__(self, source):
        self.source, self.count = source, 0

    def read(self, size=-1):
        data = self.source.read(size)
        self.count += len(data)
        return data


class Expanded:
    """The upload's JSON bytes: decompressed when gzip, with the decompression-bomb guards."""

    def __init__(self, source, compressed: bool):
        self.compressed = compressed
        self.counting = Counting(source)
        self.stream = gzip.GzipFile(fileobj=self.counting, mode="rb") if compressed else self.counting
        self.count = 0
        self.max_bytes = settings.BULK_MAX_BYTES * MAX_EXPANDED_FACTOR
        self.max_ratio = settings.BULK_MAX_RATIO

    def read(self, size=-1):
        if size == 0:  # ijson asks for nothing first, to learn whether the file gives bytes
            return b""
        data = self.stream.read(size if size > 0 else CHUNK)
        self.count += len(data)
        if self.compressed:
            if self.count > self.max_bytes:
                raise ApiError(
                    413, "decompression_bomb", f"The upload decompresses to more than {self.max_bytes} bytes."
                )
            if self.count > RATIO_FROM_BYTES and self.count > self.max_ratio * max(self.counting.count, 1):
                raise ApiError(
                    413,
                    "decompression_bomb",
                    f"The upload decompresses more than {self.max_ratio} times its compressed size; refused as a decompression bomb.",
                )
        return data


def first_line(error: Exception) -> str:
    message = error.args[0] if error.args else str(error)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return str(message).strip().splitlines()[0][:200] if str(message).strip() else type(error).__name__


# --- loading: parse, validate, create equipment, ingest in batches --------------------------


@dataclass
class Totals:
    written: int = 0
    duplicates: int = 0
    rejected: int = 0
    equipment: int = 0  # distinct valid equip_uuids read
    equipment_done: int = 0  # equipment items whose readings are all committed
    reasons: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "written": self.written,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "equipment": self.equipment,
            "reasons": dict(self.reasons),
        }


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = True


@contextmanager
def cyclic_gc_paused():
    """Pause Python's cycle collector while uploads load (reference counting still frees
    everything). A load allocates millions of short-lived, acyclic objects (parsed values,
    readings, rows); each allocation burst made the collector walk the process's long-lived
    objects too, about 40% of a load's time. Concurrent loads share one pause; the last to
    finish resumes collection."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


class Item:
    """One equipment item being read. `uuid` is None until its equip_uuid is seen."""

    __slots__ = ("uuid", "name", "uuid_error", "sensor", "pending", "readings")

    def __init__(self):
        self.uuid = self.name = self.uuid_error = self.sensor = None
        self.pending = []  # readings seen before the equip_uuid
        self.readings = 0


def tidy(value, limit: int) -> str:
    """Free text (a name, a type) made storable: NULs dropped, lone surrogates replaced."""
    if value is None or isinstance(value, Nested):
        return ""
    return str(value).replace("\x00", "").encode("utf-8", "replace").decode("utf-8")[:limit]


def clean_uuid(value) -> tuple[str | None, str | None]:
    """(uuid, None) or (None, reason). Asset tags hold 64 characters."""
    if value is None or value == "":
        return None, "missing_equip_uuid"
    if not isinstance(value, str) or len(value) > 64 or not value.strip() or not storable(value):
        return None, "invalid_equip_uuid"
    return value, None


class Loader:
    """Reads one upload and stores it; see the module docstring.

    topic: written on dead letters (the request path, or the job's status path).
    on_batch: called with the new Totals inside each batch's transaction (a job's progress).
    """

    def __init__(
        self,
        *,
        topic: str,
        on_batch=None,
        batch_size: int | None = None,
        resume_from: Totals | None = None,
        grant=None,
    ):
        self.topic, self.on_batch, self.batch_size = topic, on_batch, batch_size or BATCH
        self.budget = LetterBudget(grant=grant)  # the upload's dead letters, capped (telemetry.deadletters)
        self.totals = resume_from or Totals()
        # a resumed job skips the items whose readings are all committed (and what lies between them)
        self.skip_items = self.totals.equipment_done
        self.batch: list[ReadingIn] = []
        self.letters: list[DeadLetter] = []
        self.batch_equipment: dict[str, str] = {}
        self.ensured: set[str] = set()
        self.seen_uuids: set[str] = set()
        self.items_done = 0
        self.auto_create = None
        self._ts_raw, self._ts = None, None  # the last timestamp text parsed: sensors of an instant share it

    def load(self, source, *, compressed: bool) -> Totals:
        """Parse and store everything `source` (a file-like object of the body) holds."""
        stream = Expanded(source, compressed)
        try:
            with cyclic_gc_paused():
                self.walk(stream)
        except EOFError:
            raise ApiError(
                400, "truncated_gzip", "The gzip stream ends before its end marker: the upload was cut short."
            ) from None
        except (gzip.BadGzipFile, zlib.error) as error:
            raise ApiError(400, "invalid_gzip", f"The body is not valid gzip: {first_line(error)}.") from None
        except ijson.JSONError as error:
            raise ApiError(400, "malformed_json", f"The body is not valid JSON: {first_line(error)}.") from None
        except UnicodeDecodeError:
            raise ApiError(400, "malformed_json", "The body is not UTF-8 JSON.") from None
        self.flush()
        with transaction.atomic():
            self.budget.write()  # the letters not kept one by one, in one summary letter
        return self.totals

    def walk(self, stream) -> None:
        """The JSON events, turned into items and readings. Depth 1 is the list, 2 an item,
        3 its sensor list, 4 a reading; `skip` counts the levels of a value being skipped."""
        depth = skip = 0
        item = reading = key = item_key = None
        for event, value in ijson.basic_parse(stream, use_float=True, buf_size=CHUNK):
            if skip:
                if event == "start_map" or event == "start_array":
                    skip += 1
                elif event == "end_map" or event == "end_array":
                    skip -= 1
                continue
            if depth == 4:  # inside a reading
                if event == "map_key":
                    key = value
                elif event == "end_map":
                    depth = 3
                    self.reading(item, reading)
                elif event == "start_map" or event == "start_array":
                    reading[key], skip = NOT_A_VALUE, 1
                else:
                    reading[key] = value
            elif depth == 3:  # the sensor list
                if event == "start_map":
                    depth, reading = 4, {}
                elif event == "end_array":
                    depth = 2
                else:
                    skip = 1 if event == "start_array" else 0
                    item.readings += 1
                    self.reject(
                        item,
                        "reading_not_an_object",
                        "a reading is not an object",
                        {"reading": NOT_A_VALUE if skip else value},
                    )
            elif depth == 2:  # an item
                if event == "map_key":
                    item_key = value
                elif event == "end_map":
                    depth = 1
                    self.end_item(item)
                elif event == "start_array" and item_key == "sensor":
                    depth, item.sensor = 3, A_LIST
                elif event == "start_map" or event == "start_array":
                    skip = 1
                    if item_key == "sensor":
                        item.sensor = NOT_A_VALUE
                elif item_key == "equip_uuid":
                    item.uuid, item.uuid_error = clean_uuid(value)
                    if item.uuid_error:
                        item.uuid = value if isinstance(value, str) else None
                    self.replay_pending(item)
                elif item_key == "equip_nome":
                    item.name = tidy(value, 150)
                elif item_key == "sensor":
                    item.sensor = value
            elif depth == 1:  # the list of items
                if self.items_done < self.skip_items:  # committed by the run this one resumes
                    skip = 1 if event in ("start_map", "start_array") else 0
                    self.items_done += event == "start_map"
                    depth = 0 if event == "end_array" else 1
                elif event == "start_map":
                    depth, item, item_key = 2, Item(), None
                elif event == "end_array":
                    depth = 0
                else:
                    skip = 1 if event == "start_array" else 0
                    self.reject(
                        None,
                        "item_not_an_object",
                        "an item of the list is not an object",
                        {"item": NOT_A_VALUE if skip else value},
                    )
            elif event == "start_array":
                depth = 1
            else:
                raise ApiError(
                    400,
                    "not_a_list",
                    "The body must be a JSON list of equipment: [{equip_uuid, equip_nome, sensor: […]}, …].",
                )

    # -- items and readings --

    def replay_pending(self, item: Item) -> None:
        pending, item.pending = item.pending, []
        for reading in pending:
            self.reading(item, reading, counted=True)

    def end_item(self, item: Item) -> None:
        if item.uuid_error is None and item.uuid is None:
            item.uuid_error = "missing_equip_uuid"
            self.replay_pending(item)
        summary = {"equip_uuid": item.uuid, "equip_nome": item.name}
        if item.uuid_error:
            if not item.readings:  # its readings, if any, were each rejected with the reason
                self.reject(item, item.uuid_error, "the item has no usable equip_uuid", summary)
        elif item.sensor is not A_LIST:
            detail = "the item has no 'sensor' list" if item.sensor is None else "'sensor' is not a list"
            self.reject(item, "sensor_not_a_list", detail, summary | {"sensor": item.sensor})
        else:
            self.seen_uuids.add(item.uuid)
            self.totals.equipment = len(self.seen_uuids)
        self.items_done += 1

    def reading(self, item: Item, reading: dict, counted: bool = False) -> None:
        if not counted:
            item.readings += 1
        if item.uuid is None and item.uuid_error is None:
            item.pending.append(reading)
            return
        if item.uuid_error:
            self.reject(item, item.uuid_error, "the reading's item has no usable equip_uuid", reading)
            return
        sensor = reading.get("sensor_uuid")
        if sensor is None or sensor == "":
            self.reject(item, "missing_sensor_uuid", "the reading has no sensor_uuid", reading)
            return
        if not isinstance(sensor, str) or len(sensor) > 100 or not storable(sensor):
            self.reject(item, "invalid_sensor_uuid", "sensor_uuid must be text of at most 100 characters", reading)
            return
        raw_ts = reading.get("timestamp")
        if raw_ts is self._ts_raw or (type(raw_ts) is str and raw_ts == self._ts_raw):
            ts = self._ts
        else:
            try:
                ts = parse_timestamp(raw_ts)
            except FormatError as error:
                self.reject(item, error.reason, error.detail, reading)
                return
            self._ts_raw, self._ts = raw_ts, ts
        kind = reading.get("sensor_tipo")
        kind = kind if type(kind) is str and kind.isascii() and "\x00" not in kind else tidy(kind, 50)
        self.batch.append(ReadingIn(item.uuid, sensor, ts, reading.get("valor"), type=kind, topic=self.topic))
        self.batch_equipment.setdefault(item.uuid, item.name or "")
        if len(self.batch) + len(self.letters) >= self.batch_size:
            self.flush()

    def reject(self, item: Item | None, reason: str, detail: str, payload: dict) -> None:
        if item is not None and "equip_uuid" not in payload:
            payload = {"equip_uuid": item.uuid, **payload}
        device_ref = tidy(item.uuid, 100) if item is not None and isinstance(item.uuid, str) else ""
        self.letters.append(
            DeadLetter(
                source=DeadLetter.Source.BULK,
                topic=self.topic[:300],
                payload=json.dumps(payload, default=str),
                reason=reason,
                detail=tidy(detail, 300),
                device_ref=device_ref,
            )
        )
        if len(self.batch) + len(self.letters) >= self.batch_size:
            self.flush()

    # -- writing --

    def flush(self) -> None:
        """Write the batch and the dead letters in one transaction, with the progress."""
        if self.auto_create is None:
            self.auto_create = TelemetrySettings.current().auto_create_sensors
        new_equipment = {u: n for u, n in self.batch_equipment.items() if u not in self.ensured}
        with transaction.atomic():
            if new_equipment and self.auto_create:
                ensure_equipment(new_equipment)
            batch, budget = self.batch, self.budget
            result = ingest(batch, source=DeadLetter.Source.BULK, budget=budget) if batch else IngestResult()
            if self.letters:
                budget.extend(self.letters)
                DeadLetter.objects.bulk_create(budget.take())
                result.rejected += len(self.letters)
                result.reasons.update(letter.reason for letter in self.letters)
            totals = Totals(
                self.totals.written + result.written,
                self.totals.duplicates + result.duplicates,
                self.totals.rejected + result.rejected,
                len(self.seen_uuids),
                self.items_done,
                self.totals.reasons + result.reasons,
            )
            if self.on_batch is not None:
                self.on_batch(totals)
        self.totals = totals
        self.ensured.update(new_equipment)
        self.batch, self.letters, self.batch_equipment = [], [], {}


def ensure_equipment(equipment: dict[str, str]) -> None:
    """Create what is missing for {equip_uuid: equip_nome}: the device, and its binding to the
    asset of that tag (made in the "Bulk uploads" site when none exists). A device already
    installed on an asset stays there: moving it is a person's decision."""
    Device.objects.bulk_create(
        [Device(device_id=u, name=(n or "")[:150]) for u, n in equipment.items()], ignore_conflicts=True
    )
    unbound = Device.objects.filter(device_id__in=equipment, binding__isnull=True)
    site = None
    for device in unbound:
        asset = Asset.objects.filter(tag=device.device_id).order_by("pk").first()
        if asset is None:
            site = site or Site.objects.get_or_create(name=SITE_NAME)[0]
            asset, _ = Asset.objects.get_or_create(
                site=site, tag=device.device_id, defaults={"name": (equipment[device.device_id] or "")[:150]}
            )
        DeviceBinding.objects.get_or_create(device=device, defaults={"asset": asset})


# --- the claim check: storing the upload, running the job -----------------------------------


class UploadStream:
    """The request body as a file for storage.save(): the bytes already read, then the rest in
    CHUNK reads. Counts them and stops past `limit`, whatever Content-Length said."""

    def __init__(self, request, head: bytes, limit: int, size: int):
        self.request, self.head, self.limit, self.size, self.count = request, head, limit, size, 0

    def read(self, size=-1):
        if self.head:
            data, self.head = self.head, b""
        else:
            data = self.request.read(CHUNK)
        self.count += len(data)
        if self.count > self.limit:
            raise ApiError(413, "too_large", f"The body is larger than {self.limit} bytes.")
        return data


def store_upload(request, head: bytes, compressed: bool, length: int, sender: str = "") -> BulkJob:
    """Stream the body into the default storage and make its job row."""
    name = (
        f"bulk/{connection.schema_name}/{timezone.now():%Y/%m/%d}/{uuid.uuid4().hex}.json{'.gz' if compressed else ''}"
    )
    body = UploadStream(request, head, settings.BULK_MAX_BYTES, length)
    try:
        name = default_storage.save(name, File(body, name=name))
    except (ApiError, UnreadablePostError) as error:
        discard(name)
        if isinstance(error, ApiError):
            raise
        raise ApiError(400, "incomplete_body", "The body ended before it was fully received.") from None
    if length and body.count < length:
        discard(name)
        raise ApiError(400, "incomplete_body", f"Content-Length said {length} bytes, the body held {body.count}.")
    return BulkJob.objects.create(file_name=name, size_bytes=body.count, gzip=compressed, sender=sender)


def forget_rolled_back_sensors() -> None:
    """The ingest path caches the ids of sensors it creates before they are committed; after a
    rollback those ids name nothing, so the cache starts afresh."""
    sensor_cache.clear()


def discard(name: str) -> None:
    try:
        default_storage.delete(name)
    except Exception:  # the file may never have been made; a storage outage must not hide the error
        log.warning("could not delete bulk upload file %s", name, exc_info=True)


def run_job(job_id: int) -> None:
    """Process a stored upload (the Huey task's body, in the tenant's schema).

    1. Claim the job: queued → running by a conditional update, so a repeated task does nothing.
    2. Stream the file through a Loader; each batch commits with the job's progress.
    3. Mark the job done, or failed with "<code>: <message>" and the counts written so far.
    4. Delete the file.

    A job resumed after its worker stalled (resume_stalled_jobs) starts from its committed
    progress: the items counted in equipment_done are skipped, the rest stored as usual (the
    item a batch cut in two is read again; deduplication writes only its missing readings).
    """
    now = timezone.now()
    claimed = BulkJob.objects.filter(pk=job_id, status=BulkJob.Status.QUEUED).update(
        status=BulkJob.Status.RUNNING, started_at=now, heartbeat_at=now
    )
    if not claimed:
        return
    job = BulkJob.objects.get(pk=job_id)

    def progress(totals: Totals) -> None:
        BulkJob.objects.filter(pk=job_id).update(
            heartbeat_at=timezone.now(),
            equipment_done=totals.equipment_done,
            written=totals.written,
            duplicates=totals.duplicates,
            rejected=totals.rejected,
        )

    committed = Totals(job.written, job.duplicates, job.rejected, 0, job.equipment_done)  # zero unless resumed
    loader = Loader(
        topic=reverse("api-bulk-job", args=[job_id]),
        on_batch=progress,
        resume_from=committed,
        grant=sender_grant(job.sender or "bulk:unattributed"),  # the uploader's allowance, as in the request
    )
    status, error = BulkJob.Status.DONE, ""
    try:
        with default_storage.open(job.file_name, "rb") as source:
            loader.load(source, compressed=job.gzip)
    except ApiError as failure:
        status, error = BulkJob.Status.FAILED, f"{failure.code}: {failure.message}"
    except Exception as failure:  # recorded on the job, which a client polls; also logged
        log.exception("bulk job %s failed", job_id)
        forget_rolled_back_sensors()
        status, error = BulkJob.Status.FAILED, f"internal_error: {type(failure).__name__}"
    finally:
        discard(job.file_name)
    done = loader.totals
    BulkJob.objects.filter(pk=job_id).update(
        status=status,
        error=error[:300],
        finished_at=timezone.now(),
        equipment_done=done.equipment_done,
        written=done.written,
        duplicates=done.duplicates,
        rejected=done.rejected,
    )


STALLED_AFTER = timedelta(minutes=10)  # a batch commits within seconds; this long without one, the worker died
MAX_RESUMES = 3


def resume_stalled_jobs(now=None) -> list[int]:
    """Put back in the queue each running job whose worker gave no sign of life for STALLED_AFTER
    (killed, or its machine gone); fail those resumed MAX_RESUMES times already. A conditional
    update claims each, so two sweeps never resume one job twice. Returns the resumed ids."""
    from portal.api.tasks import process_bulk_job

    now = now or timezone.now()
    stalled = BulkJob.objects.filter(status=BulkJob.Status.RUNNING, heartbeat_at__lt=now - STALLED_AFTER)
    stalled.filter(resumes__gte=MAX_RESUMES).update(
        status=BulkJob.Status.FAILED,
        error=f"stalled: its worker stopped {MAX_RESUMES + 1} times; send the file again",
        finished_at=now,
    )
    resumed = []
    for job in stalled.filter(resumes__lt=MAX_RESUMES):
        claimed = BulkJob.objects.filter(pk=job.pk, status=BulkJob.Status.RUNNING, heartbeat_at=job.heartbeat_at)
        if claimed.update(status=BulkJob.Status.QUEUED, resumes=F("resumes") + 1, heartbeat_at=now):
            log.warning("bulk job %s stalled since %s: resuming from its committed progress", job.pk, job.heartbeat_at)
            process_bulk_job(connection.schema_name, job.pk)
            resumed.append(job.pk)
    return resumed


def job_json(job: BulkJob) -> dict:
    code, _, message = job.error.partition(": ")
    return {
        "job_id": job.pk,
        "status": job.status,
        "progress": {
            "equipment_done": job.equipment_done,
            "written": job.written,
            "duplicates": job.duplicates,
            "rejected": job.rejected,
        },
        "error": {"code": code, "message": message} if job.error else None,
        "size_bytes": job.size_bytes,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


def iso(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


# --- views ----------------------------------------------------------------------------------


def read_up_to(request, size: int) -> bytes:
    parts, count = [], 0
    while count < size:
        try:
            data = request.read(min(CHUNK, size - count))
        except UnreadablePostError:
            raise ApiError(400, "incomplete_body", "The body ended before it was fully received.") from None
        if not data:
            break
        parts.append(data)
        count += len(data)
    return b"".join(parts)


def authenticate(request, scope: str):
    client = authenticate_client(request)
    check_rate(scope, f"{client.kind}:{client.identity}", key_rate())
    return client


@api_endpoint(methods=("POST",), max_bytes=settings.BULK_MAX_BYTES)
def upload(request):
    """A JSON list of equipment, plain or gzip: processed now (small) or as a job (large)."""
    client = authenticate(request, "bulk")
    length = content_length(request) or 0  # api_endpoint has answered 400 to one that is no number
    if length > settings.BULK_MAX_BYTES:
        raise ApiError(413, "too_large", f"The body is larger than {settings.BULK_MAX_BYTES} bytes.")
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise ApiError(415, "unsupported_encoding", "Send the body plain or gzip-compressed (Content-Encoding: gzip).")
    head = read_up_to(request, settings.BULK_INLINE_BYTES + 1)
    if not head:
        raise ApiError(400, "empty_body", "Send a JSON list of equipment, plain or gzip-compressed.")
    compressed = encoding in ("gzip", "x-gzip") or head.startswith(GZIP_MAGIC)
    sender = f"{client.kind}:{client.identity}"  # whose dead-letter allowance its rejections count against
    if len(head) <= settings.BULK_INLINE_BYTES:
        if length and len(head) < length:
            raise ApiError(400, "incomplete_body", f"Content-Length said {length} bytes, the body held {len(head)}.")
        loader = Loader(topic=request.path, grant=sender_grant(sender))
        try:
            with transaction.atomic():  # all or nothing: an unreadable body leaves nothing behind
                totals = loader.load(io.BytesIO(head), compressed=compressed)
        except Exception:
            forget_rolled_back_sensors()
            raise
        return JsonResponse(totals.as_dict())

    job = store_upload(request, head, compressed, length, sender)
    from portal.api.tasks import process_bulk_job

    try:
        process_bulk_job(connection.schema_name, job.pk)
    except Exception:  # the queue is down: say so rather than leave a job nobody will run
        log.exception("could not enqueue bulk job %s", job.pk)
        discard(job.file_name)
        BulkJob.objects.filter(pk=job.pk).update(
            status=BulkJob.Status.FAILED,
            error="queue_unavailable: the task queue did not answer",
            finished_at=timezone.now(),
        )
        raise ApiError(
            503,
            "queue_unavailable",
            "The upload could not be queued; send it again later.",
            headers={"Retry-After": "60"},
        ) from None
    return JsonResponse({"job_id": job.pk, "status_url": reverse("api-bulk-job", args=[job.pk])}, status=202)


@api_endpoint(methods=("GET",))
def job_status(request, pk):
    """A bulk job's status, progress (equipment_done, written, duplicates, rejected) and error."""
    authenticate(request, "bulk-status")
    job = BulkJob.objects.filter(pk=pk).first()
    if job is None:
        raise ApiError(404, "job_not_found", f"There is no bulk job {pk}.")
    return JsonResponse(job_json(job))
