"""The state machine of a rule for one subject, and the evaluations that drive it.

States (as Grafana names them): normal → pending (the condition holds, `for` not reached) →
firing (an alert is open) → recovering (the condition is clear, `keep firing for` not reached)
→ normal (the alert resolves). No data and error are states of their own, or are treated as
firing, as normal, or as "keep the last state", as the rule chooses. A firing value condition
clears only once the value is back past its threshold by the condition's hysteresis, so a noisy
signal around the threshold does not flap.

Evaluation happens at instants: the time of each reading of a batch (evaluate_readings, after
every ingest batch), or now (evaluate_now: every minute, and for device events). Each instant
sees the latest value of every sensor a condition reads at that time. Readings older than the
online window are late or backfilled data: they are stored, but do not move live states.

Concurrency: the pairs a run evaluates are locked with transaction-scoped advisory locks (in a
fixed order, so runs never deadlock) before their states are read; the partial unique index on
open alerts is the last word should anything slip past.
"""

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from portal.alerts import alerting
from portal.alerts.models import AlertRule, RuleState, SecurityEvent, State
from portal.alerts.rules import VALUE_TESTS, Kind, Pair, current_index
from telemetry import queries
from telemetry.models import Device, online_window

ERROR = "error"  # the truth of an instant where a sensor delivered an impossible value
FIRING_LIKE = {State.FIRING, State.RECOVERING}
# The per-reading loops compare plain strings: looking up a TextChoices member costs about a
# microsecond, and a batch makes thousands of comparisons.
NORMAL, FIRING, NODATA, ERRORED = (s.value for s in (State.NORMAL, State.FIRING, State.NODATA, State.ERROR))
ABOVE, BELOW, OUTSIDE, BATTERY_BELOW = (k.value for k in (Kind.ABOVE, Kind.BELOW, Kind.OUTSIDE, Kind.BATTERY_BELOW))
SETTLED = {NORMAL, FIRING}


@dataclass
class Observations:
    """What is known about sensors and devices: values in time order, last seen, security events."""

    series: dict[int, list[tuple[datetime, float]]] = field(default_factory=dict)
    last_seen: dict[int, datetime | None] = field(default_factory=dict)
    events: dict[int, list] = field(default_factory=dict)  # device id -> latest SecurityEvent per kind

    def add(self, sensor_id: int, rows) -> None:
        self.series.setdefault(sensor_id, []).extend(rows)

    def settle(self) -> None:
        for rows in self.series.values():
            rows.sort()

    def at(self, sensor_id: int | None, t: datetime):
        """The newest (ts, value) of the sensor at or before t, or None."""
        rows = self.series.get(sensor_id) if sensor_id else None
        if not rows:
            return None
        i = bisect.bisect_right(rows, (t, float("inf")))
        return rows[i - 1] if i else None


def fact(cond, sensor_key, reading, holds) -> dict:
    entry = {"condition": cond.text, "holds": holds}
    if reading is not None:
        entry |= {"sensor": sensor_key, "ts": reading[0].isoformat(), "value": reading[1]}
    return entry


WINDOW: list = []  # the online window of the running evaluation (read once per run, not per condition)


def window() -> timedelta:
    return WINDOW[-1] if WINDOW else online_window()


def value_holds(cond, value: float, firing: bool) -> bool:
    kind = cond.kind
    margin = cond.hysteresis if firing else 0.0
    if kind == ABOVE:
        return value > cond.threshold - margin
    if kind in (BELOW, BATTERY_BELOW):
        return value < cond.threshold + margin
    if kind == OUTSIDE:
        return value < cond.low + margin or value > cond.high - margin
    return False


