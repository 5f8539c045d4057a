from allauth.account.forms import SignupForm as AllauthSignupForm
from django import forms
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError

from portal.accounts.models import User
from portal.tenancy.models import Tenant
from portal.tenancy.provisioning import create_tenant


class SignupForm(AllauthSignupForm):
    """Public sign-up: a person and the organisation they own."""

    organisation = forms.CharField(
        label="Organisation name",
        max_length=100,
        min_length=2,
        help_text="Your company or team, as your colleagues know it.",
    )
    slug = forms.SlugField(
        label="Address",
        max_length=40,
        required=False,
        help_text="The first part of your organisation's web address (acme in acme.example.com). Leave empty to derive it from the name.",
    )

    field_order = ["organisation", "slug", "email", "password1", "password2"]

    def clean_slug(self):
        slug = self.cleaned_data.get("slug", "").lower()
        if not slug:
            return ""
        problem = Tenant.slug_problem(slug)
        if problem:
            raise ValidationError(f"{problem} Choose another.")
        return slug

    def signup(self, request, user):
        name = self.cleaned_data["organisation"].strip()
        slug = self.cleaned_data.get("slug") or Tenant.suggest_slug(name)
        create_tenant(name, slug, owner=user, request=request)


class InvitedSignupForm(forms.Form):
    """An invited person sets up their account; the email is the invitation's and is not asked."""

    name = forms.CharField(label="Your name", max_length=150, required=False)
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(
        label="Password (again)", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )

    def __init__(self, *args, email: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email
        self.fields["password1"].help_text = password_validation.password_validators_help_text_html()

    def clean(self):
        cleaned = super().clean()
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", "The two passwords differ.")
        elif password1:
            try:
                password_validation.validate_password(password1, User(email=self.email, name=cleaned.get("name", "")))
            except ValidationError as error:
                self.add_error("password1", error)
        if User.objects.filter(email__iexact=self.email).exists():
            raise ValidationError("An account with this email already exists; sign in to accept the invitation.")
        return cleaned
