"""The access log (filters in the URL, CSV of exactly the filtered rows), security events, reports."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.alerts.models import Alert, SecurityEvent
from portal.core.errors import error_page
from portal.core.lists import Column, list_response
from portal.locks import report
from portal.locks.filters import AccessLogFilter
from portal.locks.models import AccessLog, BlockedAddress, Lock
from portal.locks.views import get_lock

ACCESS_COLUMNS = [
    Column("at", "at"),
    Column("lock_id", "lock.device.device_id"),
    Column("lock", "lock.name"),
    Column("method", "method"),
    Column("action", "action"),
    Column("success", "success"),
    Column("reason", "reason"),
    Column("holder", "holder"),
    Column("actor", "actor_email"),
    Column("source", "source"),
    Column("ip", "ip"),
    Column("user_agent", "user_agent"),
]


def access_log(request):
    queryset = AccessLog.objects.select_related("lock__device").order_by("-at", "-id")
    filterset = AccessLogFilter(request.GET, queryset=queryset)
    filtered = any(value for key, value in request.GET.items() if key not in ("sort", "page"))
    return list_response(
        request, filterset, "locks/access_log.html", ACCESS_COLUMNS, "access-log", {"filtered": filtered}
    )


def security(request):
    """Security events of the locks, their open alerts, and the addresses blocked as suspicious."""
    lock_devices = Lock.objects.values("device_id")
    context = {
        "events": SecurityEvent.objects.filter(device_id__in=lock_devices).select_related("device__lock")[:100],
        "alerts": Alert.objects.filter(device_id__in=lock_devices).exclude(status=Alert.Status.RESOLVED)[:50],
        "blocked": BlockedAddress.objects.all()[:50],
    }
    return render(request, "locks/security.html", context)


def monthly_report(request, pk):
    """The lock's access report of a month (?month=YYYY-MM, default the current one) as PDF."""
    lock = get_lock(pk)
    month = report.parse_month(request.GET.get("month", ""))
    if month is None:
        return error_page(request, 400, "month must be YYYY-MM between 2000 and 2099")
    response = HttpResponse(report.build(lock, month), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="access-{lock.lock_id}-{month:%Y-%m}.pdf"'
    return response


@require_POST
def email_report(request, pk):
    """Email the month's report to the person asking (a Huey task builds and sends it)."""
    from django.db import connection

    from portal.locks.tasks import send_report

    lock = get_lock(pk)
    month = report.parse_month(request.POST.get("month", ""))
    if month is None:
        return error_page(request, 400, "month must be YYYY-MM between 2000 and 2099")
    send_report(connection.schema_name, lock.pk, f"{month:%Y-%m}", request.user.email)
    messages.info(request, f"The report of {month:%B %Y} is on its way to {request.user.email}.")
    return redirect(lock)
