"""Usage statistics: the one place that computes them, for the usage page, its CSV, the dashboard
and seed 003's /api/test/stats/ (and its CSV).

A StatsQuery names a granularity (minute, hour, day, month), a range of whole buckets in the
tenant's time zone, narrowing filters (outlet, machine, device, treatment) and the shaping
(cumulative, moving average, comparison with the previous period of as many buckets). compute()
answers it with one SQL statement per period, whatever the range: closed buckets come from the
coarsest rollup that covers them (months, then days, then hours; portal.outlets.usage), the open
tail after the rollups' cursor from raw events. direct() computes the same from raw events only:
the reference the tests and bench/usage_stats.py hold compute() to.
"""

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import connection

from portal.outlets.models import UsageCursor
from portal.outlets.usage import (
    BINDINGS,
    EVENTS,
    INTERVALS,
    TREATMENTS,
    attributed,
    floor_hour,
    hour_shift,
    hour_sql,
    increase,
    tenant_zone,
)

GRANULARITIES = ("minute", "hour", "day", "month")
# what a bucket holds: treatment events, or how far the devices' counters went up (the billing
# value of seed 003; a counter that went down was reset and counts from 0; usage.py)
MEASURES = {"events": "Events", "counter": "Counter increase"}
MAX_BUCKETS = {"minute": 24 * 60, "hour": 24 * 93, "day": 366 * 5, "month": 12 * 50}
MAX_DAYS = 3660
MAX_WINDOW = 365
TOTAL = "TOTAL"


class StatsError(ValueError):
    """A query that cannot be answered as asked; the message says what to change."""


@dataclass(frozen=True)
class StatsQuery:
    granularity: str
    start: datetime  # first bucket's start (aware)
    end: datetime  # the bucket after the last one's start
    zone: ZoneInfo
    outlet_id: int | None = None
    machine_id: int | None = None
    device_pk: int | None = None
    treatment: str | None = None
    cumulative: bool = False
    ma: int = 0
    compare: bool = False
    measure: str = "events"

    @property
    def series_names(self) -> list[str]:
        return [self.treatment] if self.treatment else [*TREATMENTS, TOTAL]


@dataclass
class Period:
    buckets: list[datetime]
    measured: dict[str, dict[str, list[int]]]  # per measure, per series name, the sum per bucket
    measure: str = "events"
    values: dict[str, list[float | None]] = field(default_factory=dict)  # after cumulative / moving average
    totals: dict[str, int] = field(default_factory=dict)  # of the query's measure
    totals_by_measure: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, list[int]]:
        """The query's measure per series and bucket, before shaping."""
        return self.measured[self.measure]


@dataclass
class Stats:
    query: StatsQuery
    current: Period
    previous: Period | None
    deltas: dict[str, float | None]

    @property
    def labels(self) -> list[str]:
        return [label(bucket, self.query) for bucket in self.current.buckets]


# --- buckets in the tenant's zone ----------------------------------------------------------------


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def floor_bucket(moment: datetime, granularity: str, zone: ZoneInfo) -> datetime:
    if granularity == "minute":
        return moment.astimezone(UTC).replace(second=0, microsecond=0)
    if granularity == "hour":
        return floor_hour(moment, hour_shift(zone)).astimezone(zone)
    local = moment.astimezone(zone)
    if granularity == "day":
        return local_midnight(local.date(), zone)
    return datetime(local.year, local.month, 1, tzinfo=zone)


def step(bucket: datetime, granularity: str, zone: ZoneInfo, count: int = 1) -> datetime:
    """The bucket `count` buckets after (or before, when negative) this one."""
    if granularity in ("minute", "hour"):
        seconds = 60 if granularity == "minute" else 3600
        return (bucket.astimezone(UTC) + timedelta(seconds=seconds * count)).astimezone(zone)
    local = bucket.astimezone(zone)
    if granularity == "day":
        return local_midnight(local.date() + timedelta(days=count), zone)
    months = local.year * 12 + local.month - 1 + count
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=zone)


