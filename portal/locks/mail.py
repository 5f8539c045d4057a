"""Codes by email (Huey): a PIN or QR code to its holder or guest, once.

The task queue (Redis in production) must not hold a clear PIN, so the PIN travels encrypted
(Fernet under a key derived from LOCK_PIN_KEY, valid a day) and is decrypted only to write the email.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from portal.tenancy.tasks import tenant_task

TOKEN_SECONDS = 86400


def fernet() -> Fernet:
    key = hashlib.sha256(f"locks.mail:{settings.LOCK_PIN_KEY}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(pin: str) -> str:
    return fernet().encrypt(pin.encode()).decode() if pin else ""


def unseal(token: str) -> str:
    if not token:
        return ""
    try:
        return fernet().decrypt(token.encode(), ttl=TOKEN_SECONDS).decode()
    except InvalidToken:
        return ""


def send_code_later(email: str, lock, holder: str, code, *, pin: str = "", guest=None) -> None:
    """Queue the email of `code` (a PinCode with its clear `pin`, or a QrCode) once the transaction
    that made it committed."""
    schema = connection.schema_name
    args = (email, lock.pk, holder, seal(pin), type(code).__name__, code.pk, guest.pk if guest else None)
    transaction.on_commit(lambda: send_code_email(schema, *args))


@tenant_task(retries=3, retry_delay=60)
def send_code_email(email: str, lock_pk: int, holder: str, sealed: str, kind: str, code_pk: int, guest_pk) -> bool:
    from portal.locks.code_views import qr_image
    from portal.locks.models import GuestAccess, Lock, PinCode, QrCode

    lock = Lock.objects.select_related("site", "device").filter(pk=lock_pk).first()
    code = (QrCode if kind == "QrCode" else PinCode).objects.filter(pk=code_pk, active=True).first()
    if lock is None or code is None:
        return False  # deleted or revoked meanwhile: nothing to send
    qr = code if isinstance(code, QrCode) else None
    guest = GuestAccess.objects.filter(pk=guest_pk).first() if guest_pk else None
    pin = unseal(sealed)
    if sealed and not pin:
        note(guest, "the PIN could not be read (expired); create a new one")
        return False
    context = {"lock": lock, "holder": holder, "pin": pin, "qr": qr, "code": code, "zone": lock.zone}
    message = EmailMessage(
        render_to_string("locks/email/code_subject.txt", context).strip(),
        render_to_string("locks/email/code_message.txt", context),
        to=[email],
    )
    if qr is not None:
        message.attach(f"access-{lock.lock_id}.svg", qr_image(qr), "image/svg+xml")
    try:
        message.send()
    except OSError as error:
        note(guest, f"sending failed: {error}"[:300])
        raise  # Huey retries
    if guest is not None:
        GuestAccess.objects.filter(pk=guest.pk).update(sent_at=timezone.now(), send_error="")
    return True


def note(guest, error: str) -> None:
    if guest is not None:
        type(guest).objects.filter(pk=guest.pk).update(send_error=error)