def condition_truth(cond, sensor_id, pair: Pair, obs: Observations, t: datetime, firing: bool):
    """(True / False / None for no data, the fact behind it)."""
    window_ = window()
    if cond.kind == Kind.OFFLINE:
        seen = obs.last_seen.get(pair.subject.device_id)
        if seen is None:
            return None, {"condition": cond.text, "holds": None, "last_seen": None}
        holds = t - seen > window_
        return holds, {"condition": cond.text, "holds": holds, "last_seen": seen.isoformat()}
    if cond.kind == Kind.SECURITY_EVENT:
        return event_truth(cond, obs.events.get(pair.subject.device_id, []), t)
    if cond.kind == Kind.NO_DATA:
        if sensor_id is None and cond.sensor_key:
            return True, {"condition": cond.text, "holds": True, "last": None}
        reading = obs.at(sensor_id, t) if sensor_id else None
        last = reading[0] if reading else obs.last_seen.get(pair.subject.device_id) if not sensor_id else None
        holds = last is None or t - last >= timedelta(minutes=cond.minutes or 0)
        return holds, {"condition": cond.text, "holds": holds, "last": last.isoformat() if last else None}
    reading = obs.at(sensor_id, t)
    if reading is None or t - reading[0] > window_:
        return None, fact(cond, cond.sensor_key, reading, None)
    if cond.kind == Kind.RATE:
        before = obs.at(sensor_id, t - timedelta(minutes=cond.minutes or 1))
        if before is None:
            return False, fact(cond, cond.sensor_key, reading, False)
        minutes = max((reading[0] - before[0]).total_seconds() / 60, 1e-9)
        rate = (reading[1] - before[1]) / minutes
        margin = cond.hysteresis if firing else 0.0
        holds = abs(rate) > cond.threshold - margin
        return holds, fact(cond, cond.sensor_key, reading, holds) | {"rate_per_minute": round(rate, 4)}
    holds = value_holds(cond, reading[1], firing)
    return holds, fact(cond, cond.sensor_key, reading, holds)


def event_truth(cond, events, t: datetime):
    matching = [e for e in events if (not cond.event_kinds or e.kind in cond.event_kinds) and e.occurred_at <= t]
    if not matching:
        return False, {"condition": cond.text, "holds": False}
    latest = max(matching, key=lambda e: e.occurred_at)
    holds = not latest.resolved
    if holds and cond.minutes:
        holds = t - latest.occurred_at < timedelta(minutes=cond.minutes)
    detail = {"event": latest.kind, "message": latest.message, "at": latest.occurred_at.isoformat()}
    return holds, {"condition": cond.text, "holds": holds, **detail, "event_severity": latest.severity}


def quick_truth(pair: Pair, obs: Observations, t: datetime, firing: bool):
    """rule_truth() without the facts, for the common case of plain value conditions (the facts are
    built only when the state changes). None when a condition needs the full path."""
    truths = []
    for cond, sid in zip(pair.rule.conditions, pair.sensors, strict=True):
        if cond.kind not in VALUE_TESTS:
            return NOT_SIMPLE
        reading = obs.at(sid, t)
        truths.append(None if reading is None or t - reading[0] > WINDOW[-1] else value_holds(cond, reading[1], firing))
    decisive = not pair.rule.match_all
    if decisive in truths:
        return decisive
    return None if None in truths else (not decisive)


NOT_SIMPLE = object()


def rule_truth(pair: Pair, obs: Observations, t: datetime, firing: bool):
    """All/any of the conditions, in three-valued logic: a false condition decides AND, a true one OR."""
    results = [
        condition_truth(c, s, pair, obs, t, firing) for c, s in zip(pair.rule.conditions, pair.sensors, strict=True)
    ]
    truths = [r[0] for r in results]
    facts = [r[1] for r in results]
    decisive = not pair.rule.match_all
    if decisive in truths:
        return decisive, facts
    if None in truths:
        return None, facts
    return (not decisive), facts


# --- the state machine ----------------------------------------------------------------------------


@dataclass
class Step:
    """What a state change asks of the world: open or resolve the alert, or note something on it."""

    action: str  # "open", "resolve", "note"
    at: datetime
    facts: list
    message: str = ""


class Fresh:
    """A subject with no state row yet (normal): a plain object, so the many quiet subjects of a
    batch cost no model instance; it becomes a RuleState when it changes."""

    pk = None
    alert_id = None
    alert = None

    def __init__(self, at: datetime):
        self.state, self.since, self.condition_since, self.clear_since, self.facts, self.detail = (
            State.NORMAL,
            at,
            None,
            None,
            [],
            "",
        )

    def as_row(self, pair: Pair) -> RuleState:
        row = RuleState(rule_id=pair.rule.id, subject_key=pair.subject.key)
        for name in ("state", "since", "condition_since", "clear_since", "facts", "detail"):
            setattr(row, name, getattr(self, name))
        return row


def fresh_state(pair: Pair, at: datetime) -> RuleState:
    return RuleState(rule_id=pair.rule.id, subject_key=pair.subject.key, state=State.NORMAL, since=at)


