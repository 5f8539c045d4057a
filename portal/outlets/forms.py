"""Forms of the outlet pages: each validates what a person sent and returns clean values."""

from django import forms
from django.utils import timezone

from portal.outlets import queries, stats
from portal.outlets.models import Machine, Outlet
from telemetry.models import Device, DeviceEvent


def counting_device_choices():
    return Device.objects.filter(pk__in=queries.counting_devices().values("pk")).order_by("device_id")


class RegisterForm(forms.Form):
    """Register a device as a machine: an existing machine, or a new one at an outlet."""

    machine = forms.ModelChoiceField(
        queryset=Machine.objects.select_related("outlet").order_by("outlet__name", "name"),
        required=False,
        empty_label="— a new machine —",
    )
    outlet = forms.ModelChoiceField(queryset=Outlet.objects.order_by("name"), required=False, empty_label="Outlet…")
    name = forms.CharField(max_length=150, required=False, label="New machine's name")

    def clean(self):
        data = super().clean()
        if not data.get("machine") and not (data.get("outlet") and data.get("name", "").strip()):
            raise forms.ValidationError("Choose a machine, or an outlet and a name for a new machine.")
        return data

    def registration(self) -> dict:
        data = self.cleaned_data
        if data.get("machine"):
            return {"machine": data["machine"]}
        return {"outlet": data["outlet"], "name": data["name"].strip()}


class StatsForm(forms.Form):
    """The usage page's controls; query_options() feeds portal.outlets.stats.build_query()."""

    granularity = forms.ChoiceField(
        choices=[(g, g.title()) for g in stats.GRANULARITIES], required=False, initial="day"
    )
    days = forms.IntegerField(min_value=1, max_value=stats.MAX_DAYS, required=False, label="Last N days")
    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To (included)", widget=forms.DateInput(attrs={"type": "date"}))
    outlet = forms.ModelChoiceField(queryset=Outlet.objects.order_by("name"), required=False, empty_label="All outlets")
    machine = forms.ModelChoiceField(
        queryset=Machine.objects.select_related("outlet").order_by("outlet__name", "name"),
        required=False,
        empty_label="All machines",
    )
    device = forms.ModelChoiceField(queryset=Device.objects.none(), required=False, empty_label="All devices")
    treatment = forms.ChoiceField(choices=[("", "All treatments"), *DeviceEvent.Treatment.choices], required=False)
    measure = forms.ChoiceField(choices=list(stats.MEASURES.items()), required=False, initial="events")
    cumulative = forms.BooleanField(required=False)
    ma = forms.IntegerField(min_value=0, max_value=stats.MAX_WINDOW, required=False, label="Moving average (buckets)")
    compare = forms.BooleanField(required=False, label="Compare with the previous period")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["device"].queryset = counting_device_choices()

    def clean(self):
        data = super().clean()
        if bool(data.get("start")) != bool(data.get("end")):
            raise forms.ValidationError("Give both dates of the range, or neither (then the last N days).")
        return data

    def query_options(self) -> dict:
        data = self.cleaned_data
        return {
            "granularity": data.get("granularity") or "day",
            "start": data.get("start"),
            "end": data.get("end"),
            "days": data.get("days"),
            "outlet_id": data["outlet"].pk if data.get("outlet") else None,
            "machine_id": data["machine"].pk if data.get("machine") else None,
            "device_pk": data["device"].pk if data.get("device") else None,
            "treatment": data.get("treatment") or None,
            "measure": data.get("measure") or "events",
            "cumulative": bool(data.get("cumulative")),
            "ma": data.get("ma") or 0,
            "compare": bool(data.get("compare")),
        }


class FlushForm(forms.Form):
    device = forms.ModelChoiceField(queryset=Device.objects.none(), empty_label="Choose a device")
    start = forms.DateTimeField(
        required=False, label="From (local time)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    end = forms.DateTimeField(
        required=False, label="Before (local time)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    confirm = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["device"].queryset = counting_device_choices()
        self.fields["device"].widget.attrs["class"] = "form-select"
        for name in ("start", "end"):
            self.fields[name].widget.attrs["class"] = "form-control"

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end <= start:
            raise forms.ValidationError("The range must end after it starts.")
        for name in ("start", "end"):
            if data.get(name) and timezone.is_naive(data[name]):
                data[name] = timezone.make_aware(data[name])
        return data
