import re
from datetime import UTC, datetime, timedelta

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from portal.accounts.models import User
from portal.tenancy.models import RESERVED_SLUGS, Domain, Tenant


class TenantForm(forms.Form):
    name = forms.CharField(max_length=100, min_length=2)
    # a DNS label: what the help says is exactly what the field takes (no underscores)
    slug = forms.RegexField(
        regex=r"^[A-Za-z0-9-]+$",
        max_length=40,
        error_messages={"invalid": "Use only letters, digits and hyphens (no underscores or spaces)."},
    )
    owner_email = forms.EmailField(required=False, help_text="An existing user who becomes the owner (optional).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["slug"].help_text = (
            f"The organisation's host name: a slug of acme gives acme.{settings.BASE_DOMAIN}. "
            "Letters, digits and hyphens, starting with a letter."
        )

    def clean_slug(self):
        slug = self.cleaned_data["slug"].lower()
        if slug.endswith("-"):
            raise ValidationError("The slug cannot end with a hyphen (host names cannot).")
        Tenant.validate_new_slug(slug)  # reserved by schema name too; never an existing schema
        if Domain.objects.filter(domain=Tenant.domain_for_slug(slug)).exists():
            raise ValidationError(f"{Tenant.domain_for_slug(slug)} already serves another tenant.")
        return slug

    def clean_owner_email(self):
        email = self.cleaned_data["owner_email"]
        if not email:
            return None
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise ValidationError("No user has this email; they can sign up first, or be invited later.")
        return user


HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class DomainForm(forms.Form):
    """Another host name a tenant is served at (a customer's own domain, or a second name under ours)."""

    domain = forms.CharField(max_length=253, help_text="A host name, e.g. monitoring.example.com; no scheme or port.")

    def __init__(self, *args, tenant: Tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.tenant = tenant

    def clean_domain(self):
        domain = self.cleaned_data["domain"].strip().lower().rstrip(".")
        base = settings.BASE_DOMAIN.lower()
        if domain == base:
            raise ValidationError("The base domain is the public site and console; it cannot serve a tenant.")
        labels = domain.split(".")
        if len(labels) < 2 or not all(HOST_LABEL.match(label) for label in labels):
            raise ValidationError("Enter a host name such as monitoring.example.com (letters, digits, hyphens, dots).")
        if Domain.objects.filter(domain=domain).exists():
            raise ValidationError("This host name is already in use.")
        if domain.endswith(f".{base}"):
            label = domain[: -len(base) - 1]
            others = Tenant.objects.exclude(pk=self.tenant.pk)
            if "." in label or label in RESERVED_SLUGS or others.filter(slug=label).exists():
                raise ValidationError(f"Under {base} a tenant may only take one free name (<name>.{base}).")
        return domain


# The query's bounds (seed 001): page size, the drill-down's raw rows, the CSV's rows, and the
# widest range each bucket may span (so one query never groups years of minutes).
DEFAULT_LIMIT, MAX_LIMIT = 200, 1000
DEFAULT_RAW, MAX_RAW = 500, 1000
MAX_EXPORT_ROWS = 10_000
MAX_SPAN = {"1m": timedelta(days=7), "5m": timedelta(days=31), "1h": timedelta(days=400)}
DEFAULT_SPAN = timedelta(hours=24)
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


class MomentField(forms.Field):
    """An ISO 8601 time (a datetime-local input's value too); no zone means UTC."""

    def __init__(self, **kwargs):
        attrs = {"placeholder": "2026-01-31T12:00:00Z", "class": "form-control form-control-sm", "maxlength": 40}
        super().__init__(required=False, widget=forms.TextInput(attrs=attrs), **kwargs)

    def to_python(self, value):
        value = (value or "").strip()
        if not value:
            return None
        if len(value) > 40:
            raise ValidationError("Enter an ISO 8601 time, e.g. 2026-01-31T12:00:00Z.")
        try:
            moment = parse_datetime(value)
        except ValueError:
            moment = None
        if moment is None:
            raise ValidationError("Enter an ISO 8601 time, e.g. 2026-01-31T12:00:00Z.")
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if not EARLIEST <= moment < LATEST:
            raise ValidationError("Pick a time between 2000 and 2099.")
        return moment.astimezone(UTC)


def tenant_choices(all_label: str | None):
    choices = [(t.slug, f"{t.name} ({t.slug})") for t in Tenant.objects.customers().order_by("name")]
    return ([("", all_label)] if all_label else [("", "Pick a tenant")]) + choices


class TelemetryQueryForm(forms.Form):
    """Seed 001's parameters, under its names: tenant_slug (one or all), device_id, sensor_id,
    from, to, bucket, limit, offset. cleaned_data["tenants"] lists the Tenant rows to ask."""

    tenant_slug = forms.ChoiceField(required=False, label="Tenant")
    device_id = forms.CharField(max_length=100, required=False, label="Device id")
    sensor_id = forms.CharField(max_length=100, required=False, label="Sensor id")
    bucket = forms.ChoiceField(
        choices=[("1m", "1 minute"), ("5m", "5 minutes"), ("1h", "1 hour")], initial="1m", required=False
    )
    limit = forms.IntegerField(min_value=1, max_value=MAX_LIMIT, required=False, label="Rows per page")
    offset = forms.IntegerField(min_value=0, required=False, widget=forms.HiddenInput)
    all_label = "All tenants"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tenant_slug"].choices = tenant_choices(self.all_label)
        self.fields["from"] = MomentField(label="From (UTC)")
        self.fields["to"] = MomentField(label="To (UTC)")
        self.order_fields(["tenant_slug", "device_id", "sensor_id", "from", "to", "bucket", "limit"])
        for field in self.fields.values():
            widget = field.widget
            css = "form-select form-select-sm" if isinstance(widget, forms.Select) else "form-control form-control-sm"
            widget.attrs.setdefault("class", css)

    def clean_device_id(self):
        return self.cleaned_data["device_id"].strip()

    def clean_sensor_id(self):
        return self.cleaned_data["sensor_id"].strip()

    def clean(self):
        data = super().clean()
        slug = data.get("tenant_slug")
        customers = Tenant.objects.customers().order_by("slug")
        data["tenants"] = list(customers.filter(slug=slug) if slug else customers)
        if "bucket" in self.fields and not self.errors.get("bucket"):
            data["bucket"] = data.get("bucket") or "1m"
        end = data.get("to") or timezone.now()
        start = data.get("from") or end - DEFAULT_SPAN
        data["from"], data["to"] = start, end
        if end <= start:
            self.add_error("to", "“To” must be after “From”.")
        elif data.get("bucket") in MAX_SPAN and end - start > MAX_SPAN[data["bucket"]]:
            span = MAX_SPAN[data["bucket"]].days
            self.add_error("to", f"With {data['bucket']} buckets pick a range of at most {span} days.")
        data["limit"] = data.get("limit") or DEFAULT_LIMIT
        data["offset"] = data.get("offset") or 0
        if data["offset"] + data["limit"] > MAX_EXPORT_ROWS:
            self.add_error("offset", f"Pages go as far as row {MAX_EXPORT_ROWS:,}; narrow the range to see older rows.")
        return data


class DrilldownForm(TelemetryQueryForm):
    """One sensor of one tenant: its newest raw readings in [from, to) (a bucket, by default all)."""

    all_label = None
    limit = forms.IntegerField(min_value=1, max_value=MAX_RAW, required=False, label="Readings")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("tenant_slug", "device_id", "sensor_id"):
            self.fields[name].required = True
        del self.fields["bucket"], self.fields["offset"]

    def clean(self):
        data = forms.Form.clean(self)
        data["tenant"] = Tenant.objects.customers().filter(slug=data.get("tenant_slug")).first()
        data["from"] = data.get("from") or EARLIEST
        data["to"] = data.get("to") or LATEST
        if data["to"] <= data["from"]:
            self.add_error("to", "“To” must be after “From”.")
        data["limit"] = data.get("limit") or DEFAULT_RAW
        return data