def enter(state: RuleState, new: str, at: datetime, facts, detail="") -> None:
    state.state, state.since, state.facts, state.detail = new, at, facts, detail[:300]
    state._changed = True


def step(state: RuleState, pair: Pair, truth, at: datetime, facts) -> list[Step]:
    """Move one state by one observation; returns what must happen to alerts."""
    rule = pair.rule
    if truth is None:
        handling = rule.no_data
        if handling == AlertRule.NoData.KEEP:
            return []
        if handling == AlertRule.NoData.NODATA:
            if state.state == State.NODATA:
                return []
            was_firing = state.alert_id is not None
            enter(state, State.NODATA, at, facts)
            return (
                [Step("note", at, facts, "No data: the values this rule reads stopped arriving.")] if was_firing else []
            )
        truth = handling == AlertRule.NoData.ALERTING
    elif truth == ERROR:
        if rule.on_error == AlertRule.OnError.KEEP:
            return []
        if rule.on_error == AlertRule.OnError.ERROR:
            if state.state == State.ERROR:
                return []
            enter(state, State.ERROR, at, facts, "A sensor this rule reads sent a value outside its range.")
            return [Step("note", at, facts, "Error: an impossible value was rejected.")] if state.alert_id else []
        truth = True
    if state.state in (State.NODATA, State.ERROR):  # values are back: continue from where the alert stands
        enter(state, State.FIRING if state.alert_id else State.NORMAL, at, facts)
        state.condition_since = at if state.alert_id else None
    return step_on_truth(state, rule, bool(truth), at, facts)


def step_on_truth(state: RuleState, rule, truth: bool, at: datetime, facts) -> list[Step]:
    held_for = timedelta(seconds=rule.for_seconds)
    keep_for = timedelta(seconds=rule.keep_firing_for_seconds)
    current = state.state
    if truth:
        if current == State.NORMAL:
            state.condition_since = at
            if held_for:
                enter(state, State.PENDING, at, facts)
                return []
        if current == State.RECOVERING:
            state.clear_since = None
            enter(state, State.FIRING, at, facts)
            return [Step("note", at, facts, "The condition holds again.")]
        if current in (State.NORMAL, State.PENDING) and at - (state.condition_since or at) >= held_for:
            enter(state, State.FIRING, at, facts)
            return [Step("open", at, facts)]
        return []
    if current == State.PENDING:
        enter(state, State.NORMAL, at, facts)
        state.condition_since = None
        return []
    if current == State.FIRING:
        state.clear_since = at
        if keep_for:
            enter(state, State.RECOVERING, at, facts)
            return []
    if current in (State.FIRING, State.RECOVERING) and at - (state.clear_since or at) >= keep_for:
        enter(state, State.NORMAL, at, facts)
        state.condition_since = state.clear_since = None
        return [Step("resolve", at, facts)]
    return []


# --- locking and persistence ---------------------------------------------------------------------


def lock_pairs(keys) -> None:
    """Transaction-scoped advisory locks on (schema, rule, subject), taken in one sorted pass. The
    names travel as one string: a parameter per pair costs milliseconds to bind for a batch."""
    schema = connection.schema_name  # once: the connection proxy costs microseconds an access
    names = sorted(f"{schema}:{rule_id}:{subject}" for rule_id, subject in keys)
    if names:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_advisory_xact_lock(hashtextextended(n, 0))) "
                "FROM unnest(string_to_array(%s, E'\\n')) AS n",
                ["\n".join(names)],
            )


def load_states(pairs) -> dict[tuple[int, str], RuleState]:
    """The state rows of these pairs (a row exists only for a subject that once changed); the pairs
    travel as two strings, for the same reason as in lock_pairs()."""
    table = RuleState._meta.db_table
    found = RuleState.objects.raw(
        f"SELECT s.* FROM {table} s JOIN unnest(string_to_array(%s, ',')::bigint[], string_to_array(%s, E'\\n')) "
        "AS k (rule_id, subject_key) USING (rule_id, subject_key)",
        [",".join(str(p.rule.id) for p in pairs), "\n".join(p.subject.key for p in pairs)],
    )
    return {(s.rule_id, s.subject_key): s for s in found}


def settled(state, truth) -> bool:
    """True when this truth leaves the state as it is (normal and false, firing and true): most
    instants, which then cost no facts and no step."""
    return (state.state == NORMAL and truth is False) or (state.state == FIRING and truth is True)


