"""Codes of a lock, for admins: PINs, QR codes and guests; each change is synced to the lock.

A new PIN is shown once, in the answer to the POST that made it, and emailed once (the task gets it
encrypted, portal/locks/mail.py); only its digests are stored. Revoking stops it at once in the
access check and sends the lock a removal.
"""

import segno
from django.contrib import messages
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.audit.log import record
from portal.locks import mail
from portal.locks.forms import GuestForm, PinForm, QrForm
from portal.locks.models import CodeSync, GuestAccess, LockCommand, PinCode, QrCode
from portal.locks.views import get_lock, secret_page
from portal.tenancy.access import role_required
from portal.tenancy.models import Role


def sync(lock, pins, action: str, request=None, source="portal") -> LockCommand | None:
    """Send the lock these codes to set or remove (one code sync command); each shows its state."""
    pins = list(pins)
    if not pins:
        return None
    command = LockCommand.issue(
        lock, LockCommand.Kind.CODE_SYNC, {"codes": [p.sync_entry(action) for p in pins]}, request, source
    )
    state = CodeSync.SETTING if action == "set" else CodeSync.REMOVING
    PinCode.objects.filter(pk__in=[p.pk for p in pins]).update(sync_state=state, sync_command=command)
    return command


def email_of(request) -> str:
    return request.user.email if request.user.is_authenticated else ""


@role_required(Role.ADMIN)
def pin_create(request, pk):
    lock = get_lock(pk)
    form = PinForm(request.POST or None, lock=lock)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            pin, clear = form.save(by_email=email_of(request))
            sync(lock, [pin], "set", request)
            record(request, "lock.pin.create", pin, {"lock": lock.lock_id, "kind": pin.kind})
            if pin.email:
                mail.send_code_later(pin.email, lock, pin.label, pin, pin=clear)
        return secret_page(request, lock, "PIN", clear, {"code": pin})
    return render(
        request,
        "locks/code_form.html",
        {"form": form, "lock": lock, "what": "PIN code"},
        status=400 if form.errors else 200,
    )


@require_POST
@role_required(Role.ADMIN)
def pin_revoke(request, pk, pin_pk):
    lock = get_lock(pk)
    pin = get_object_or_404(PinCode, pk=pin_pk, lock=lock)
    revoke_pin(pin, request)
    messages.success(request, f"PIN “{pin.label}” revoked; the lock is told to remove it.")
    return redirect(lock)


def revoke_pin(pin: PinCode, request=None) -> bool:
    """Stop the PIN now (a conditional update: once) and tell the lock to remove it."""
    now = timezone.now()
    with transaction.atomic():
        if not PinCode.objects.filter(pk=pin.pk, active=True).update(active=False, revoked_at=now):
            return False
        sync(pin.lock, [pin], "remove", request, "portal" if request else "system")
        if request is not None:
            record(request, "lock.pin.revoke", pin, {"lock": pin.lock.lock_id})
    return True


@require_POST
@role_required(Role.ADMIN)
def code_sync(request, pk):
    """Send every live code again (after a lock was replaced or a sync failed)."""
    lock = get_lock(pk)
    command = sync(lock, lock.pins.filter(active=True), "set", request)
    record(request, "lock.codes.sync", lock)
    messages.info(request, "Codes sent to the lock." if command else "This lock has no live codes to send.")
    return redirect(lock)


@role_required(Role.ADMIN)
def qr_create(request, pk):
    lock = get_lock(pk)
    form = QrForm(request.POST or None, lock=lock)
    if request.method == "POST" and form.is_valid():
        qr = form.save(by_email=email_of(request))
        record(request, "lock.qr.create", qr, {"lock": lock.lock_id})
        messages.success(request, f"QR code “{qr.label}” created.")
        return redirect("locks-qr-detail", pk=lock.pk, qr_pk=qr.pk)
    return render(
        request,
        "locks/code_form.html",
        {"form": form, "lock": lock, "what": "QR code"},
        status=400 if form.errors else 200,
    )


def qr_image(qr: QrCode) -> str:
    return segno.make(str(qr.code), error="m").svg_inline(scale=6, dark="#111", light="#fff")


