"""Builders for telemetry tests (imported by test modules)."""

import math
from datetime import UTC, datetime, timedelta

from telemetry.ingest import ReadingIn

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
_UNSET = object()


def reading(device="gw-1", sensor="temp", value=20.0, minutes=10, unit="°C", ts=_UNSET, raw="", topic=""):
    """A reading `minutes` before NOW (negative: in the future)."""
    when = NOW - timedelta(minutes=minutes) if ts is _UNSET else ts
    return ReadingIn(device=device, sensor=sensor, ts=when, value=value, unit=unit, raw=raw, topic=topic)


BUCKET_SECONDS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}


def expected_points(sensor_ids, start: datetime, end: datetime, bucket: str) -> list[dict]:
    """What a bucketed aggregate must show, worked out here from the raw readings, not by the
    query code under test: buckets at multiples of their width since the epoch (days at UTC
    midnight), start rounded down and end up to whole buckets; "last" is the newest reading's
    value (the larger one on a tie). Dicts in (bucket, sensor_id) order; avg is summed in
    Python, so compare it with pytest.approx."""
    from telemetry.models import Reading

    step = BUCKET_SECONDS[bucket]
    first = int(start.timestamp()) // step * step
    after = math.ceil(end.timestamp() / step) * step
    rows = Reading.objects.filter(
        sensor_id__in=list(sensor_ids),
        ts__gte=datetime.fromtimestamp(first, UTC),
        ts__lt=datetime.fromtimestamp(after, UTC),
    ).values_list("sensor_id", "ts", "value")
    groups: dict[tuple[int, int], list] = {}
    for sensor_id, ts, value in rows:
        groups.setdefault((int(ts.timestamp()) // step * step, sensor_id), []).append((ts, value))
    points = []
    for (epoch, sensor_id), readings in sorted(groups.items()):
        values = [value for _, value in readings]
        points.append(
            {
                "sensor_id": sensor_id,
                "bucket": datetime.fromtimestamp(epoch, UTC),
                "avg": sum(values) / len(values),
                "min": min(values),
                "max": max(values),
                "last": max(readings)[1],
                "count": len(values),
            }
        )
    return points