def run(pairs: list[Pair], instants, obs: Observations, now: datetime, unmoved=None) -> int:
    """Lock, load, step every pair through its instants, then save states and apply alert steps.
    `instants(pair, state)` yields (time, truth or None to compute); `unmoved(pair, state or None)`,
    when given, says cheaply that a pair's instants cannot change it. Returns how many states changed."""
    if not pairs:
        return 0
    WINDOW.append(online_window())
    try:
        return run_locked(pairs, instants, obs, now, unmoved)
    finally:
        WINDOW.pop()


def run_locked(pairs, instants, obs, now, unmoved) -> int:
    with transaction.atomic():
        lock_pairs(p.key for p in pairs)
        states = load_states(pairs)
        changes = alerting.Changes(now)
        for pair in pairs:
            state = states.get(pair.key)
            if unmoved is not None and unmoved(pair, state):
                continue
            state = state or Fresh(now)
            state._changed = False
            steps = []
            for at, forced in instants(pair, state):
                firing = bool(state.state in FIRING_LIKE or (state.state in (NODATA, ERRORED) and state.alert_id))
                truth = quick_truth(pair, obs, at, firing) if forced is None else forced
                if truth is NOT_SIMPLE or not settled(state, truth):
                    full, facts = rule_truth(pair, obs, at, firing)
                    truth = full if forced is None else forced
                    steps.extend(step(state, pair, truth, at, facts))
            if state._changed or steps:
                changes.add(state.as_row(pair) if isinstance(state, Fresh) else state, pair, steps)
        changes.write()  # alerts, timeline, notifications and states: a few statements for the whole run
        return len(changes)


# --- the evaluations -----------------------------------------------------------------------------


def evaluate_readings(readings: dict[int, list], rejected: dict[int, list], now: datetime | None = None) -> int:
    """After an ingest batch: step every (rule, subject) the batch's sensors feed, reading by reading.

    readings: {sensor id: [(ts, value), …]} stored by the batch; rejected: {sensor id: [(ts, value,
    reason), …]} impossible values it refused. Also opens data-quality alerts for the rejected ones.
    """
    now = now or timezone.now()
    horizon = now - online_window()
    index = current_index()
    pairs = {p.key: p for sid in (readings.keys() | rejected.keys()) for p in index.by_sensor.get(sid, ())}
    if not pairs:
        return 0
    pairs = list(pairs.values())
    obs = Observations()
    for sid, rows in readings.items():
        obs.add(sid, list(rows))
    load_history(pairs, obs, readings, now)
    obs.settle()

    def instants(pair, state):
        moments = set()
        errors = set()
        for sid in pair.watched_sensors:
            moments.update(min(ts, now) for ts, _ in readings.get(sid, ()) if ts >= horizon)
            errors.update(min(ts, now) for ts, *_ in rejected.get(sid, ()) if ts >= horizon)
        floor = state.since if state.pk else horizon
        for at in sorted(moments | errors):
            if at >= floor:
                yield at, (ERROR if at in errors and at not in moments else None)

    def unmoved(pair, state) -> bool:
        """A pair whose lone value test (Pair.lone) the batch's readings since its state began
        neither cross (normal) nor leave (firing) stays as it is: most pairs of most batches."""
        cond, sensor = pair.lone, pair.sensors[0]
        if cond is None or sensor in rejected or (state is not None and state.state not in SETTLED):
            return False
        firing = state is not None and state.state == FIRING
        floor = max(horizon, state.since) if state is not None else horizon
        values = []
        for ts, value in readings.get(sensor, ()):
            if ts > now:
                return False  # a reading from the future is judged at now: the full path
            if ts >= floor:
                values.append(value)
        if firing:
            return all(value_holds(cond, value, True) for value in values)
        return not any(value_holds(cond, value, False) for value in values)

    changed = run(pairs, instants, obs, now, unmoved)
    if rejected:
        alerting.data_quality(rejected, {sid for p in pairs for sid in p.watched_sensors}, horizon, now)
    return changed


MAX_BATCH_READINGS = 100_000  # read back for one evaluation; a larger batch is evaluated on its newest


