"""Alerts opening, resolving and being acknowledged, each change on the timeline and notified.

The engine hands the state changes of one run to a Changes, which writes them at the end in a few
statements whatever their number: new alerts in one INSERT, resolutions in one UPDATE, the
timeline in one INSERT, notifications through one Routing, the states in one upsert. People act
through acknowledge() and resolve(). Data-quality alerts (a sensor sent impossible values) have no
rule: one per sensor.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.alerts import notify
from portal.alerts.models import SEVERITY_RANK, Alert, AlertEvent, RuleState, Severity, State
from portal.alerts.targets import Subject, contexts

MAX_FACTS = 20
CLEARED = "Cleared: the condition stopped holding."
RESOLUTION_FIELDS = ["status", "resolved_at", "resolution", "resolved_by_id", "resolved_by_email", "last_values"]
STATE_FIELDS = ["state", "since", "condition_since", "clear_since", "alert", "facts", "detail", "updated_at"]


def actor(request) -> tuple[int | None, str]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None, ""
    return user.pk, user.email


def timeline(alert: Alert, kind: str, message: str, at: datetime | None = None, request=None, **data) -> AlertEvent:
    """An unsaved entry of the alert's timeline."""
    actor_id, email = actor(request)
    return AlertEvent(
        alert=alert,
        kind=kind,
        message=message[:500],
        at=at or timezone.now(),
        actor_id=actor_id,
        actor_email=email,
        data=data,
    )


def event(alert: Alert, kind: str, message: str, at: datetime | None = None, request=None, **data) -> AlertEvent:
    entry = timeline(alert, kind, message, at, request, **data)
    entry.save()
    return entry


def summary_for(pair, context) -> str:
    return f"{pair.rule.name}: {pair.rule.summary} on {context.label}"[:300]


def new_alert(pair, context, at: datetime, facts) -> Alert:
    """The unsaved alert a rule opens for a subject, with where the subject sits and what fired it."""
    return Alert(
        rule_id=pair.rule.id,
        rule_name=pair.rule.name,
        subject_key=pair.subject.key,
        subject_label=context.label,
        sensor_id=pair.subject.sensor_id,
        device_id=pair.subject.device_id,
        site_id=context.site_id,
        asset_id=context.asset_id,
        labels={**context.labels, **pair.rule.labels},
        severity=pair.rule.severity,
        summary=summary_for(pair, context),
        opened_at=at,
        trigger_values=facts[:MAX_FACTS],
        last_values=facts[:MAX_FACTS],
    )


def mark_resolved(alert: Alert, at: datetime, resolution: str, request=None, facts=None) -> None:
    actor_id, email = actor(request)
    alert.status, alert.resolved_at, alert.resolution = Alert.Status.RESOLVED, at, resolution[:300]
    alert.resolved_by_id, alert.resolved_by_email = actor_id, email
    if facts:
        alert.last_values = facts[:MAX_FACTS]


def close(alert: Alert, at: datetime, resolution: str, request=None, facts=None) -> None:
    """Resolve one alert now (a person, a disabled rule, a data-quality alert that cleared)."""
    mark_resolved(alert, at, resolution, request, facts)
    alert.save(update_fields=RESOLUTION_FIELDS)
    event(alert, "resolved", resolution, at=at, request=request)
    notify.alert_changed(alert, notify.RESOLVED)


