"""'Would have fired N times': a rule replayed over the last 24 hours of stored data.

The replay runs the engine's own state machine on a fresh state per subject, at every stored
reading and at every minute (as the live engine's periodic run does), so durations, hysteresis,
keep-firing-for, no data and offline behave exactly as they would have. Nothing is written.
Readings that were rejected (dead letters) are not part of the replay: only stored values are.
"""

import bisect
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from portal.alerts.engine import FIRING_LIKE, Observations, fresh_state, rule_truth, step
from portal.alerts.models import SecurityEvent
from portal.alerts.rules import Pair, pairs_for
from portal.alerts.targets import contexts
from telemetry import queries

MAX_SUBJECTS = 100
WINDOW = timedelta(hours=24)


@dataclass
class Replay:
    label: str
    fired_at: list = field(default_factory=list)
    readings: int = 0
    capped: bool = False


@dataclass
class Result:
    replays: list[Replay]
    subjects: int
    truncated: bool

    @property
    def fired(self) -> int:
        return sum(len(r.fired_at) for r in self.replays)


def run(rule, conditions, now=None) -> Result:
    """Replay a rule (saved or not) with these conditions (RuleCondition objects, saved or not)."""
    now = now or timezone.now()
    rule.conditions_override = list(conditions)
    pairs = pairs_for([rule])
    names = contexts([p.subject for p in pairs[:MAX_SUBJECTS]])
    replays = [replay(pair, names[pair.subject.key].label, now) for pair in pairs[:MAX_SUBJECTS]]
    return Result(replays=replays, subjects=len(pairs), truncated=len(pairs) > MAX_SUBJECTS)


def replay(pair: Pair, label: str, now) -> Replay:
    start = now - WINDOW
    obs = Observations()
    sensors = pair.watched_sensors
    result = queries.raw_readings(sensors, start - timedelta(hours=1), now)
    for sid, ts, value in result.rows:
        obs.add(sid, [(ts, value)])
    obs.settle()
    device_times = sorted(ts for _, ts, _ in result.rows)
    events = list(SecurityEvent.objects.filter(device_id=pair.subject.device_id, occurred_at__gte=start - WINDOW))
    instants = {ts for _, ts, _ in result.rows if ts >= start}
    instants |= {start + timedelta(minutes=m) for m in range(int(WINDOW.total_seconds() // 60) + 1)}
    state = fresh_state(pair, start)
    found = Replay(label=label, readings=len(result.rows), capped=result.capped)
    for at in sorted(instants):
        i = bisect.bisect_right(device_times, at)
        obs.last_seen[pair.subject.device_id] = device_times[i - 1] if i else None
        obs.events[pair.subject.device_id] = [e for e in events if e.occurred_at <= at]
        firing = state.state in FIRING_LIKE
        truth, facts = rule_truth(pair, obs, at, firing)
        for change in step(state, pair, truth, at, facts):
            if change.action == "open":
                found.fired_at.append(at)
                state.alert_id = -1  # an alert stands open in the replay
            elif change.action == "resolve":
                state.alert_id = None
    return found
