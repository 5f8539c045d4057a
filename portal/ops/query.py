"""The console's cross-tenant telemetry query: buckets per sensor, drill-down to raw readings.

Each tenant is asked inside its own schema (schema_context) through telemetry.queries, the same
query layer the tenant's own explorer uses; nothing here names a schema in SQL, so no query can
reach across schemas. "All tenants" asks each tenant for its newest `offset + limit` buckets and
merges those sorted lists (newest bucket first, then tenant, device and sensor), which gives
exactly the rows one query over all tenants would give, page by page.
"""

import heapq
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

from django.db.models import Avg, Count, Max, Min
from django_tenants.utils import schema_context

from telemetry import queries
from telemetry.models import Reading, Sensor


@dataclass(frozen=True)
class Filters:
    tenants: list  # Tenant instances, asked in this order
    device_id: str
    sensor_id: str
    start: datetime
    end: datetime
    bucket: str


@dataclass(frozen=True)
class BucketRow:
    tenant_slug: str
    device_id: str
    sensor_id: str
    unit: str
    bucket: datetime
    avg: float
    min: float
    max: float
    last: float
    count: int

    def order_key(self):
        """Newest bucket first; ties in a stable order (epoch negated: datetimes cannot be)."""
        return (-self.bucket.timestamp(), self.tenant_slug, self.device_id, self.sensor_id)


@dataclass(frozen=True)
class Page:
    rows: list[BucketRow]
    offset: int
    limit: int
    has_next: bool


def matching_sensors(filters: Filters) -> dict[int, tuple[str, str, str]]:
    """{sensor pk: (device_id, sensor key, unit)} in the current schema."""
    sensors = Sensor.objects.all()
    if filters.device_id:
        sensors = sensors.filter(device__device_id=filters.device_id)
    if filters.sensor_id:
        sensors = sensors.filter(key=filters.sensor_id)
    return {
        pk: (device, key, unit)
        for pk, device, key, unit in sensors.values_list("pk", "device__device_id", "key", "unit")
    }


def tenant_buckets(tenant, filters: Filters, count: int) -> list[BucketRow]:
    """The tenant's newest `count` buckets, newest first (asked in its own schema)."""
    with schema_context(tenant.schema_name):
        sensors = matching_sensors(filters)
        result = queries.aggregate(sensors, filters.start, filters.end, filters.bucket, limit=count)
    rows = [
        BucketRow(
            tenant.slug,
            *sensors[p.sensor_id][:2],
            sensors[p.sensor_id][2],
            p.bucket,
            p.avg,
            p.min,
            p.max,
            p.last,
            p.count,
        )
        for p in result.rows
    ]
    rows.sort(key=BucketRow.order_key)
    return rows


def merged(filters: Filters, count: int):
    """The newest `count` buckets of all the filters' tenants, in one order."""
    per_tenant = [tenant_buckets(tenant, filters, count) for tenant in filters.tenants]
    return islice(heapq.merge(*per_tenant, key=BucketRow.order_key), count)


def bucket_page(filters: Filters, offset: int, limit: int) -> Page:
    rows = list(merged(filters, offset + limit + 1))  # one more than the page: is there a next?
    return Page(rows[offset : offset + limit], offset, limit, len(rows) > offset + limit)


@dataclass(frozen=True)
class Drilldown:
    rows: list  # (ts, value), newest first
    capped: bool
    count: int
    avg: float | None
    min: float | None
    max: float | None
    first: datetime | None
    last: datetime | None
    unit: str


def drilldown(tenant, device_id: str, sensor_id: str, start: datetime, end: datetime, limit: int) -> Drilldown | None:
    """The newest `limit` raw readings of one sensor in [start, end), and the stats of all of
    them; None when the tenant has no such sensor."""
    with schema_context(tenant.schema_name):
        sensor = Sensor.objects.filter(device__device_id=device_id, key=sensor_id).first()
        if sensor is None:
            return None
        result = queries.raw_readings([sensor.pk], start, end, limit=limit)
        stats = Reading.objects.filter(sensor_id=sensor.pk, ts__gte=start, ts__lt=end).aggregate(
            count=Count("ts"), avg=Avg("value"), min=Min("value"), max=Max("value"), first=Min("ts"), last=Max("ts")
        )
    rows = [(ts, value) for _, ts, value in result.rows]
    return Drilldown(rows, result.capped, unit=sensor.unit, **stats)