class Changes:
    """The states one engine run changed, with the steps each asks of its alert (engine.Step)."""

    def __init__(self, now: datetime):
        self.now = now
        self.changed: list[tuple[RuleState, object, list]] = []  # (state, pair, steps)

    def __len__(self) -> int:
        return len(self.changed)

    def add(self, state: RuleState, pair, steps) -> None:
        self.changed.append((state, pair, steps))

    def write(self) -> None:
        """Inside the engine's transaction, holding the pairs' locks. Steps: read the alerts the
        steps touch and where the opening subjects sit; carry out every state's steps in order, in
        memory (an alert may open and resolve within one batch); then write it all."""
        if not self.changed:
            return
        opening = [pair for _, pair, steps in self.changed if any(s.action == "open" for s in steps)]
        known = Alert.objects.in_bulk({s.alert_id for s, _, steps in self.changed if s.alert_id and steps})
        adopted = open_alerts_of(opening)
        places = contexts([pair.subject for pair in opening]) if opening else {}
        new, resolved, entries, notices = [], [], [], []
        for state, pair, steps in self.changed:
            if not steps:
                continue  # a state that moved without touching its alert (pending, recovering…)
            alert = known.get(state.alert_id)
            for step in steps:
                if step.action == "open":
                    alert = adopted.pop(pair.key, None)  # already open (a state lost): carry on with it
                    if alert is None:
                        alert = new_alert(pair, places[pair.subject.key], step.at, step.facts)
                        new.append(alert)
                        facts = step.facts[:MAX_FACTS]
                        entries.append(timeline(alert, "opened", f"Firing: {pair.rule.summary}.", step.at, facts=facts))
                        notices.append((alert, notify.FIRING, None))
                elif alert is not None and step.action == "resolve":
                    if alert.resolved_at is None:
                        mark_resolved(alert, step.at, CLEARED, facts=step.facts)
                        if alert.pk:
                            resolved.append(alert)
                        entries.append(timeline(alert, "resolved", CLEARED, step.at))
                        notices.append((alert, notify.RESOLVED, None))
                    alert = None
                elif alert is not None and step.action == "note":
                    entries.append(timeline(alert, "state", step.message, step.at, facts=step.facts[:MAX_FACTS]))
            state.alert = alert
        Alert.objects.bulk_create(new)  # one INSERT; the partial unique index still has the last word
        if resolved:
            Alert.objects.bulk_update(resolved, RESOLUTION_FIELDS)
        AlertEvent.objects.bulk_create(entries)
        notify.Routing(self.now).write(notices)
        save_states([state for state, _, _ in self.changed])


def open_alerts_of(pairs) -> dict[tuple[int, str], Alert]:
    """The open alerts of these (rule, subject) pairs, should any exist although their state has none."""
    if not pairs:
        return {}
    found = Alert.objects.filter(
        rule_id__in={p.rule.id for p in pairs}, subject_key__in={p.subject.key for p in pairs}, resolved_at=None
    )
    wanted = {p.key for p in pairs}
    return {key: alert for alert in found if (key := (alert.rule_id, alert.subject_key)) in wanted}


def save_states(states: list[RuleState]) -> None:
    """Every changed state in one statement, new and known rows alike: INSERT … ON CONFLICT (rule,
    subject) DO UPDATE. Known rows go in without their id, so that one statement serves both."""
    for state in states:
        state.pk = None
    RuleState.objects.bulk_create(
        states, update_conflicts=True, unique_fields=["rule", "subject_key"], update_fields=STATE_FIELDS
    )


# --- people ----------------------------------------------------------------------------------------


def acknowledge(alert_ids, request, note: str = "") -> int:
    """Acknowledge open alerts (once each: a conditional update decides); returns how many changed."""
    actor_id, email = actor(request)
    now = timezone.now()
    with transaction.atomic():
        changed = list(
            Alert.objects.select_for_update().filter(
                pk__in=alert_ids, status=Alert.Status.OPEN, resolved_at__isnull=True
            )
        )
        for alert in changed:
            alert.status, alert.acknowledged_at = Alert.Status.ACKNOWLEDGED, now
            alert.acknowledged_by_id, alert.acknowledged_by_email, alert.acknowledge_note = actor_id, email, note[:500]
            alert.save(
                update_fields=[
                    "status",
                    "acknowledged_at",
                    "acknowledged_by_id",
                    "acknowledged_by_email",
                    "acknowledge_note",
                ]
            )
            event(alert, "acknowledged", f"Acknowledged{': ' + note if note else ''}", request=request)
    return len(changed)


def resolve(alert: Alert, request, note: str = "") -> bool:
    """A person resolves an alert. The rule starts over for that target: if its condition still
    holds, it goes through pending again and opens a new alert after its duration."""
    from portal.alerts.engine import lock_pairs

    with transaction.atomic():
        if alert.rule_id:
            lock_pairs([(alert.rule_id, alert.subject_key)])
        alert = Alert.objects.select_for_update().filter(pk=alert.pk, resolved_at__isnull=True).first()
        if alert is None:
            return False
        close(
            alert,
            timezone.now(),
            f"Resolved by {actor(request)[1] or 'a person'}{': ' + note if note else ''}",
            request,
        )
        RuleState.objects.filter(alert=alert).update(
            state=State.NORMAL, since=timezone.now(), alert=None, condition_since=None, clear_since=None
        )
    return True


def resolve_for_rule(rule, reason: str, request=None) -> int:
    """The rule was disabled or is being deleted: its open alerts resolve, its states start over."""
    now = timezone.now()
    alerts = list(Alert.objects.filter(rule=rule, resolved_at__isnull=True))
    for alert in alerts:
        close(alert, now, reason, request)
    RuleState.objects.filter(rule=rule).delete()
    return len(alerts)


