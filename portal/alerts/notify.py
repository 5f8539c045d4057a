"""Routing: which channels hear of an alert change, and when (group wait, quiet hours, silences).

An alert change writes one Notification per routed channel, in the transaction that changed the
alert. A silenced alert's rows are written too, final at once: skipped, naming the silence. The
rest wait until their due time and are then dispatched per channel, together
(delivery.dispatch_channel): alerts that change within a channel's group wait go out as one message.

A Routing reads what routing needs (channels with their rules and sites, active silences, the
groups waiting) once, so an engine run that opens many alerts writes all their notifications in
one INSERT and schedules one dispatch per channel and due time.
"""

from datetime import datetime, timedelta

from django.contrib.postgres.aggregates import ArrayAgg
from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Min, Q, Value
from django.utils import timezone

from portal.alerts.models import Alert, Channel, Notification, Severity, Silence

FIRING, RESOLVED, REPEAT = Notification.Event.FIRING, Notification.Event.RESOLVED, Notification.Event.REPEAT


def routes(channel: Channel, alert: Alert) -> bool:
    """channel: from enabled_channels(), which reads the rules and sites it is limited to."""
    if alert.severity not in channel.severity_list:
        return False
    if channel.rule_ids and alert.rule_id not in channel.rule_ids:
        return False
    return not channel.site_ids or alert.site_id in channel.site_ids


def enabled_channels() -> list[Channel]:
    """Enabled channels, each with the ids of the rules and sites it is limited to, in one query."""
    limits = {
        f"{name}_ids": ArrayAgg(f"{name}s__id", distinct=True, filter=Q(**{f"{name}s__isnull": False}), default=[])
        for name in ("rule", "site")
    }
    return list(Channel.objects.filter(enabled=True).annotate(**limits))


def in_quiet_hours(channel: Channel, at: datetime) -> datetime | None:
    """The end of the quiet hours `at` falls in (channel times are the tenant's local time), or None."""
    if channel.quiet_start is None or channel.quiet_end is None or channel.quiet_start == channel.quiet_end:
        return None
    local = timezone.localtime(at)
    start = local.replace(hour=channel.quiet_start.hour, minute=channel.quiet_start.minute, second=0, microsecond=0)
    end = local.replace(hour=channel.quiet_end.hour, minute=channel.quiet_end.minute, second=0, microsecond=0)
    if channel.quiet_start < channel.quiet_end:  # e.g. 12:00–14:00 the same day
        return end if start <= local < end else None
    if local >= start:  # e.g. 22:00–07:00: from start to tomorrow's end
        return end + timedelta(days=1)
    return end if local < end else None


def waiting_groups(now: datetime) -> dict[int, datetime]:
    """{channel id: due time of its group still gathering}: the earliest undispatched row due within
    the channel's group wait. A group held back by quiet hours is further off and not joined, so a
    critical alert allowed through quiet hours does not wait with it until morning."""
    limit = ExpressionWrapper(
        Value(now) + F("channel__group_wait_seconds") * timedelta(seconds=1), output_field=DateTimeField()
    )
    rows = (
        Notification.objects.filter(delivery__isnull=True, status=Notification.Status.PENDING, due_at__gt=now)
        .filter(due_at__lte=limit)
        .values("channel_id")
        .annotate(first=Min("due_at"))
    )
    return {row["channel_id"]: row["first"] for row in rows}


class Routing:
    """Routes alert changes for one transaction; see the module docstring."""

    def __init__(self, now: datetime | None = None):
        self.now = now or timezone.now()
        self._channels = None
        self._silences = None
        self._waiting = None

    @property
    def channels(self) -> list[Channel]:
        if self._channels is None:
            self._channels = enabled_channels()
        return self._channels

    def silence_for(self, alert: Alert) -> Silence | None:
        if self._silences is None:
            self._silences = list(Silence.objects.active(self.now))
        return next((s for s in self._silences if s.matches(alert)), None)

    def due_time(self, channel: Channel, alert: Alert) -> datetime:
        """Join the channel's group that is still gathering, or start one; then wait out quiet hours."""
        if self._waiting is None:
            self._waiting = waiting_groups(self.now)
        due = self._waiting.get(channel.pk) or self.now + timedelta(seconds=channel.group_wait_seconds)
        if due > self.now:
            self._waiting[channel.pk] = due  # the next alert of this run joins it
        quiet_end = in_quiet_hours(channel, due)
        if quiet_end and not (alert.severity == Severity.CRITICAL and channel.quiet_allows_critical):
            due = quiet_end
        return due

    def notifications(self, alert: Alert, event: str, channels=None) -> list[Notification]:
        """The unsaved rows of one alert change: one per channel given, or per routed channel."""
        targets = [c for c in self.channels if routes(c, alert)] if channels is None else channels
        if event == RESOLVED:
            targets = [c for c in targets if c.notify_resolved]
        if not targets:
            return []
        silence = self.silence_for(alert)
        if silence:
            detail = f"skipped: silenced by silence #{silence.pk} ({silence.reason})"[:300]
            return [
                Notification(
                    alert=alert,
                    channel=channel,
                    event=event,
                    status=Notification.Status.SKIPPED,
                    detail=detail,
                    finished_at=self.now,
                )
                for channel in targets
            ]
        return [
            Notification(alert=alert, channel=channel, event=event, due_at=self.due_time(channel, alert))
            for channel in targets
        ]

    def write(self, changes) -> list[Notification]:
        """Write the notifications of these (alert, event, channels or None) changes in one INSERT;
        dispatching is scheduled once committed, once per channel and due time."""
        from portal.alerts.delivery import schedule_dispatch

        rows = [row for alert, event, channels in changes for row in self.notifications(alert, event, channels)]
        if not rows:
            return []
        Notification.objects.bulk_create(rows)
        waiting = {(r.channel_id, r.due_at) for r in rows if r.status == Notification.Status.PENDING}
        for channel_id, due in sorted(waiting):
            transaction.on_commit(lambda c=channel_id, d=due: schedule_dispatch(c, d))
        return rows


def alert_changed(alert: Alert, event: str, channels=None, now: datetime | None = None) -> list[Notification]:
    """Write the notifications of one alert change (to `channels`, or to every routed channel)."""
    return Routing(now).write([(alert, event, channels)])


def repeat_due(now: datetime | None = None) -> int:
    """Open, unacknowledged alerts whose channel's repeat interval passed since it last heard of them."""
    now = now or timezone.now()
    routing = Routing(now)
    channels = [c for c in routing.channels if c.repeat_interval_minutes > 0]
    if not channels:
        return 0
    alerts = list(Alert.objects.filter(status=Alert.Status.OPEN))
    heard = (
        Notification.objects.filter(alert__in=alerts)
        .order_by("alert_id", "channel_id", "-created_at")
        .distinct("alert_id", "channel_id")
        .values_list("alert_id", "channel_id", "created_at")
    )
    last = {(alert_id, channel_id): at for alert_id, channel_id, at in heard}
    changes = []
    for alert in alerts:
        due = [
            c
            for c in channels
            if routes(c, alert)
            and now - last.get((alert.pk, c.pk), alert.opened_at) >= timedelta(minutes=c.repeat_interval_minutes)
        ]
        if due:
            changes.append((alert, REPEAT, due))
    return len(routing.write(changes))
