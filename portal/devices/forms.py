from datetime import UTC, datetime, timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.urls import reverse_lazy
from django.utils import timezone

from portal.core.formatting import DateTimeText, local_input
from telemetry.models import Device, Sensor

RAW = "raw"
BUCKET_CHOICES = [(RAW, "Raw readings"), ("1m", "1 minute"), ("5m", "5 minutes"), ("1h", "1 hour"), ("1d", "1 day")]
DEFAULT_BUCKET = "1h"
DEFAULT_RANGE = timedelta(hours=24)
MAX_RANGE = timedelta(days=400)
# Outside these the bucket arithmetic would overflow Python's datetime; nothing real is there.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class DeviceChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, device):
        return f"{device.device_id} · {device.name}" if device.name else device.device_id


class SensorChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, sensor):
        label = sensor.label or sensor.key
        return f"{label} ({sensor.unit})" if sensor.unit else label


def datetime_field(label: str) -> forms.DateTimeField:
    widget = DateTimeText(attrs={"class": "form-control"})
    return forms.DateTimeField(label=label, widget=widget, error_messages={"required": f"Enter the “{label}” time."})


class ExplorerForm(forms.Form):
    """Which sensor's readings to show, over which range, in which bucket.

    The sensor menu lists the chosen device's sensors only, so a sensor of another device (or
    another tenant) is refused by the field itself. cleaned_data["from"] and ["to"] are aware
    datetimes; "bucket" is "raw" or a telemetry.queries.BUCKETS key.
    """

    device = DeviceChoiceField(
        Device.objects.all(),
        empty_label="Pick a device",
        error_messages={"required": "Pick a device.", "invalid_choice": "There is no such device."},
        # the sensor menu follows the device: the options come from devices-explorer-sensors
        widget=forms.Select(
            attrs={
                "class": "form-select",
                "hx-get": reverse_lazy("devices-explorer-sensors"),
                "hx-target": "#sensor-select",
                "hx-push-url": "false",
            }
        ),
    )
    sensor = SensorChoiceField(
        Sensor.objects.none(),
        empty_label=None,
        error_messages={"required": "Pick a sensor.", "invalid_choice": "Pick a sensor of this device."},
        widget=forms.Select(attrs={"class": "form-select"}),
    )
    bucket = forms.ChoiceField(
        choices=BUCKET_CHOICES,
        initial=DEFAULT_BUCKET,
        error_messages={"invalid_choice": "Pick one of the listed buckets."},
        widget=forms.Select(attrs={"class": "form-select"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        zone = timezone.get_current_timezone_name()
        # "from" and "to" are keywords in Python, so they cannot be declared as attributes
        self.fields["from"] = datetime_field("From")
        self.fields["to"] = datetime_field("To")
        self.fields["from"].help_text = self.fields["to"].help_text = f"Times in {zone}"
        self.order_fields(["device", "sensor", "from", "to", "bucket"])
        device = self.chosen_device()
        if device is None:
            self.fields["sensor"].empty_label = "Pick a device first"
        else:
            self.fields["sensor"].queryset = device.sensors.order_by("key")
            if not device.sensors.exists():
                self.fields["sensor"].empty_label = "No sensors yet"
                self.fields["sensor"].error_messages["required"] = "This device has no sensors yet."
        if not self.is_bound:
            self.initial = {**self.defaults(), **self.initial}

    @staticmethod
    def defaults() -> dict:
        """The last 24 hours (to the next whole minute, so the latest readings are in) by hour."""
        end = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
        return {"from": local_input(end - DEFAULT_RANGE), "to": local_input(end), "bucket": DEFAULT_BUCKET}

    def chosen_device(self) -> Device | None:
        value = self.data.get("device") if self.is_bound else self.initial.get("device")
        try:
            return self.fields["device"].clean(value)
        except ValidationError:
            return None

    def clean_from(self):
        return self.in_bounds(self.cleaned_data["from"])

    def clean_to(self):
        return self.in_bounds(self.cleaned_data["to"])

    @staticmethod
    def in_bounds(moment: datetime) -> datetime:
        if not EARLIEST <= moment < LATEST:
            raise ValidationError("Pick a time between 1970 and 2099.")
        return moment

    def full_clean(self):
        super().full_clean()
        for name in self.errors:  # Bootstrap's red outline on the fields to fix
            if name in self.fields:
                widget = self.fields[name].widget
                widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()

    def clean(self):
        data = super().clean()
        start, end = data.get("from"), data.get("to")
        if start is not None and end is not None:
            if end <= start:
                self.add_error("to", "“To” must be after “From”.")
            elif end - start > MAX_RANGE:
                self.add_error("to", f"Pick a range of at most {MAX_RANGE.days} days.")
        return data


class DeviceForm(forms.ModelForm):
    """What people may change about a device: how it is called and what to know about it. Its id,
    MAC and token come from the device and the device API, not from this form."""

    class Meta:
        model = Device
        fields = ["name", "kind", "notes"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 4, "maxlength": 2000})}


class SensorForm(forms.ModelForm):
    """A sensor's label, unit, type, plausible range, precision and whether it is stored at all.

    The range is what ingest accepts: readings outside it become dead letters (reason
    out_of_range), which can be replayed once the range is right."""

    class Meta:
        model = Sensor
        fields = ["label", "type", "unit", "min_value", "max_value", "precision", "enabled", "on_dashboard"]
        labels = {
            "min_value": "Lowest plausible value",
            "max_value": "Highest plausible value",
            "on_dashboard": "Key sensor (on the dashboard)",
        }
        help_texts = {
            "unit": "As devices send it; a reading in another unit is refused (unit_mismatch).",
            "min_value": "Readings below are refused and kept as dead letters; empty: no lower limit.",
            "max_value": "Readings above are refused and kept as dead letters; empty: no upper limit.",
            "precision": "Decimal places on pages and charts, 0 to 6; CSV keeps values as stored.",
        }

    def clean_precision(self):
        precision = self.cleaned_data["precision"]
        if not 0 <= precision <= 6:
            raise ValidationError("Show between 0 and 6 decimal places.")
        return precision

    def clean(self):
        data = super().clean()
        low, high = data.get("min_value"), data.get("max_value")
        if low is not None and high is not None and low > high:
            self.add_error("max_value", "The highest plausible value must not be below the lowest.")
        return data
