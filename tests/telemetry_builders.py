"""Builders for telemetry tests (imported by test modules)."""

from datetime import UTC, datetime, timedelta

from telemetry.ingest import ReadingIn

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
_UNSET = object()


def reading(device="gw-1", sensor="temp", value=20.0, minutes=10, unit="°C", ts=_UNSET, raw="", topic=""):
    """A reading `minutes` before NOW (negative: in the future)."""
    when = NOW - timedelta(minutes=minutes) if ts is _UNSET else ts
    return ReadingIn(device=device, sensor=sensor, ts=when, value=value, unit=unit, raw=raw, topic=topic)
