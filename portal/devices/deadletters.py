"""The dead-letter page: input that could not be stored, with its reason, and replay."""

import django_filters
from django import forms
from django.contrib import messages
from django.db.models import Q
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from portal.audit.log import record
from portal.core.filters import ListFilterSet
from portal.core.lists import Column, list_response
from portal.facilities.topics import replay
from portal.tenancy.access import role_required
from portal.tenancy.models import Role
from telemetry.models import DeadLetter

REPLAY_LIMIT = 1000  # letters per replay, so one click cannot hold a transaction for minutes
COLUMNS = [
    Column("received_at", "received_at"), Column("source", "source"), Column("reason", "reason"), Column("detail", "detail"),
    Column("topic", "topic"), Column("payload", "payload"), Column("replayed_at", "replayed_at"),
]


def reason_choices():
    reasons = DeadLetter.objects.order_by("reason").values_list("reason", flat=True).distinct()
    return [(reason, reason.replace("_", " ")) for reason in reasons]


class DeadLetterFilter(ListFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    reason = django_filters.ChoiceFilter(choices=reason_choices, empty_label="Any reason")
    source = django_filters.ChoiceFilter(choices=DeadLetter.Source.choices, empty_label="Any source")
    replayed = django_filters.ChoiceFilter(choices=[("no", "Not replayed"), ("yes", "Replayed")], method="by_replayed", empty_label="Replayed or not", label="Replayed")
    since = django_filters.DateFilter(field_name="received_at", lookup_expr="date__gte", label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = django_filters.DateFilter(field_name="received_at", lookup_expr="date__lte", label="To", widget=forms.DateInput(attrs={"type": "date"}))
    sort = django_filters.OrderingFilter(fields=(("received_at", "time"), ("reason", "reason"), ("topic", "topic")))

    class Meta:
        model = DeadLetter
        fields = ["q", "reason", "source", "replayed", "since", "until"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(topic__icontains=value) | Q(payload__icontains=value) | Q(detail__icontains=value))

    def by_replayed(self, queryset, name, value):
        return queryset.filter(replayed_at__isnull=(value == "no"))


@role_required(Role.ADMIN)
def dead_letter_list(request):
    filterset = DeadLetterFilter(request.GET, queryset=DeadLetter.objects.order_by("-received_at", "-id"))
    return list_response(request, filterset, "devices/dead_letters.html", COLUMNS, "dead-letters")


@require_POST
@role_required(Role.ADMIN)
def dead_letter_replay(request):
    ids = [int(value) for value in request.POST.getlist("ids") if value.isdigit()][:REPLAY_LIMIT]
    letters = list(DeadLetter.objects.filter(pk__in=ids, source=DeadLetter.Source.MQTT, replayed_at=None))
    back = request.POST.get("next", "")
    back = back if back.startswith("/dead-letters/") else "/dead-letters/"
    if not letters:
        messages.error(request, "Select dead letters from MQTT that were not replayed yet.")
        return redirect(back)
    result = replay(letters)
    record(request, "dead_letters.replayed", None, {"count": len(letters), **result.as_dict()},
           object_type="telemetry.deadletter", object_repr=f"{len(letters)} dead letters")
    messages.success(request, f"Replayed {len(letters)}: {result.written} readings written, {result.duplicates} already stored, "
                              f"{result.rejected} rejected again (see the newest dead letters).")
    return redirect(back)