def evaluate_stored(sensor_ids, since: datetime, until: datetime, rejected: dict[int, list]) -> int:
    """evaluate_readings() for a committed batch, whose values are read back: the ingest process
    hands over only the sensors and the span of their readings (a millisecond wider on each side:
    epochs round, and readings of other batches in the span are only evaluated once more)."""
    margin = timedelta(milliseconds=1)
    readings = (
        queries.readings_by_sensor(sensor_ids, since - margin, until + margin, limit=MAX_BATCH_READINGS)
        if sensor_ids
        else {}
    )
    return evaluate_readings(readings, rejected)


def load_history(pairs, obs: Observations, readings, now: datetime) -> None:
    """Earlier values the batch's instants need: other sensors of multi-sensor rules, the window of
    rate conditions, the last reading before a silence (no data), devices' last seen, events."""
    needed, lookback = set(), online_window()
    devices, event_devices = set(), set()
    for pair in pairs:
        for cond, sid in zip(pair.rule.conditions, pair.sensors, strict=True):
            if cond.kind == Kind.OFFLINE or (cond.kind == Kind.NO_DATA and not sid):
                devices.add(pair.subject.device_id)
            elif cond.kind == Kind.SECURITY_EVENT:
                event_devices.add(pair.subject.device_id)
            elif sid and (sid not in readings or cond.kind in (Kind.RATE, Kind.NO_DATA)):
                needed.add(sid)
                if cond.kind == Kind.RATE:
                    lookback = max(lookback, timedelta(minutes=2 * (cond.minutes or 1)))
                if cond.kind == Kind.NO_DATA:
                    lookback = max(lookback, timedelta(minutes=cond.minutes or 0))
    if needed:
        first = min((ts for rows in readings.values() for ts, _ in rows), default=now)
        for sid, ts, value in queries.raw_readings(needed, first - lookback, first).rows:
            obs.add(sid, [(ts, value)])
        for sid, (ts, value) in queries.latest_values(needed - obs.series.keys()).items():
            obs.add(sid, [(ts, value)])
    if devices:
        obs.last_seen.update(Device.objects.filter(pk__in=devices).values_list("pk", "last_seen"))
    if event_devices:
        load_events(obs, event_devices)


def load_events(obs: Observations, device_ids) -> None:
    latest = SecurityEvent.objects.filter(device_id__in=device_ids).order_by("device_id", "kind", "-occurred_at", "-id")
    for event in latest.distinct("device_id", "kind"):
        obs.events.setdefault(event.device_id, []).append(event)


def evaluate_now(pairs: list[Pair] | None = None, now: datetime | None = None) -> int:
    """Step pairs (default: every enabled rule's) at `now` with the latest known values: time moves
    pending rules to firing and recovering ones to normal, and finds silence, offline and events."""
    now = now or timezone.now()
    if pairs is None:  # the whole index: subjects that left it are settled too
        pairs = current_index().pairs
        alerting.resolve_departed(pairs, now)
    if not pairs:
        return 0
    obs = Observations()
    sensors = {sid for p in pairs for sid in p.sensors if sid} | {
        p.subject.sensor_id for p in pairs if p.subject.sensor_id
    }
    for sid, latest in queries.latest_values(sensors).items():
        obs.add(sid, [latest])
    rate_windows = {
        (sid, cond.minutes or 1)
        for p in pairs
        for cond, sid in zip(p.rule.conditions, p.sensors, strict=True)
        if sid and cond.kind == Kind.RATE
    }
    for sid, minutes in rate_windows:
        earlier = queries.latest_values_before([sid], now - timedelta(minutes=minutes))
        if sid in earlier:
            obs.add(sid, [earlier[sid]])
    obs.settle()
    obs.last_seen.update(
        Device.objects.filter(pk__in={p.subject.device_id for p in pairs}).values_list("pk", "last_seen")
    )
    load_events(
        obs, {p.subject.device_id for p in pairs if any(c.kind == Kind.SECURITY_EVENT for c in p.rule.conditions)}
    )

    def instants(pair, state):
        if state.pk and state.state == State.ERROR:
            newest = (
                max((obs.at(s, now) or (state.since, 0))[0] for s in pair.watched_sensors)
                if pair.watched_sensors
                else now
            )
            if newest <= state.since:
                return  # still in error until a valid reading arrives after the impossible one
        yield now, None

    return run(pairs, instants, obs, now)


def evaluate_device(device_id: int, now: datetime | None = None) -> int:
    """A device event arrived: evaluate the rules that watch that device's events or presence."""
    return evaluate_now(current_index().by_device.get(device_id, []), now)
