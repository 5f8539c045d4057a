"""Forms of the lock pages: they validate and hand back clean Python values."""

from datetime import datetime
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from portal.locks import codes
from portal.locks.models import GuestAccess, Lock, PinCode, QrCode, validate_lock_id
from portal.tenancy.models import LockRoute
from telemetry.models import Device

DAYS = [(0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun")]
LATEST = datetime(2100, 1, 1, tzinfo=ZoneInfo("UTC"))


class LockForm(forms.ModelForm):
    lock_id = forms.CharField(
        max_length=64,
        validators=[validate_lock_id],
        help_text="The id the lock reports itself as (its MQTT topics use it); unique across Fieldwatch.",
    )

    class Meta:
        model = Lock
        fields = ["name", "site", "location", "protocol"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            del self.fields["lock_id"]  # an id is what the lock is; a new id is a new lock

    def clean_lock_id(self):
        lock_id = self.cleaned_data["lock_id"]
        if Device.objects.filter(device_id=lock_id).exists():
            raise ValidationError("A device with this id already exists in this organisation.")
        if LockRoute.objects.filter(lock_id=lock_id).exists():
            raise ValidationError("This lock id is already registered; each lock id can be used once.")
        return lock_id

    def save(self, commit=True) -> Lock:
        lock = super().save(commit=False)
        with transaction.atomic():
            if not lock.pk:
                lock.device = Device.objects.create(
                    device_id=self.cleaned_data["lock_id"],
                    name=lock.name,
                    kind=Device.Kind.LOCK,
                    assigned_at=timezone.now(),
                )
            elif lock.device.name != lock.name:
                lock.device.name = lock.name
                lock.device.save(update_fields=["name"])
            lock.save()
        return lock


class SettingsForm(forms.ModelForm):
    class Meta:
        model = Lock
        fields = Lock.SETTINGS

    def clean_auto_lock_delay(self):
        delay = self.cleaned_data["auto_lock_delay"]
        if not 1 <= delay <= 3600:
            raise ValidationError("Between 1 and 3600 seconds.")
        return delay


class OtaForm(forms.Form):
    firmware_url = forms.URLField(
        max_length=500, assume_scheme="https", help_text="An https:// address the lock downloads from."
    )
    version = forms.CharField(max_length=50, required=False)

    def clean_firmware_url(self):
        url = self.cleaned_data["firmware_url"]
        if urlparse(url).scheme != "https":
            raise ValidationError("Firmware is downloaded over https only.")
        return url


def localise(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    """A naive date-time typed in the form, read in the lock's zone (the page says which)."""
    if value is None:
        return None
    if timezone.is_naive(value):
        value = value.replace(tzinfo=zone)
    return value


class WindowMixin:
    """valid_from / valid_until typed in the lock's zone; the end must follow the start."""

    def clean_window(self, cleaned, zone, required=False):
        start, end = localise(cleaned.get("valid_from"), zone), localise(cleaned.get("valid_until"), zone)
        if required and (start is None or end is None):
            raise ValidationError("Give the start and the end of the window.")
        if start and end and end <= start:
            raise ValidationError("The window must end after it starts.")
        if end and end > LATEST:
            raise ValidationError("The window must end before 2100.")
        cleaned["valid_from"], cleaned["valid_until"] = start, end
        return cleaned


def date_time_field(label, required=False):
    return forms.DateTimeField(
        label=label,
        required=required,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


class PinForm(WindowMixin, forms.Form):
    label = forms.CharField(max_length=150, help_text="Whose code it is: 'Cleaning service'.")
    email = forms.EmailField(required=False, help_text="The PIN is sent here once (optional).")
    kind = forms.ChoiceField(choices=PinCode.Kind.choices)
    pin = forms.CharField(
        required=False,
        max_length=8,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "inputmode": "numeric"}),
        help_text="Leave empty to generate one. 4–8 digits; repeats, runs and the lock's other codes are refused.",
    )
    length = forms.IntegerField(
        min_value=codes.MIN_LENGTH, max_value=codes.MAX_LENGTH, initial=6, help_text="Digits of a generated PIN."
    )
    valid_from = date_time_field("Valid from")
    valid_until = date_time_field("Valid until")
    max_uses = forms.IntegerField(min_value=1, max_value=100000, required=False, help_text="For N uses.")
    days = forms.TypedMultipleChoiceField(choices=DAYS, coerce=int, required=False, widget=forms.CheckboxSelectMultiple)
    start = forms.TimeField(required=False, widget=forms.TimeInput(attrs={"type": "time"}), help_text="Weekly: from")
    end = forms.TimeField(
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}),
        help_text="Weekly: until (before the start: past midnight)",
    )

    def __init__(self, *args, lock: Lock, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock = lock

    def clean_pin(self):
        pin = self.cleaned_data["pin"].strip()
        if not pin:
            return ""
        problem = codes.format_problem(pin) or codes.weakness(pin)
        if problem:
            raise ValidationError(problem)
        if self.lock.has_pin(pin):
            raise ValidationError("This lock already has this PIN; choose another.")
        return pin

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        self.clean_window(cleaned, self.lock.zone, required=kind == PinCode.Kind.TEMPORARY)
        if kind == PinCode.Kind.ONE_TIME:
            cleaned["max_uses"] = 1
        elif kind == PinCode.Kind.LIMITED and not cleaned.get("max_uses"):
            self.add_error("max_uses", "How many uses?")
        elif kind not in (PinCode.Kind.LIMITED, PinCode.Kind.ONE_TIME):
            cleaned["max_uses"] = None
        cleaned["schedule"] = []
        if kind == PinCode.Kind.SCHEDULED:
            cleaned["schedule"] = self.weekly(cleaned)
        if kind == PinCode.Kind.PERMANENT:
            cleaned["valid_from"] = cleaned["valid_until"] = None
        return cleaned

    def weekly(self, cleaned) -> list[dict]:
        days, start, end = cleaned.get("days"), cleaned.get("start"), cleaned.get("end")
        if not days or start is None or end is None:
            self.add_error("days", "Choose the days and the hours of the weekly window.")
            return []
        if start == end:
            self.add_error("end", "The window must not start and end at the same time.")
            return []
        return [
            {"day": day, "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")} for day in sorted(set(days))
        ]

    def save(self, by_email: str = "") -> tuple[PinCode, str]:
        """The new code and its clear PIN (shown once, emailed once, never stored)."""
        data = self.cleaned_data
        return PinCode.make(
            self.lock,
            data["label"],
            data["pin"] or None,
            data["length"],
            email=data["email"],
            kind=data["kind"],
            valid_from=data["valid_from"],
            valid_until=data["valid_until"],
            max_uses=data["max_uses"],
            schedule=data["schedule"],
            created_by_email=by_email,
        )


class QrForm(forms.Form):
    label = forms.CharField(max_length=150)
    single_use = forms.BooleanField(required=False, initial=True, label="Single use")
    max_uses = forms.IntegerField(
        min_value=2, max_value=100000, required=False, help_text="Multi-use: how many (empty: unlimited)."
    )
    valid_until = date_time_field("Valid until", required=True)

    def __init__(self, *args, lock: Lock, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock = lock

    def clean(self):
        cleaned = super().clean()
        until = localise(cleaned.get("valid_until"), self.lock.zone)
        if until is not None and until <= timezone.now():
            self.add_error("valid_until", "Choose a time in the future.")
        if until is not None and until > LATEST:
            self.add_error("valid_until", "Choose a time before 2100.")
        cleaned["valid_until"] = until
        cleaned["max_uses"] = 1 if cleaned.get("single_use") else cleaned.get("max_uses")
        return cleaned

    def save(self, by_email: str = "") -> QrCode:
        data = self.cleaned_data
        return QrCode.objects.create(
            lock=self.lock,
            label=data["label"],
            max_uses=data["max_uses"],
            valid_until=data["valid_until"],
            created_by_email=by_email,
        )


class GuestForm(WindowMixin, forms.ModelForm):
    valid_from = date_time_field("From", required=True)
    valid_until = date_time_field("Until", required=True)

    class Meta:
        model = GuestAccess
        fields = ["name", "email", "method", "valid_from", "valid_until", "notes"]

    def __init__(self, *args, lock: Lock, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock = lock

    def clean(self):
        cleaned = super().clean()
        self.clean_window(cleaned, self.lock.zone, required=True)
        if cleaned.get("valid_until") and cleaned["valid_until"] <= timezone.now():
            self.add_error("valid_until", "The visit must end in the future.")
        return cleaned
