from django import forms
from django.core.exceptions import ValidationError

from portal.tenancy.models import Invitation, Membership, Role, Tenant


def grantable_roles(actor: Membership) -> list[tuple[str, str]]:
    """Owners may grant any role; admins any but owner."""
    return [(value, label) for value, label in Role.choices if actor.allows(Role.OWNER) or value != Role.OWNER]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)

    def __init__(self, *args, actor: Membership, target: Membership, **kwargs):
        super().__init__(*args, **kwargs)
        self.actor, self.target = actor, target
        self.fields["role"].choices = grantable_roles(actor)

    def clean_role(self):
        role = self.cleaned_data["role"]
        if self.target.role == Role.OWNER and not self.actor.allows(Role.OWNER):
            raise ValidationError("Only an owner may change an owner's role.")
        if self.target.is_last_owner() and role != Role.OWNER:
            raise ValidationError("This is the last owner; make someone else an owner first.")
        return role


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    def __init__(self, *args, actor: Membership, **kwargs):
        super().__init__(*args, **kwargs)
        self.actor = actor
        self.fields["role"].choices = grantable_roles(actor)

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        tenant = self.actor.tenant
        if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
            raise ValidationError("This person is already a member.")
        if Invitation.objects.open().filter(tenant=tenant, email__iexact=email).exists():
            raise ValidationError("An invitation to this address is open already; resend or revoke it below.")
        return email


class OrganisationForm(forms.ModelForm):
    """The organisation's own settings (admins): its name and the time zone every page, chart,
    CSV and day bucket uses. The slug and host stay as the console made them."""

    class Meta:
        model = Tenant
        fields = ["name", "time_zone"]
        help_texts = {
            "time_zone": "An IANA name such as Europe/Lisbon or America/Sao_Paulo (default UTC). Pages, charts "
            "and CSV show times in it, 24-hour.",
        }

    def clean_time_zone(self):
        return self.cleaned_data["time_zone"].strip()