@role_required(Role.ADMIN)
def qr_detail(request, pk, qr_pk):
    lock = get_lock(pk)
    qr = get_object_or_404(QrCode, pk=qr_pk, lock=lock)
    return render(request, "locks/qr_detail.html", {"lock": lock, "qr": qr, "svg": qr_image(qr)})


@role_required(Role.ADMIN)
def qr_svg(request, pk, qr_pk):
    lock = get_lock(pk)
    qr = get_object_or_404(QrCode, pk=qr_pk, lock=lock)
    response = HttpResponse(qr_image(qr), content_type="image/svg+xml")
    response["Content-Disposition"] = f'attachment; filename="lock-{lock.lock_id}-qr-{qr.pk}.svg"'
    return response


@require_POST
@role_required(Role.ADMIN)
def qr_revoke(request, pk, qr_pk):
    lock = get_lock(pk)
    qr = get_object_or_404(QrCode, pk=qr_pk, lock=lock)
    if QrCode.objects.filter(pk=qr.pk, active=True).update(active=False, revoked_at=timezone.now()):
        record(request, "lock.qr.revoke", qr, {"lock": lock.lock_id})
    messages.success(request, f"QR code “{qr.label}” revoked.")
    return redirect(lock)


@role_required(Role.ADMIN)
def guest_create(request, pk):
    """A guest gets a PIN or a QR code valid for the visit, sent by email."""
    lock = get_lock(pk)
    form = GuestForm(request.POST or None, lock=lock)
    if request.method == "POST" and form.is_valid():
        guest = form.save(commit=False)
        guest.lock, guest.created_by_email = lock, email_of(request)
        with transaction.atomic():
            clear = grant(guest, request)
            record(request, "lock.guest.create", guest, {"lock": lock.lock_id, "method": guest.method})
        if clear:
            return secret_page(request, lock, "guest PIN", clear, {"guest": guest})
        messages.success(request, f"Guest access for {guest.name} created; the QR code is on its way to {guest.email}.")
        return redirect(lock)
    return render(
        request,
        "locks/code_form.html",
        {"form": form, "lock": lock, "what": "guest access"},
        status=400 if form.errors else 200,
    )


def grant(guest: GuestAccess, request=None) -> str:
    """Make the guest's credential for the window and email it; returns the clear PIN, if one."""
    lock, clear = guest.lock, ""
    label = f"Guest: {guest.name}"[:150]
    if guest.method == GuestAccess.Method.PIN:
        guest.pin, clear = PinCode.make(
            lock,
            label,
            email=guest.email,
            kind=PinCode.Kind.TEMPORARY,
            valid_from=guest.valid_from,
            valid_until=guest.valid_until,
            created_by_email=guest.created_by_email,
        )
        sync(lock, [guest.pin], "set", request)
    else:
        guest.qr = QrCode.objects.create(
            lock=lock,
            label=label,
            max_uses=None,
            valid_from=guest.valid_from,
            valid_until=guest.valid_until,
            created_by_email=guest.created_by_email,
        )
    guest.save()
    mail.send_code_later(guest.email, lock, guest.name, guest.pin or guest.qr, pin=clear, guest=guest)
    return clear


@require_POST
@role_required(Role.ADMIN)
def guest_revoke(request, pk, guest_pk):
    lock = get_lock(pk)
    guest = get_object_or_404(GuestAccess.objects.select_related("pin", "qr"), pk=guest_pk, lock=lock)
    revoke_guest(guest, request)
    messages.success(request, f"Access of {guest.name} revoked.")
    return redirect(lock)


def revoke_guest(guest: GuestAccess, request=None) -> None:
    now = timezone.now()
    with transaction.atomic():
        if not GuestAccess.objects.filter(pk=guest.pk, revoked_at__isnull=True).update(revoked_at=now):
            return
        if guest.pin_id:
            revoke_pin(guest.pin)
        if guest.qr_id:
            QrCode.objects.filter(pk=guest.qr_id, active=True).update(active=False, revoked_at=now)
        if request is not None:
            record(request, "lock.guest.revoke", guest, {"lock": guest.lock.lock_id})
