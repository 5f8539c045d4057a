"""A lock's monthly access report as PDF (fpdf2): totals by outcome and method, then every attempt.

Times are in the lock's zone; the month is the lock's local calendar month. Core fonts only
(Latin-1): other characters of names are replaced, never a failure.
"""

import re
from collections import Counter
from datetime import date, datetime, time

from django.utils import timezone
from fpdf import FPDF

from portal.locks.models import AccessLog, Lock

MAX_ROWS = 5000  # attempts listed; the totals count them all
MONTH = re.compile(r"(20\d\d)-(0[1-9]|1[0-2])")


def parse_month(value: str) -> date | None:
    if not value:
        today = timezone.localdate()
        return today.replace(day=1)
    match = MONTH.fullmatch(value.strip()[:7])
    return date(int(match[1]), int(match[2]), 1) if match else None


def month_span(lock: Lock, month: date) -> tuple[datetime, datetime]:
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return datetime.combine(month, time.min, lock.zone), datetime.combine(following, time.min, lock.zone)


def latin(text: str) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")


def build(lock: Lock, month: date) -> bytes:
    start, end = month_span(lock, month)
    logs = AccessLog.objects.filter(lock=lock, at__gte=start, at__lt=end).order_by("at", "id")
    totals = Counter((row.success, row.method) for row in logs.only("success", "method").iterator())
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_title(latin(f"Access report {lock.name} {month:%Y-%m}"))
    pdf.add_page()
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(0, 10, latin(f"Access report: {lock.name}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 10)
    where = ", ".join(part for part in (lock.site.name if lock.site else "", lock.location) if part)
    pdf.cell(0, 6, latin(f"Lock {lock.lock_id}{' - ' + where if where else ''}"), new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 6, latin(f"{month:%B %Y} ({lock.zone})"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    granted = sum(n for (ok, _), n in totals.items() if ok)
    refused = sum(n for (ok, _), n in totals.items() if not ok)
    pdf.set_font("helvetica", "B", 11)
    pdf.cell(0, 7, f"{granted} granted, {refused} refused", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 10)
    for method, label in AccessLog.Method.choices:
        ok, bad = totals[(True, method)], totals[(False, method)]
        if ok or bad:
            pdf.cell(0, 6, latin(f"{label}: {ok} granted, {bad} refused"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    table(pdf, lock, logs[:MAX_ROWS])
    return bytes(pdf.output())


def table(pdf: FPDF, lock: Lock, logs) -> None:
    widths = (34, 18, 16, 20, 34, 68)
    pdf.set_font("helvetica", "B", 9)
    for width, head in zip(widths, ("Time", "Method", "Action", "Outcome", "Reason", "Who"), strict=True):
        pdf.cell(width, 6, head, border="B")
    pdf.ln()
    pdf.set_font("helvetica", "", 8)
    listed = 0
    for row in logs.iterator():
        listed += 1
        cells = (
            f"{timezone.localtime(row.at, lock.zone):%Y-%m-%d %H:%M:%S}",
            row.method,
            row.action,
            "granted" if row.success else "refused",
            row.reason,
            row.holder or row.actor_email or (row.ip or ""),
        )
        for width, value in zip(widths, cells, strict=True):
            pdf.cell(width, 5, latin(value)[:48])
        pdf.ln()
    if not listed:
        pdf.cell(0, 6, "No access attempts this month.")


def managers() -> list[str]:
    """The addresses of this organisation's owners and admins."""
    from django.db import connection

    from portal.tenancy.models import Membership, Role

    return list(
        Membership.objects.filter(tenant__schema_name=connection.schema_name, role__in=[Role.OWNER, Role.ADMIN])
        .values_list("user__email", flat=True)
        .distinct()
    )


def email_reports(locks: list[Lock], month: date, recipients: list[str]) -> int:
    """One email with each lock's report of `month` attached as PDF; returns the reports sent."""
    from django.core.mail import EmailMessage

    if not locks or not recipients:
        return 0
    names = ", ".join(lock.name for lock in locks[:5]) + ("…" if len(locks) > 5 else "")
    message = EmailMessage(
        f"Access report {month:%B %Y}: {names}"[:200],
        f"Attached: the access report of {month:%B %Y} for {len(locks)} lock{'s' if len(locks) != 1 else ''}.\n\n— Fieldwatch\n",
        to=recipients,
    )
    for lock in locks:
        message.attach(f"access-{lock.lock_id}-{month:%Y-%m}.pdf", build(lock, month), "application/pdf")
    message.send()
    return len(locks)
