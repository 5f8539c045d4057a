from django import forms

from portal.core.editing import form_view
from portal.tenancy.access import role_required
from portal.tenancy.models import Role
from telemetry.models import TelemetrySettings


class TelemetrySettingsForm(forms.ModelForm):
    class Meta:
        model = TelemetrySettings
        fields = [
            "raw_retention_days",
            "future_window_seconds",
            "auto_create_sensors",
            "online_window_seconds",
            "reprovision_by_mac",
            "access_log_retention_days",
            "dead_letter_retention_days",
        ]

    def clean_raw_retention_days(self):
        days = self.cleaned_data["raw_retention_days"]
        if not 1 <= days <= 3650:
            raise forms.ValidationError("Keep raw readings between 1 day and 10 years; rollups are kept regardless.")
        return days

    def clean_access_log_retention_days(self):
        days = self.cleaned_data["access_log_retention_days"]
        if not 1 <= days <= 3650:
            raise forms.ValidationError("Keep lock access logs between 1 day and 10 years.")
        return days

    def clean_dead_letter_retention_days(self):
        days = self.cleaned_data["dead_letter_retention_days"]
        if not 1 <= days <= 3650:
            raise forms.ValidationError("Keep dead letters between 1 day and 10 years.")
        return days

    def clean_future_window_seconds(self):
        seconds = self.cleaned_data["future_window_seconds"]
        if seconds > 86400:
            raise forms.ValidationError("At most a day: a clock further ahead than that is wrong, not early.")
        return seconds

    def clean_online_window_seconds(self):
        seconds = self.cleaned_data["online_window_seconds"]
        if not 30 <= seconds <= 86400:
            raise forms.ValidationError("Between 30 seconds and a day (devices report every few minutes).")
        return seconds


@role_required(Role.ADMIN)
def telemetry_settings(request):
    """This tenant's ingest rules and raw-data retention (admins)."""
    return form_view(
        request,
        TelemetrySettingsForm,
        instance=TelemetrySettings.current(),
        template="includes/object_form.html",
        action="telemetry_settings.updated",
        success_url=request.path,
        context={"title": "Telemetry settings", "cancel_url": "/"},
    )
