"""Pages of the alert engine. Every member reads; operators acknowledge, resolve and silence;
admins edit rules and channels. Every change a person makes is in the audit log."""

from datetime import timedelta

from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.alerts import alerting, backtest, delivery
from portal.alerts.filters import AlertFilter, NotificationFilter, RuleFilter, SilenceFilter
from portal.alerts.forms import (
    BulkAcknowledgeForm,
    ChannelForm,
    ConditionFormSet,
    NoteForm,
    RuleForm,
    SilenceForm,
    check_conditions_fit,
)
from portal.alerts.models import Alert, AlertRule, Channel, Notification, RuleState, Silence
from portal.alerts.templatetags.alerts import target_text
from portal.audit.log import record
from portal.core.charts import raw_chart
from portal.core.editing import delete_view, form_view
from portal.core.lists import Column, list_response
from portal.tenancy.access import role_required
from portal.tenancy.models import Role
from telemetry import queries

ALERT_COLUMNS = [
    Column("id", "pk"),
    Column("status", "status"),
    Column("severity", "severity"),
    Column("kind", "kind"),
    Column("rule", "rule_name"),
    Column("target", "subject_label"),
    Column("site", "site.name"),
    Column("asset", "asset.tag"),
    Column("summary", "summary"),
    Column("opened_at", "opened_at"),
    Column("acknowledged_at", "acknowledged_at"),
    Column("acknowledged_by", "acknowledged_by_email"),
    Column("resolved_at", "resolved_at"),
    Column("resolution", "resolution"),
]
RULE_COLUMNS = [
    Column("name", "name"),
    Column("enabled", "enabled"),
    Column("severity", "severity"),
    Column("target", lambda r: describe_target(r)),
    Column("conditions", lambda r: f" {r.combine.upper()} ".join(str(c) for c in r.conditions.all())),
    Column("for_seconds", "for_seconds"),
    Column("keep_firing_for_seconds", "keep_firing_for_seconds"),
    Column("updated_at", "updated_at"),
]
SILENCE_COLUMNS = [
    Column("id", "pk"),
    Column("status", "status"),
    Column("matchers", lambda s: "; ".join(s.matchers())),
    Column("reason", "reason"),
    Column("starts_at", "starts_at"),
    Column("ends_at", "ends_at"),
    Column("created_by", "created_by_email"),
]
NOTIFICATION_COLUMNS = [
    Column("id", "pk"),
    Column("created_at", "created_at"),
    Column("channel", "channel.name"),
    Column("kind", lambda n: n.channel.kind),
    Column("event", "event"),
    Column("alert", lambda n: n.alert_id or ""),
    Column("status", "status"),
    Column("attempts", lambda n: n.delivery.attempts if n.delivery else 0),
    Column("detail", "detail"),
    Column("finished_at", "finished_at"),
]
CHART_SPAN = timedelta(hours=3)


describe_target = target_text


# --- alerts ----------------------------------------------------------------------------------------


def alert_list(request):
    queryset = Alert.objects.select_related("site", "asset").order_by("-opened_at", "-id")
    context = {"ack_form": NoteForm(), "filtered": bool(set(request.GET) - {"sort", "page"})}
    return list_response(
        request, AlertFilter(request.GET, queryset=queryset), "alerts/alerts.html", ALERT_COLUMNS, "alerts", context
    )


def alert_detail(request, pk):
    alert = get_object_or_404(Alert.objects.select_related("rule", "site", "asset", "sensor", "device"), pk=pk)
    context = {
        "alert": alert,
        "events": alert.events.all(),
        "notifications": alert.notifications.select_related("channel", "delivery").order_by("-created_at")[:50],
        "chart": alert_chart(alert),
        "note_form": NoteForm(),
    }
    return render(request, "alerts/alert_detail.html", context)


def alert_chart(alert) -> dict | None:
    """Readings of the alert's sensor around the moment it fired, with the thresholds it crossed."""
    if not alert.sensor_id:
        return None
    end = min((alert.resolved_at or timezone.now()) + CHART_SPAN / 3, timezone.now())
    rows = queries.raw_readings([alert.sensor_id], alert.opened_at - CHART_SPAN, end, limit=2000).rows
    data = raw_chart(rows, alert.sensor.unit if alert.sensor else "")
    thresholds = sorted(
        {
            c.threshold
            for c in (alert.rule.conditions.all() if alert.rule else [])
            if c.threshold is not None and not c.sensor_key
        }
    )
    for n, value in enumerate(thresholds):
        data["series"].append(
            {"label": f"threshold {value:g}" if n == 0 else f"{value:g}", "values": [value] * len(data["x"])}
        )
    data["marker"] = int(alert.opened_at.timestamp())
    return data


