from django import forms

from portal.core.formatting import DateTimeText
from portal.facilities.models import Asset, DeviceBinding, Site
from telemetry.bounds import OutOfBounds, utc_moment
from telemetry.models import Device


class SiteForm(forms.ModelForm):
    class Meta:
        model = Site
        fields = ["name", "address", "time_zone"]
        help_texts = {"time_zone": "An IANA name such as Europe/Lisbon; pages show this site's times in it."}


class AssetForm(forms.ModelForm):
    class Meta:
        model = Asset
        fields = ["site", "tag", "name", "type", "status"]

    def clean_tag(self):
        return self.cleaned_data["tag"].strip().upper()


class BindingForm(forms.Form):
    device = forms.ModelChoiceField(queryset=Device.objects.none(), help_text="Devices not installed on another asset.")

    def __init__(self, *args, asset: Asset, **kwargs):
        super().__init__(*args, **kwargs)
        self.asset = asset
        self.fields["device"].queryset = Device.objects.filter(binding__isnull=True).order_by("device_id")

    def save(self) -> DeviceBinding:
        return DeviceBinding.objects.create(asset=self.asset, device=self.cleaned_data["device"])


RANGES = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "custom": "Custom"}
BUCKET_CHOICES = [("raw", "Raw"), ("1m", "1 minute"), ("5m", "5 minutes"), ("1h", "1 hour"), ("1d", "1 day")]
DEFAULT_BUCKET = {"24h": "5m", "7d": "1h", "30d": "1h", "custom": "1h"}


class ChartRangeForm(forms.Form):
    """Range and bucket of an asset's charts; bad values fall back to defaults with an error."""

    range = forms.ChoiceField(choices=list(RANGES.items()), required=False)
    bucket = forms.ChoiceField(choices=BUCKET_CHOICES, required=False)
    start = forms.DateTimeField(required=False, label="From", widget=DateTimeText())
    end = forms.DateTimeField(required=False, label="To", widget=DateTimeText())

    def clean(self):
        from datetime import timedelta

        from django.utils import timezone

        cleaned = super().clean()
        chosen = cleaned.get("range") or "24h"
        now = timezone.now()
        if chosen == "custom":
            start, end = cleaned.get("start"), cleaned.get("end")
            if not start or not end:
                raise forms.ValidationError("A custom range needs both a start and an end.")
            try:  # year 9999 overflows as soon as a bucket is added to it
                start, end = utc_moment(start), utc_moment(end)
            except OutOfBounds:
                raise forms.ValidationError("A range must lie between 1970 and 2100.") from None
            if start >= end:
                raise forms.ValidationError("The start must be before the end.")
            if end - start > timedelta(days=400):
                raise forms.ValidationError("A range can span at most 400 days.")
        else:
            end = now
            start = now - {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}[chosen]
        cleaned.update(range=chosen, start=start, end=end, bucket=cleaned.get("bucket") or DEFAULT_BUCKET[chosen])
        return cleaned
