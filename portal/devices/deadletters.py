"""The dead-letter page: input that could not be stored, with its reason, counts by reason, and replay."""

import json

import django_filters
from django.contrib import messages
from django.db.models import Count, Q
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from portal.audit.log import record
from portal.core.filters import ListFilterSet, date_range
from portal.core.lists import Column, list_response
from portal.facilities.topics import replay
from portal.tenancy.access import role_required
from portal.tenancy.models import Role
from telemetry.bounds import whole_number
from telemetry.models import DeadLetter, TelemetrySettings

REPLAY_LIMIT = 1000  # letters per replay, so one click cannot hold a transaction for minutes
COLUMNS = [
    Column("received_at", "received_at"),
    Column("source", "source"),
    Column("reason", "reason"),
    Column("detail", "detail"),
    Column("topic", "topic"),
    Column("payload", "payload"),
    Column("replayed_at", "replayed_at"),
]


def reason_choices():
    reasons = DeadLetter.objects.order_by("reason").values_list("reason", flat=True).distinct()
    return [(reason, reason.replace("_", " ")) for reason in reasons]


class DeadLetterFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    reason = django_filters.ChoiceFilter(choices=reason_choices, empty_label="Any reason")
    source = django_filters.ChoiceFilter(choices=DeadLetter.Source.choices, empty_label="Any source")
    replayed = django_filters.ChoiceFilter(
        choices=[("no", "Not replayed"), ("yes", "Replayed")],
        method="by_replayed",
        empty_label="Replayed or not",
        label="Replayed",
    )
    sort = django_filters.OrderingFilter(fields=(("received_at", "time"), ("reason", "reason"), ("topic", "topic")))

    class Meta:
        model = DeadLetter
        fields = ["q", "reason", "source", "replayed"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(topic__icontains=value) | Q(payload__icontains=value) | Q(detail__icontains=value))

    def by_replayed(self, queryset, name, value):
        return queryset.filter(replayed_at__isnull=(value == "no"))


DeadLetterFilter.base_filters.update(date_range("received_at"))


@role_required(Role.OPERATOR)
def dead_letter_list(request):
    filterset = DeadLetterFilter(request.GET, queryset=DeadLetter.objects.order_by("-received_at", "-id"))
    context = {
        "by_reason": counts_by_reason(filterset),
        "retention_days": TelemetrySettings.current().dead_letter_retention_days,
    }
    return list_response(request, filterset, "devices/dead_letters.html", COLUMNS, "dead-letters", context)


def counts_by_reason(filterset) -> list[dict]:
    """How many letters of the filtered list have each reason, most first; a "capped" letter
    counts the rejections it stands for (its payload's not_kept), so the totals are whole."""
    rows = filterset.qs.order_by().values("reason").annotate(letters=Count("id"))
    counts = {row["reason"]: row["letters"] for row in rows}
    if "capped" in counts:
        summaries = filterset.qs.filter(reason="capped").order_by().values_list("payload", flat=True)[:1000]
        counts["capped"] = sum(not_kept(payload) for payload in summaries)
    return [{"reason": reason, "count": count} for reason, count in sorted(counts.items(), key=lambda kv: -kv[1])]


def not_kept(payload: str) -> int:
    try:
        return int(json.loads(payload).get("not_kept", 0))
    except (ValueError, TypeError, AttributeError):
        return 0


@require_POST
@role_required(Role.OPERATOR)
def dead_letter_replay(request):
    ids = [pk for value in request.POST.getlist("ids")[:REPLAY_LIMIT] if (pk := whole_number(value)) is not None]
    letters = list(DeadLetter.objects.filter(pk__in=ids, source=DeadLetter.Source.MQTT, replayed_at=None))
    back = request.POST.get("next", "")
    back = back if back.startswith("/dead-letters/") else "/dead-letters/"
    if not letters:
        messages.error(request, "Select dead letters from MQTT that were not replayed yet.")
        return redirect(back)
    result = replay(letters)
    record(
        request,
        "dead_letters.replayed",
        None,
        {"count": len(letters), **result.as_dict()},
        object_type="telemetry.deadletter",
        object_repr=f"{len(letters)} dead letters",
    )
    messages.success(
        request,
        f"Replayed {len(letters)}: {result.written} readings written, {result.duplicates} already stored, "
        f"{result.rejected} rejected again (see the newest dead letters).",
    )
    return redirect(back)