@require_POST
@role_required(Role.OPERATOR)
def alert_acknowledge(request):
    form = BulkAcknowledgeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose the alerts to acknowledge.")
        return redirect(request.POST.get("next") or reverse("alerts-alert-list"))
    ids, note = form.cleaned_data["ids"], form.cleaned_data["note"]
    changed = alerting.acknowledge(ids, request, note)
    for alert in Alert.objects.filter(pk__in=ids, acknowledged_by_id=request.user.pk):
        record(request, "alert.acknowledged", alert, {"note": note})
    messages.success(
        request,
        f"{changed} alert(s) acknowledged."
        if changed
        else "Nothing to acknowledge: those alerts were already acknowledged or resolved.",
    )
    target = request.POST.get("next", "")
    return redirect(target if target.startswith("/") and not target.startswith("//") else reverse("alerts-alert-list"))


@require_POST
@role_required(Role.OPERATOR)
def alert_resolve(request, pk):
    alert = get_object_or_404(Alert, pk=pk)
    form = NoteForm(request.POST)
    note = form.cleaned_data["note"] if form.is_valid() else ""
    if alerting.resolve(alert, request, note):
        record(request, "alert.resolved", alert, {"note": note})
        messages.success(request, f"Alert #{alert.pk} resolved.")
    else:
        messages.info(request, f"Alert #{alert.pk} was already resolved.")
    return redirect("alerts-alert-detail", pk=alert.pk)


# --- rules -----------------------------------------------------------------------------------------


def rule_list(request):
    queryset = AlertRule.objects.prefetch_related("conditions").order_by("name", "id")
    return list_response(
        request, RuleFilter(request.GET, queryset=queryset), "alerts/rules.html", RULE_COLUMNS, "alert-rules"
    )


def rule_detail(request, pk):
    rule = get_object_or_404(AlertRule.objects.prefetch_related("conditions"), pk=pk)
    result = backtest.run(rule, list(rule.conditions.all())) if request.GET.get("test") else None
    context = {
        "rule": rule,
        "target": describe_target(rule),
        "states": RuleState.objects.filter(rule=rule).select_related("alert").order_by("-updated_at")[:100],
        "open_alerts": rule.alerts.active().order_by("-opened_at")[:50],
        "test": result,
    }
    return render(request, "alerts/rule_detail.html", context)


@role_required(Role.ADMIN)
def rule_create(request):
    return rule_form(request, AlertRule())


@role_required(Role.ADMIN)
def rule_edit(request, pk):
    return rule_form(request, get_object_or_404(AlertRule, pk=pk))


def rule_form(request, rule):
    """Create or edit a rule and its conditions; 'Test' replays the form's rule over the last 24 h unsaved."""
    creating = rule.pk is None
    form = RuleForm(request.POST or None, instance=rule)
    formset = ConditionFormSet(request.POST or None, instance=rule, prefix="conditions")
    result = None
    if request.method == "POST":
        valid = form.is_valid() & formset.is_valid() and check_conditions_fit(form, formset)
        if valid and "test" in request.POST:
            draft = form.save(commit=False)
            conditions = [f.save(commit=False) for f in formset.kept]
            for n, c in enumerate(conditions):
                c.position = n
            result = backtest.run(draft, conditions)
        elif valid:
            with transaction.atomic():
                before = {"enabled": rule.enabled} if not creating else {}
                rule = form.save()
                formset.instance = rule
                formset.save()
                for n, c in enumerate(rule.conditions.all()):
                    c.position = n
                    c.save(update_fields=["position"])
                if before.get("enabled") and not rule.enabled:
                    alerting.resolve_for_rule(rule, "Resolved: the rule was disabled.", request)
                changes = {name: str(form.cleaned_data.get(name))[:200] for name in form.changed_data}
                record(request, "alert_rule.created" if creating else "alert_rule.updated", rule, changes)
            messages.success(request, f"Rule “{rule}” saved.")
            return redirect("alerts-rule-detail", pk=rule.pk)
    status = (
        400 if request.method == "POST" and (form.errors or any(formset.errors) or formset.non_form_errors()) else 200
    )
    context = {"form": form, "formset": formset, "rule": rule if not creating else None, "test": result}
    return render(request, "alerts/rule_form.html", context, status=status)


@require_POST
@role_required(Role.ADMIN)
def rule_toggle(request, pk):
    rule = get_object_or_404(AlertRule, pk=pk)
    with transaction.atomic():
        rule.enabled = not rule.enabled
        rule.save(update_fields=["enabled", "updated_at"])
        if not rule.enabled:
            alerting.resolve_for_rule(rule, "Resolved: the rule was disabled.", request)
        record(request, "alert_rule.enabled" if rule.enabled else "alert_rule.disabled", rule)
    messages.success(request, f"Rule “{rule}” {'enabled' if rule.enabled else 'disabled'}.")
    return redirect("alerts-rule-detail", pk=rule.pk)