def buckets_between(start: datetime, end: datetime, granularity: str, zone: ZoneInfo) -> list[datetime]:
    result, bucket = [], start
    while bucket < end:
        result.append(bucket)
        bucket = step(bucket, granularity, zone)
    return result


def label(bucket: datetime, query: StatsQuery) -> str:
    local = bucket.astimezone(query.zone)
    if query.granularity == "month":
        return local.strftime("%Y-%m")
    if query.granularity == "day":
        return local.strftime("%Y-%m-%d")
    text = local.strftime("%Y-%m-%d %H:%M")
    wall = local.replace(tzinfo=None)
    if wall.replace(fold=0, tzinfo=query.zone).utcoffset() != wall.replace(fold=1, tzinfo=query.zone).utcoffset():
        text += local.strftime(" (UTC%z)")  # a wall time the DST change repeats: say which
    return text


# --- making a query from what a person or a program asked -------------------------------------------


def as_moment(value: date | datetime, zone: ZoneInfo, end: bool = False) -> datetime:
    """A date means its local midnight (an end date includes its day); a naive time is local."""
    if not isinstance(value, datetime):
        return local_midnight(value + timedelta(days=1) if end else value, zone)
    if value.tzinfo is None:
        return value.replace(tzinfo=zone)
    return value


def build_query(
    granularity: str = "day",
    start: date | datetime | None = None,
    end: date | datetime | None = None,
    days: int | None = None,
    *,
    now: datetime | None = None,
    zone: ZoneInfo | None = None,
    **options,
) -> StatsQuery:
    """A StatsQuery over whole buckets: `start`..`end`, or the last `days` (7 when neither)."""
    zone = zone or tenant_zone()
    now = now or datetime.now(UTC)
    if granularity not in GRANULARITIES:
        raise StatsError(f"granularity must be one of {', '.join(GRANULARITIES)}.")
    if start is not None or end is not None:
        if start is None or end is None:
            raise StatsError("Give both start and end, or neither (then days counts back from now).")
        first, after = as_moment(start, zone), as_moment(end, zone, end=True)
    else:
        days = 7 if days is None else days
        if not 1 <= days <= MAX_DAYS:
            raise StatsError(f"days must be between 1 and {MAX_DAYS}.")
        after = now
        first = (
            local_midnight(now.astimezone(zone).date() - timedelta(days=days - 1), zone)
            if granularity in ("day", "month")
            else now - timedelta(days=days)
        )
    if not datetime(2000, 1, 1, tzinfo=UTC) <= first < after <= datetime(2100, 1, 1, tzinfo=UTC):
        raise StatsError("The range must end after it starts, between 2000 and 2100.")
    first = floor_bucket(first, granularity, zone)
    last = floor_bucket(after, granularity, zone)
    after = last if last == after else step(last, granularity, zone)  # the bucket holding `after` counts
    if granularity in ("minute", "hour"):
        count = int((after - first).total_seconds() // (60 if granularity == "minute" else 3600))
    else:
        count = len(buckets_between(first, after, granularity, zone))
    if count > MAX_BUCKETS[granularity]:
        hint = "a shorter range" + ("" if granularity == "month" else " or a coarser granularity")
        raise StatsError(
            f"{count} {granularity}s are too many to show (at most {MAX_BUCKETS[granularity]}): choose {hint}."
        )
    ma = options.get("ma") or 0
    if not 0 <= ma <= MAX_WINDOW:
        raise StatsError(f"The moving average window must be between 0 (off) and {MAX_WINDOW} buckets.")
    treatment = options.get("treatment") or None
    if treatment is not None and treatment not in TREATMENTS:
        raise StatsError(f"treatment must be one of {', '.join(TREATMENTS)}.")
    measure = options.get("measure") or "events"
    if measure not in MEASURES:
        raise StatsError(f"measure must be one of {', '.join(MEASURES)}.")
    options = {**options, "ma": ma, "treatment": treatment, "measure": measure}
    return StatsQuery(granularity, first, after, zone, **options)


# --- the SQL ----------------------------------------------------------------------------------------


def group_expr(column: str, granularity: str, zone: ZoneInfo) -> str:
    if granularity == "minute":
        return f"date_trunc('minute', {column}, 'UTC')"
    if granularity == "hour":
        return hour_sql(column, hour_shift(zone))
    return f"date_trunc('{granularity}', {column}, %(zone)s)"


def device_filters(query: StatsQuery, alias: str) -> str:
    conditions = []
    if query.device_pk is not None:
        conditions.append(f"{alias}.device_id = %(device)s")
    if query.treatment is not None:
        conditions.append(f"{alias}.treatment = %(treatment)s")
    return "".join(f" AND {condition}" for condition in conditions)


def machine_filters(query: StatsQuery, machine_column: str) -> str:
    conditions = []
    if query.machine_id is not None:
        conditions.append(f"{machine_column} = %(machine)s")
    if query.outlet_id is not None:
        conditions.append(f"{machine_column} IN (SELECT id FROM outlets_machine WHERE outlet_id = %(outlet)s)")
    return "".join(f" AND {condition}" for condition in conditions)


# A raw event's previous counter of the device's same treatment, for usage.increase() as the hourly
# rollup counts it: the window's, or before the range by one index probe for each first event.
BEFORE = f"""
COALESCE(lag(e.counter) OVER (PARTITION BY e.device_id, e.treatment ORDER BY e.ts, e.id), (
  SELECT p.counter FROM {EVENTS} p
  WHERE p.device_id = e.device_id AND p.treatment = e.treatment AND (p.ts, p.id) < (e.ts, e.id)
  ORDER BY p.ts DESC, p.id DESC LIMIT 1))"""


def bound_devices(query: StatsQuery, alias: str) -> str:
    """For a machine or an outlet, only the devices ever bound to it can have counted for it: the
    raw part reads their events alone (each device's whole sequence, so the counter increase is
    unchanged) before attributing them."""
    if query.machine_id is not None:
        machines = "%(machine)s"
    elif query.outlet_id is not None:
        machines = "SELECT id FROM outlets_machine WHERE outlet_id = %(outlet)s"
    else:
        return ""
    return f" AND {alias}.device_id IN (SELECT device_id FROM {BINDINGS} WHERE machine_id IN ({machines}))"


def raw_part(query: StatsQuery, lower: str, upper: str, by_machine: bool = False) -> str:
    """Events and counter increase per bucket and treatment (and machine) from raw events in
    [lower, upper)."""
    join = attributed("x") if query.machine_id or query.outlet_id or by_machine else ""
    events = (
        f"SELECT e.device_id, e.treatment, e.ts, e.counter, {BEFORE.strip()} AS before "
        f"FROM {EVENTS} e WHERE e.ts >= {lower} AND e.ts < {upper} AND e.treatment <> ''{device_filters(query, 'e')}"
        f"{bound_devices(query, 'e')}"
    )
    return (
        f"SELECT {group_expr('x.ts', query.granularity, query.zone)} AS b, x.treatment, "
        f"{'i.machine_id' if by_machine else 'NULL::bigint'} AS m, count(*) AS n, "
        f"sum({increase('x')}) AS c FROM ({events}) x {join} WHERE true{machine_filters(query, 'i.machine_id')} "
        "GROUP BY 1, 2, 3"
    )


def rollup_part(query: StatsQuery, level: str, lower: str, upper: str, by_machine: bool = False) -> str:
    # a level's buckets are the granularity's own when they are the same size: no conversion per row
    bucket = "r.bucket" if level == query.granularity else group_expr("r.bucket", query.granularity, query.zone)
    return (
        f"SELECT {bucket} AS b, r.treatment, "
        f"{'r.machine_id' if by_machine else 'NULL::bigint'} AS m, "
        f"sum(r.events) AS n, sum(r.counter_delta) AS c FROM {LEVELS[level]} r "
        f"WHERE r.bucket >= {lower} AND r.bucket < {upper}{device_filters(query, 'r')}"
        f"{machine_filters(query, 'r.machine_id')} GROUP BY 1, 2, 3"
    )


LEVELS = {"hour": "outlets_usagehourly", "day": "outlets_usagedaily", "month": "outlets_usagemonthly"}
CASCADE = {"minute": [], "hour": ["hour"], "day": ["day", "hour"], "month": ["month", "day", "hour"]}


def plan(
    query: StatsQuery, start: datetime, end: datetime, closed: datetime | None, by_machine: bool = False
) -> tuple[str, dict]:
    """One statement for [start, end): each level's rollups for the buckets it holds completely,
    finer levels for the rest of the closed part, raw events after `closed`. Rows: bucket,
    treatment, machine (null unless `by_machine`), events, counter increase."""
    params = {
        "zone": query.zone.key,
        "device": query.device_pk,
        "machine": query.machine_id,
        "outlet": query.outlet_id,
        "treatment": query.treatment,
    }
    parts, cursor = [], start
    if closed is not None and closed > start:
        stop = min(end, closed)
        for number, level in enumerate(CASCADE[query.granularity]):
            level_end = stop if level == "hour" else max(cursor, min(stop, floor_bucket(closed, level, query.zone)))
            if level_end > cursor:
                params[f"a{number}"], params[f"z{number}"] = cursor, level_end
                parts.append(rollup_part(query, level, f"%(a{number})s", f"%(z{number})s", by_machine))
                cursor = level_end
    if cursor < end:
        params["ra"], params["rz"] = cursor, end
        parts.append(raw_part(query, "%(ra)s", "%(rz)s", by_machine))
    needs_intervals = any("intervals i" in part for part in parts)
    sql = " UNION ALL ".join(parts)
    if needs_intervals:
        sql = f"WITH {INTERVALS.strip()} {sql}"
    # epoch seconds and bigint: ints for Python, no datetime or Decimal to build per row
    outer = "SELECT extract(epoch FROM b)::bigint, treatment, m, sum(n)::bigint, sum(c)::bigint"
    return f"{outer} FROM ({sql}) AS parts GROUP BY b, treatment, m", params


def counts(query: StatsQuery, start: datetime, end: datetime, closed: datetime | None) -> Period:
    buckets = buckets_between(start, end, query.granularity, query.zone)
    index = {int(bucket.timestamp()): n for n, bucket in enumerate(buckets)}
    names = query.series_names
    measured = {measure: {name: [0] * len(buckets) for name in names} for measure in MEASURES}
    events, increase = measured["events"], measured["counter"]
    sql, params = plan(query, start, end, closed)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for epoch, treatment, _, number, delta in cursor.fetchall():
            position = index.get(epoch)
            if position is None:
                continue
            for name in (treatment, TOTAL):
                if name in events:
                    events[name][position] += number
                    increase[name][position] += delta
    return Period(buckets, measured, query.measure)


def per_machine(query: StatsQuery) -> dict[tuple[datetime, int | None], list[int]]:
    """{(bucket start, machine id): [events, counter increase]} over the query's range, in one
    statement (the outlet and machine pages' figures for all their machines at once)."""
    result: dict[tuple[datetime, int | None], list[int]] = {}
    sql, params = plan(query, query.start, query.end, closed_before(query.zone), by_machine=True)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for epoch, _, machine_id, number, delta in cursor.fetchall():
            sums = result.setdefault((datetime.fromtimestamp(epoch, UTC), machine_id), [0, 0])
            sums[0] += number
            sums[1] += delta
    return result


# --- shaping ----------------------------------------------------------------------------------------


def running_sum(values: list[int]) -> list[int]:
    total, result = 0, []
    for value in values:
        total += value
        result.append(total)
    return result


def moving_average(values: list[float], window: int) -> list[float | None]:
    """Trailing mean of `window` buckets; None until that many exist."""
    result, total = [], 0.0
    for n, value in enumerate(values):
        total += value
        if n >= window:
            total -= values[n - window]
        result.append(round(total / window, 4) if n >= window - 1 else None)
    return result


def shape(period: Period, query: StatsQuery) -> Period:
    period.totals_by_measure = {
        measure: {name: sum(values) for name, values in series.items()} for measure, series in period.measured.items()
    }
    period.totals = period.totals_by_measure[query.measure]
    for name, values in period.counts.items():
        shaped = running_sum(values) if query.cumulative else list(values)
        period.values[name] = moving_average(shaped, query.ma) if query.ma > 1 else shaped
    return period


def delta_percent(now: int, before: int) -> float | None:
    return None if before == 0 else round((now - before) / before * 100, 1)


def answer(query: StatsQuery, closed: datetime | None) -> Stats:
    current = shape(counts(query, query.start, query.end, closed), query)
    previous = None
    deltas = {}
    if query.compare:
        length = len(current.buckets)
        before = step(query.start, query.granularity, query.zone, -length)
        previous = shape(counts(query, before, query.start, closed), query)
        deltas = {name: delta_percent(current.totals[name], previous.totals[name]) for name in current.totals}
    return Stats(query, current, previous, deltas)


def closed_before(zone: ZoneInfo) -> datetime | None:
    """Where the rollups end (None: none yet, or cut in another zone than the tenant's now)."""
    state = UsageCursor.objects.order_by("pk").first()
    return state.closed_before if state and state.time_zone == zone.key else None


def compute(query: StatsQuery) -> Stats:
    """The statistics from rollups (closed buckets) and raw events (the open tail)."""
    return answer(query, closed_before(query.zone))


def direct(query: StatsQuery) -> Stats:
    """The same from raw events only (the reference; slow on a large tenant)."""
    return answer(query, None)


def with_range(query: StatsQuery, start: datetime, end: datetime) -> StatsQuery:
    return replace(query, start=start, end=end)


# --- what a page, the API and the CSV show -----------------------------------------------------------


def as_dict(answer: Stats) -> dict:
    query = answer.query

    def period(part: Period) -> dict:
        return {
            "start": part.buckets[0].isoformat() if part.buckets else None,
            "labels": [label(bucket, query) for bucket in part.buckets],
            "buckets": [bucket.isoformat() for bucket in part.buckets],
            "series": part.values,
            "totals": part.totals,
            "totals_by_measure": part.totals_by_measure,
        }

    return {
        "granularity": query.granularity,
        "measure": query.measure,
        "start": query.start.isoformat(),
        "end": query.end.isoformat(),
        "time_zone": query.zone.key,
        "cumulative": query.cumulative,
        "ma": query.ma,
        "compare": query.compare,
        **period(answer.current),
        "previous": period(answer.previous) if answer.previous else None,
        "deltas": answer.deltas,
    }


def table_rows(answer: Stats) -> list[list]:
    """The table the usage page shows, as rows (header first): a bucket per row, a column per
    series, then the previous period's bucket and series when comparing; totals and deltas last."""
    names = answer.query.series_names
    header = ["bucket", "start", *names]
    previous = answer.previous
    if previous:
        header += ["previous_bucket", *[f"previous_{name}" for name in names]]
    rows = [header]
    for n, bucket in enumerate(answer.current.buckets):
        row = [label(bucket, answer.query), bucket.isoformat(), *[answer.current.values[name][n] for name in names]]
        if previous:
            row += [label(previous.buckets[n], answer.query), *[previous.values[name][n] for name in names]]
        rows.append(row)
    totals = ["total", "", *[answer.current.totals[name] for name in names]]
    if previous:
        totals += ["", *[previous.totals[name] for name in names]]
        rows.append(totals)
        rows.append(["change %", "", *[answer.deltas[name] for name in names]])
    else:
        rows.append(totals)
    return rows


def csv_text(answer: Stats) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in table_rows(answer):
        writer.writerow(["" if cell is None else cell for cell in row])
    return buffer.getvalue()