def resolve_departed(pairs, now: datetime) -> int:
    """Open alerts of subjects their rule no longer covers (a machine's device replaced, a sensor
    deleted or unbound from the asset, the target changed) resolve, and those subjects' states
    go: nothing would ever evaluate them again, so they would stay open for ever."""
    covered = {pair.key for pair in pairs}
    # A subject another process's newer index just took in is not departed: leave recent rows.
    settled = now - timedelta(minutes=2)
    open_alerts = Alert.objects.filter(
        kind=Alert.Kind.RULE, rule__isnull=False, resolved_at__isnull=True, created_at__lt=settled
    )
    alerts = [alert for alert in open_alerts if (alert.rule_id, alert.subject_key) not in covered]
    for alert in alerts:
        close(alert, now, f"{alert.subject_label or alert.subject_key} is no longer covered by the rule's target.")
    states = RuleState.objects.filter(since__lt=settled).values_list("pk", "rule_id", "subject_key")
    departed = [pk for pk, rule_id, key in states if (rule_id, key) not in covered]
    RuleState.objects.filter(pk__in=departed).delete()
    return len(alerts)


# --- data quality ----------------------------------------------------------------------------------


def data_quality(rejected: dict[int, list], watched: set[int], horizon: datetime, now: datetime) -> None:
    """Impossible values from sensors some rule watches: open (or extend) that sensor's data-quality alert."""
    from portal.alerts.rules import current_index

    index = current_index()
    for sensor_id, rows in rejected.items():
        rows = [r for r in rows if r[0] >= horizon]
        if sensor_id not in watched or not rows:
            continue
        pairs = index.by_sensor.get(sensor_id, [])
        severity = max((p.rule.severity for p in pairs), key=lambda s: SEVERITY_RANK[s], default=Severity.MEDIUM)
        facts = [{"ts": ts.isoformat(), "value": str(value)[:40], "reason": reason} for ts, value, reason in rows][
            :MAX_FACTS
        ]
        with transaction.atomic():
            alert = (
                Alert.objects.select_for_update()
                .filter(rule__isnull=True, subject_key=f"sensor:{sensor_id}", resolved_at__isnull=True)
                .first()
            )
            if alert is None:
                alert = open_data_quality(sensor_id, pairs[0].subject.device_id, severity, rows[0][0], facts)
                if alert is None:
                    continue
            else:
                alert.last_values = facts
                alert.save(update_fields=["last_values"])
                event(alert, "rejected", f"{len(rows)} more impossible value(s) rejected.", facts=facts)


def open_data_quality(sensor_id: int, device_id: int, severity: str, at: datetime, facts) -> Alert | None:
    subject = Subject.for_sensor(sensor_id, device_id)
    context = contexts([subject])[subject.key]
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                kind=Alert.Kind.DATA_QUALITY,
                rule_name="Data quality",
                subject_key=subject.key,
                subject_label=context.label,
                sensor_id=sensor_id,
                device_id=device_id,
                site_id=context.site_id,
                asset_id=context.asset_id,
                labels=context.labels,
                severity=severity,
                summary=f"Impossible values rejected from {context.label}"[:300],
                opened_at=at,
                trigger_values=facts,
                last_values=facts,
            )
    except IntegrityError:
        return None
    event(
        alert,
        "opened",
        "Readings outside the sensor's plausible range were rejected (see dead letters).",
        at=at,
        facts=facts,
    )
    notify.alert_changed(alert, notify.FIRING)
    return alert


def resolve_data_quality(now: datetime) -> int:
    """Data-quality alerts whose sensor has sent only valid values for the clear period resolve."""
    from telemetry import queries

    clear = timedelta(seconds=settings.ALERT_DATA_QUALITY_CLEAR_SECONDS)
    resolved = 0
    for alert in Alert.objects.filter(kind=Alert.Kind.DATA_QUALITY, resolved_at__isnull=True, sensor__isnull=False):
        last_bad = max(
            (datetime.fromisoformat(v["ts"]) for v in alert.last_values if "ts" in v), default=alert.opened_at
        )
        latest = queries.latest_values([alert.sensor_id]).get(alert.sensor_id)
        if now - last_bad >= clear and latest and latest[0] > last_bad:
            close(alert, now, f"Cleared: only valid values for {clear.total_seconds() / 60:g} min.")
            resolved += 1
    return resolved
