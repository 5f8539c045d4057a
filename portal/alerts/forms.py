"""Forms for rules (with their conditions), silences, channels and alert actions."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.forms import inlineformset_factory
from django.utils import timezone

from portal.alerts.models import AlertRule, Channel, RuleCondition, Severity, Silence
from portal.alerts.targets import registry
from portal.core.formatting import DateTimeText
from portal.facilities.models import Site
from portal.tenancy.models import Role
from telemetry.bounds import whole_number
from telemetry.models import Sensor

Kind = RuleCondition.Kind
LABEL_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]{0,49})=(.{0,100})$")
MAX_MINUTES = 7 * 24 * 60


def target_choices():
    groups = []
    for kind in registry().values():
        if kind.object_label:
            options = [(f"{kind.code}:{pk}", label) for pk, label in kind.objects()[:2000]]
            if options:
                groups.append((kind.label, options))
        else:
            groups.append((kind.label, [(f"{kind.code}:", kind.label)]))
    return [("", "Choose what to watch…"), *groups]


def sensor_type_choices():
    types = Sensor.objects.exclude(type="").order_by("type").values_list("type", flat=True).distinct()
    return [("", "—"), *((t, t) for t in types)]


def parse_labels(text: str) -> dict:
    labels = {}
    for n, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        match = LABEL_LINE.match(line)
        if not match:
            raise forms.ValidationError(f"Line {n}: write labels as key=value (key: letters, digits, _ . -).")
        labels[match[1]] = match[2].strip()
    if len(labels) > 20:
        raise forms.ValidationError("At most 20 labels.")
    return labels


class RuleForm(forms.ModelForm):
    target = forms.ChoiceField(help_text="A sensor, every sensor of a type somewhere, or a device.")
    sensor_type = forms.ChoiceField(required=False, help_text="For targets that cover every sensor of a type.")
    for_minutes = forms.IntegerField(
        min_value=0,
        max_value=MAX_MINUTES,
        initial=0,
        label="For (minutes)",
        help_text="How long the condition must hold before the alert fires.",
    )
    keep_firing_minutes = forms.IntegerField(
        min_value=0,
        max_value=MAX_MINUTES,
        initial=0,
        label="Keep firing for (minutes)",
        help_text="How long the condition must stay clear before the alert resolves itself.",
    )
    labels_text = forms.CharField(
        required=False,
        label="Labels",
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
        help_text="key=value, one per line; copied to the alerts (silences can match them).",
    )

    class Meta:
        model = AlertRule
        fields = ["name", "description", "enabled", "severity", "combine", "no_data_handling", "error_handling"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = target_choices()
        self.fields["sensor_type"].choices = sensor_type_choices()
        rule = self.instance
        if rule.pk:
            self.initial.update(
                target=f"{rule.target_kind}:{rule.target_id or ''}",
                sensor_type=rule.sensor_type,
                for_minutes=rule.for_seconds // 60,
                keep_firing_minutes=rule.keep_firing_for_seconds // 60,
                labels_text="\n".join(f"{k}={v}" for k, v in (rule.labels or {}).items()),
            )
        self.order_fields(
            [
                "name",
                "description",
                "target",
                "sensor_type",
                "severity",
                "combine",
                "for_minutes",
                "keep_firing_minutes",
            ]
        )

    def clean_labels_text(self):
        return parse_labels(self.cleaned_data["labels_text"])

    def clean(self):
        cleaned = super().clean()
        code, _, pk = (cleaned.get("target") or "").partition(":")
        kind = registry().get(code)
        if kind is None:
            self.add_error("target", "Choose what this rule watches.")
            return cleaned
        target_id = whole_number(pk)
        if kind.object_label and (target_id is None or not kind.exists(target_id)):
            self.add_error("target", f"That {kind.object_label.lower()} does not exist (any more).")
        if kind.needs_sensor_type and not cleaned.get("sensor_type"):
            self.add_error("sensor_type", "This target covers every sensor of a type: choose the type.")
        cleaned["kind"] = kind
        cleaned["target_id"] = target_id if kind.object_label else None
        return cleaned

    def save(self, commit=True):
        rule = super().save(commit=False)
        rule.target_kind = self.cleaned_data["kind"].code
        rule.target_id = self.cleaned_data["target_id"]
        rule.sensor_type = (
            self.cleaned_data.get("sensor_type", "") if self.cleaned_data["kind"].needs_sensor_type else ""
        )
        rule.for_seconds = self.cleaned_data["for_minutes"] * 60
        rule.keep_firing_for_seconds = self.cleaned_data["keep_firing_minutes"] * 60
        rule.labels = self.cleaned_data["labels_text"]
        if commit:
            rule.save()
        return rule


class ConditionForm(forms.ModelForm):
    class Meta:
        model = RuleCondition
        fields = ["kind", "sensor_key", "threshold", "low", "high", "minutes", "event_kinds", "hysteresis"]
        widgets = {"sensor_key": forms.TextInput(attrs={"placeholder": "own sensor"})}

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        for name in ("threshold", "low", "high", "hysteresis"):
            value = cleaned.get(name)
            if value is not None and abs(value) > 1e12:
                self.add_error(name, "Too large.")
        needs = {
            Kind.ABOVE: ["threshold"],
            Kind.BELOW: ["threshold"],
            Kind.BATTERY_BELOW: ["threshold"],
            Kind.OUTSIDE: ["low", "high"],
            Kind.RATE: ["threshold", "minutes"],
            Kind.NO_DATA: ["minutes"],
        }.get(kind, [])
        for name in needs:
            if cleaned.get(name) is None:
                self.add_error(name, "Required for this condition.")
        low, high = cleaned.get("low"), cleaned.get("high")
        if kind == Kind.OUTSIDE and low is not None and high is not None and low >= high:
            self.add_error("high", "The upper bound must be above the lower one.")
        if kind == Kind.BATTERY_BELOW and cleaned.get("threshold") is not None and not 0 <= cleaned["threshold"] <= 100:
            self.add_error("threshold", "A battery level is 0–100 %.")
        if cleaned.get("minutes") is not None and not 1 <= cleaned["minutes"] <= MAX_MINUTES:
            self.add_error("minutes", f"Between 1 and {MAX_MINUTES} minutes.")
        if (cleaned.get("hysteresis") or 0) < 0:
            self.add_error("hysteresis", "The recovery margin cannot be negative.")
        return cleaned


class BaseConditionFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(self.errors):
            return
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if not kept:
            raise forms.ValidationError("A rule needs at least one condition.")
        self.kept = kept


ConditionFormSet = inlineformset_factory(
    AlertRule,
    RuleCondition,
    form=ConditionForm,
    formset=BaseConditionFormSet,
    extra=1,
    max_num=8,
    validate_max=True,
    can_delete=True,
)


def check_conditions_fit(rule_form: RuleForm, formset) -> bool:
    """Conditions must make sense for the target: a device has no 'own sensor', a sensor no events."""
    kind = rule_form.cleaned_data.get("kind")
    ok = True
    for form in getattr(formset, "kept", []):
        data = form.cleaned_data
        if (
            kind
            and kind.subject == "device"
            and data["kind"] in (Kind.ABOVE, Kind.BELOW, Kind.OUTSIDE, Kind.RATE)
            and not data.get("sensor_key")
        ):
            form.add_error("sensor_key", "A device target needs the key of the sensor this condition reads.")
            ok = False
        if kind and kind.subject == "sensor" and data["kind"] == Kind.SECURITY_EVENT:
            form.add_error("kind", "Security events concern devices: choose a device or lock target.")
            ok = False
    return ok


class SilenceForm(forms.ModelForm):
    duration_hours = forms.FloatField(
        min_value=0.05, max_value=24 * 90, initial=2, label="Duration (hours)", required=False
    )
    rule = forms.ModelChoiceField(queryset=AlertRule.objects.all(), required=False, empty_label="Any rule")
    site = forms.ModelChoiceField(queryset=Site.objects.all(), required=False, empty_label="Any site")

    class Meta:
        model = Silence
        fields = ["reason", "rule", "subject_key", "site", "label_key", "label_value", "starts_at", "ends_at"]
        widgets = {
            "starts_at": DateTimeText(),
            "ends_at": DateTimeText(),
        }
        labels = {"subject_key": "Target", "label_key": "Label", "label_value": "Label value"}
        help_texts = {
            "subject_key": "sensor:<id> or device:<id>, as an alert's page shows it.",
            "ends_at": "Leave empty to use the duration.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["starts_at"].required = False
        self.fields["ends_at"].required = False

    def clean_subject_key(self):
        value = self.cleaned_data["subject_key"].strip()
        if value and not re.fullmatch(r"(sensor|device):\d{1,18}", value):
            raise forms.ValidationError("Write sensor:<id> or device:<id>.")
        return value

    def clean(self):
        cleaned = super().clean()
        start = cleaned.get("starts_at") or timezone.now()
        end = cleaned.get("ends_at")
        if end is None and cleaned.get("duration_hours"):
            end = start + timedelta(hours=cleaned["duration_hours"])
        if end is None:
            self.add_error("ends_at", "Give an end or a duration.")
        elif end <= start:
            self.add_error("ends_at", "A silence must end after it starts.")
        elif end - start > timedelta(days=90):
            self.add_error("ends_at", "A silence lasts at most 90 days.")
        if bool(cleaned.get("label_key")) != bool(cleaned.get("label_value")):
            self.add_error("label_value", "A label matcher needs both a key and a value.")
        if not (cleaned.get("rule") or cleaned.get("subject_key") or cleaned.get("site") or cleaned.get("label_key")):
            raise forms.ValidationError(
                "Choose at least one of rule, target, site or label: a silence mutes what matches."
            )
        cleaned["starts_at"], cleaned["ends_at"] = start, end
        return cleaned

    def save(self, commit=True):
        silence = super().save(commit=False)
        silence.starts_at, silence.ends_at = self.cleaned_data["starts_at"], self.cleaned_data["ends_at"]
        if commit:
            silence.save()
        return silence


class ChannelForm(forms.ModelForm):
    webhook_url = forms.URLField(required=False, max_length=500, assume_scheme="https", label="Webhook URL")
    email_roles = forms.MultipleChoiceField(
        choices=Role.choices, required=False, widget=forms.CheckboxSelectMultiple, label="Members with these roles"
    )
    severities = forms.MultipleChoiceField(
        choices=Severity.choices, widget=forms.CheckboxSelectMultiple, initial=Severity.values
    )

    class Meta:
        model = Channel
        fields = [
            "name",
            "kind",
            "enabled",
            "email_roles",
            "email_addresses",
            "webhook_url",
            "webhook_secret",
            "phone_numbers",
            "severities",
            "rules",
            "sites",
            "quiet_start",
            "quiet_end",
            "quiet_allows_critical",
            "group_wait_seconds",
            "repeat_interval_minutes",
            "notify_resolved",
        ]
        widgets = {
            "email_addresses": forms.Textarea(attrs={"rows": 2}),
            "phone_numbers": forms.Textarea(attrs={"rows": 2}),
            "quiet_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "quiet_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "webhook_secret": forms.PasswordInput(render_value=True),
            "rules": forms.SelectMultiple(attrs={"size": 4}),
            "sites": forms.SelectMultiple(attrs={"size": 4}),
        }
        help_texts = {
            "rules": "None chosen: every rule (and data-quality alerts).",
            "sites": "None chosen: every site.",
            "webhook_secret": "Signs each body: X-Fieldwatch-Signature = sha256=HMAC(secret, timestamp + '.' + body).",
            "group_wait_seconds": "Alerts changing within this many seconds go out as one message.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["email_roles"] = self.instance.role_list
            self.initial["severities"] = self.instance.severity_list

    def clean_email_addresses(self):
        value = self.cleaned_data["email_addresses"]
        validator = forms.EmailField()
        addresses = [a.strip() for a in value.replace(",", "\n").splitlines() if a.strip()]
        for address in addresses:
            try:
                validator.clean(address)
            except forms.ValidationError:
                raise forms.ValidationError(f"“{address[:80]}” is not an email address.") from None
        if len(addresses) > 50:
            raise forms.ValidationError("At most 50 addresses.")
        return "\n".join(addresses)

    def clean_phone_numbers(self):
        numbers = [n.strip() for n in self.cleaned_data["phone_numbers"].replace(",", "\n").splitlines() if n.strip()]
        for number in numbers:
            if not re.fullmatch(r"\+[1-9]\d{6,14}", number):
                raise forms.ValidationError(f"“{number[:30]}” is not a phone number in international form (+351…).")
        return "\n".join(numbers)

    def clean_webhook_url(self):
        from portal.alerts.delivery import Refused, allowed_address

        url = self.cleaned_data["webhook_url"]
        if url and not url.startswith(("http://", "https://")):
            raise forms.ValidationError("Only http:// and https:// URLs.")
        host = (urlsplit(url).hostname or "") if url else ""
        try:
            literal = host and not settings.WEBHOOK_ALLOW_PRIVATE and not allowed_address(host)
        except ValueError:
            literal = host.lower() in ("localhost",) and not settings.WEBHOOK_ALLOW_PRIVATE
        if literal:
            raise forms.ValidationError(
                str(Refused(f"{host} is a loopback, private or reserved address; webhooks go to public hosts."))
            )
        return url

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        cleaned["email_roles"] = ",".join(cleaned.get("email_roles") or [])
        cleaned["severities"] = ",".join(cleaned.get("severities") or [])
        if kind == Channel.Kind.EMAIL and not (cleaned.get("email_roles") or cleaned.get("email_addresses")):
            self.add_error("email_addresses", "An email channel needs addresses or member roles.")
        if kind == Channel.Kind.WEBHOOK:
            if not cleaned.get("webhook_url"):
                self.add_error("webhook_url", "A webhook channel needs a URL.")
            if len(cleaned.get("webhook_secret") or "") < 16:
                self.add_error("webhook_secret", "A secret of at least 16 characters signs every request.")
        if kind in (Channel.Kind.SMS, Channel.Kind.WHATSAPP) and not cleaned.get("phone_numbers"):
            self.add_error("phone_numbers", "Give at least one number.")
        if bool(cleaned.get("quiet_start")) != bool(cleaned.get("quiet_end")):
            self.add_error("quiet_end", "Quiet hours need a start and an end.")
        if (cleaned.get("group_wait_seconds") or 0) > 3600:
            self.add_error("group_wait_seconds", "At most an hour.")
        if (cleaned.get("repeat_interval_minutes") or 0) > 7 * 24 * 60:
            self.add_error("repeat_interval_minutes", "At most a week.")
        return cleaned


class NoteForm(forms.Form):
    note = forms.CharField(
        max_length=500, required=False, widget=forms.TextInput(attrs={"placeholder": "Note (optional)"})
    )


class BulkAcknowledgeForm(NoteForm):
    ids = forms.CharField(max_length=20000)

    def clean_ids(self):
        parts = [p for p in re.split(r"[,\s]+", self.cleaned_data["ids"]) if p]
        ids = [whole_number(p) for p in parts]
        if not ids or None in ids or len(ids) > 500:
            raise forms.ValidationError("Choose up to 500 alerts.")
        return ids