@role_required(Role.ADMIN)
def rule_delete(request, pk):
    rule = get_object_or_404(AlertRule, pk=pk)
    if request.method == "POST":
        alerting.resolve_for_rule(rule, "Resolved: the rule was deleted.", request)
    return delete_view(
        request,
        rule,
        action="alert_rule.deleted",
        success_url=reverse("alerts-rule-list"),
        cancel_url=reverse("alerts-rule-detail", args=[rule.pk]),
    )


# --- silences --------------------------------------------------------------------------------------


def silence_list(request):
    queryset = Silence.objects.select_related("rule", "site").order_by("-starts_at", "-id")
    return list_response(
        request, SilenceFilter(request.GET, queryset=queryset), "alerts/silences.html", SILENCE_COLUMNS, "silences"
    )


@role_required(Role.OPERATOR)
def silence_create(request):
    initial = {
        key: request.GET[key]
        for key in ("rule", "subject_key", "site", "reason")
        if request.GET.get(key, "").isascii() and key in request.GET
    }
    form = SilenceForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        silence = form.save(commit=False)
        silence.created_by_id, silence.created_by_email = alerting.actor(request)
        silence.save()
        record(
            request,
            "silence.created",
            silence,
            {"matchers": silence.matchers(), "ends_at": silence.ends_at.isoformat()},
        )
        messages.success(
            request, f"Silence #{silence.pk} set until {timezone.localtime(silence.ends_at):%Y-%m-%d %H:%M}."
        )
        return redirect("alerts-silence-list")
    context = {"form": form, "title": "New silence", "cancel_url": reverse("alerts-silence-list")}
    return render(request, "includes/object_form.html", context, status=400 if form.errors else 200)


@require_POST
@role_required(Role.OPERATOR)
def silence_expire(request, pk):
    silence = get_object_or_404(Silence, pk=pk)
    now = timezone.now()
    if Silence.objects.filter(pk=pk, ends_at__gt=now).update(ends_at=now, starts_at=min(silence.starts_at, now)):
        record(request, "silence.expired", silence)
        messages.success(request, f"Silence #{pk} ended.")
    return redirect("alerts-silence-list")


# --- channels and the delivery log -----------------------------------------------------------------


def channel_list(request):
    channels = Channel.objects.prefetch_related("rules", "sites").order_by("name")
    return render(request, "alerts/channels.html", {"channels": channels})


@role_required(Role.ADMIN)
def channel_create(request):
    return form_view(
        request,
        ChannelForm,
        template="includes/object_form.html",
        action="channel.created",
        success_url=reverse("alerts-channel-list"),
        context={"title": "New channel", "cancel_url": reverse("alerts-channel-list")},
    )


@role_required(Role.ADMIN)
def channel_edit(request, pk):
    channel = get_object_or_404(Channel, pk=pk)
    return form_view(
        request,
        ChannelForm,
        instance=channel,
        template="includes/object_form.html",
        action="channel.updated",
        success_url=reverse("alerts-channel-list"),
        context={"title": f"Edit {channel}", "cancel_url": reverse("alerts-channel-list")},
    )


@role_required(Role.ADMIN)
def channel_delete(request, pk):
    channel = get_object_or_404(Channel, pk=pk)
    url = reverse("alerts-channel-list")
    return delete_view(request, channel, action="channel.deleted", success_url=url, cancel_url=url)


@require_POST
@role_required(Role.ADMIN)
def channel_test(request, pk):
    channel = get_object_or_404(Channel, pk=pk)
    sent = delivery.send_test(channel)
    record(request, "channel.tested", channel)
    sent.refresh_from_db()
    messages.info(
        request,
        f"Test to “{channel}”: {sent.get_status_display().lower()}{' — ' + sent.detail if sent.detail else ''}.",
    )
    return redirect(reverse("alerts-notification-list") + f"?channel={channel.pk}")


def notification_list(request):
    queryset = Notification.objects.select_related("channel", "alert", "delivery").order_by("-created_at", "-id")
    return list_response(
        request,
        NotificationFilter(request.GET, queryset=queryset),
        "alerts/notifications.html",
        NOTIFICATION_COLUMNS,
        "deliveries",
    )


def notification_detail(request, pk):
    item = get_object_or_404(Notification.objects.select_related("channel", "alert", "delivery"), pk=pk)
    attempts = item.delivery.attempt_log.all() if item.delivery else []
    together = item.delivery.items.exclude(pk=item.pk).select_related("alert") if item.delivery else []
    return render(
        request, "alerts/notification_detail.html", {"item": item, "attempts": attempts, "together": together}
    )
