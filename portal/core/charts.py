"""Chart data for static/js/chart.js: render with {{ data|json_script:"some-id" }}.

A chart never draws a line across missing data: wherever two neighbouring points are more than
`gap` seconds apart, a null point at prev + gap breaks the line (chart.js applies the same rule
to points that arrive live). For buckets the gap is the bucket's width, so the null sits on the
first missing bucket; for raw readings it is GAP_FACTOR times the series' usual spacing.
"""

import statistics

from django.utils import timezone

GAP_FACTOR = 3  # raw readings further apart than 3× their median spacing are a hole, not a slope


def with_gaps(xs: list[int], columns: list[list], gap: float | None) -> tuple[list, list[list]]:
    """xs and each column of values with a null inserted wherever neighbours are > gap apart."""
    if not gap or len(xs) < 2:
        return xs, columns
    out_x, out_columns = [], [[] for _ in columns]
    for i, x in enumerate(xs):
        if i and x - xs[i - 1] > gap:
            out_x.append(xs[i - 1] + gap)
            for column in out_columns:
                column.append(None)
        out_x.append(x)
        for column, values in zip(out_columns, columns, strict=True):
            column.append(values[i])
    return out_x, out_columns


def raw_gap(xs: list[int]) -> float | None:
    """The spacing beyond which raw readings count as missing: GAP_FACTOR × the median spacing."""
    steps = [b - a for a, b in zip(xs, xs[1:], strict=False) if b > a]
    return GAP_FACTOR * statistics.median(steps) if steps else None


def chart(xs, labelled: dict[str, list], *, unit="", gap=None, precision=2, window=None) -> dict:
    """The whole JSON chart.js draws. window: seconds of data kept as live points arrive (a
    "last 24 hours" chart drops what falls out of it), None for a fixed range."""
    gapped_x, columns = with_gaps(list(xs), list(labelled.values()), gap)
    return {
        "x": gapped_x,
        "series": [{"label": label, "values": values} for label, values in zip(labelled, columns, strict=True)],
        "unit": unit,
        "gap": gap,
        "precision": precision,
        "window": window,
        "tz": timezone.get_current_timezone_name(),
    }


def aggregate_series(points) -> tuple[list[int], dict[str, list]]:
    return [int(p.bucket.timestamp()) for p in points], {
        "avg": [p.avg for p in points],
        "min": [p.min for p in points],
        "max": [p.max for p in points],
    }


def raw_series(rows) -> tuple[list[int], dict[str, list]]:
    ordered = sorted(rows, key=lambda row: row[1])  # queried newest first
    # milliseconds kept: two readings within a second stay two points (merged by time when live)
    return [round(ts.timestamp(), 3) for _, ts, _ in ordered], {"value": [value for _, _, value in ordered]}


def aggregate_chart(points, unit: str = "", *, bucket_seconds: int, precision=2, window=None) -> dict:
    """avg, min and max lines from telemetry.queries.Point values of one sensor (or combined)."""
    xs, labelled = aggregate_series(points)
    return chart(xs, labelled, unit=unit, gap=bucket_seconds, precision=precision, window=window)


def raw_chart(rows, unit: str = "", *, precision=2, window=None) -> dict:
    """One line from raw (sensor_id, ts, value) rows of one sensor, newest first as queried."""
    xs, labelled = raw_series(rows)
    return chart(xs, labelled, unit=unit, gap=raw_gap(xs), precision=precision, window=window)


def update(xs, labelled: dict[str, list]) -> dict:
    """New points for a chart already on the page (chart.js merges them by time)."""
    return {"x": list(xs), "series": [{"label": label, "values": values} for label, values in labelled.items()]}
