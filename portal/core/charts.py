"""Chart data for static/js/chart.js: render with {{ data|json_script:"some-id" }}."""


def aggregate_chart(points, unit: str = "") -> dict:
    """avg, min and max lines from telemetry.queries.Point values of one sensor (or combined)."""
    return {
        "x": [int(p.bucket.timestamp()) for p in points],
        "unit": unit,
        "series": [
            {"label": "avg", "values": [round(p.avg, 4) for p in points]},
            {"label": "min", "values": [p.min for p in points]},
            {"label": "max", "values": [p.max for p in points]},
        ],
    }


def raw_chart(rows, unit: str = "") -> dict:
    """One line from raw (sensor_id, ts, value) rows of one sensor, newest first as queried."""
    ordered = sorted(rows, key=lambda row: row[1])
    return {
        "x": [int(ts.timestamp()) for _, ts, _ in ordered],
        "unit": unit,
        "series": [{"label": "value", "values": [value for _, _, value in ordered]}],
    }
