"""The alerts' JSON API: list (the alert page's filters), acknowledge and resolve.

Built with the project's toolkit (portal.api.toolkit): API keys, access tokens or a session;
every member reads, operators acknowledge and resolve, as on the pages. The list is the page's
AlertFilter over the same queryset, and a change goes through portal.alerts.alerting as a
person's click does (the timeline, the rule's state, the audit trail).
"""

from datetime import datetime
from typing import Literal

from django.shortcuts import get_object_or_404
from ninja import Field, Query

from portal.alerts import alerting
from portal.alerts.filters import AlertFilter
from portal.alerts.models import Alert
from portal.api.toolkit import ErrorOut, PageNumber, Router, Schema, audit, filtered, member, moment, paginate, text
from portal.tenancy.models import Role

router = Router(tags=["Alerts"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut}
ID = Field(None, ge=1, le=2**31 - 1)


class AlertQuery(Schema):
    q: text(100) | None = Field(None, description="Search in summary, target and rule name")
    status: Literal["active", "open", "acknowledged", "resolved"] | None = Field(
        None, description="active: open or acknowledged"
    )
    severity: Literal["low", "medium", "high", "critical"] | None = None
    site: int | None = ID
    asset: int | None = ID
    rule: int | None = ID
    kind: Literal["rule", "data_quality"] | None = None
    since: moment | None = Field(None, description="Opened at or after (ISO 8601)")
    until: moment | None = Field(None, description="Opened before (ISO 8601)")


class AlertOut(Schema):
    id: int
    status: str
    severity: str
    kind: str
    summary: str
    rule: int | None = Field(alias="rule_id")
    rule_name: str
    target: str = Field(alias="subject_label")
    site: int | None = Field(alias="site_id")
    asset: int | None = Field(alias="asset_id")
    sensor: int | None = Field(alias="sensor_id")
    device: int | None = Field(alias="device_id")
    labels: dict
    trigger_values: list
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str = Field(alias="acknowledged_by_email")
    acknowledge_note: str
    resolved_at: datetime | None
    resolved_by: str = Field(alias="resolved_by_email")
    resolution: str


class NoteIn(Schema):
    """The body is optional: a POST without one acknowledges or resolves without a note."""

    note: text(500) = ""


@router.get("/api/v1/alerts/", response={200: list[AlertOut], **ERRORS}, auth=member(), summary="Alerts")
@paginate(PageNumber)
def alert_list(request, filters: Query[AlertQuery]):
    return filtered(AlertFilter, filters, Alert.objects.order_by("-opened_at", "-id"))


@router.get("/api/v1/alerts/{alert_id}/", response={200: AlertOut, **ERRORS}, auth=member(), summary="An alert")
def alert_detail(request, alert_id: int):
    return get_object_or_404(Alert, pk=alert_id)


@router.post(
    "/api/v1/alerts/{alert_id}/acknowledge/",
    response={200: AlertOut, **ERRORS},
    auth=member(Role.OPERATOR),
    summary="Acknowledge an open alert (an acknowledged or resolved one is left as it is)",
)
def alert_acknowledge(request, alert_id: int, payload: NoteIn | None = None):
    alert, note = get_object_or_404(Alert, pk=alert_id), payload.note if payload else ""
    if alerting.acknowledge([alert.pk], request, note):
        audit(request, "alert.acknowledged", alert, {"note": note})
    return Alert.objects.get(pk=alert.pk)


@router.post(
    "/api/v1/alerts/{alert_id}/resolve/",
    response={200: AlertOut, **ERRORS},
    auth=member(Role.OPERATOR),
    summary="Resolve an alert (the rule starts over for its target)",
)
def alert_resolve(request, alert_id: int, payload: NoteIn | None = None):
    alert, note = get_object_or_404(Alert, pk=alert_id), payload.note if payload else ""
    if alerting.resolve(alert, request, note):
        audit(request, "alert.resolved", alert, {"note": note})
    return Alert.objects.get(pk=alert.pk)
