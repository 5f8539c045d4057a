from django import forms
from django.core.exceptions import ValidationError

from portal.accounts.models import User
from portal.tenancy.models import RESERVED_SLUGS, Tenant


class TenantForm(forms.Form):
    name = forms.CharField(max_length=100, min_length=2)
    slug = forms.SlugField(max_length=40, help_text="Host name: <slug>.<base domain>. Letters, digits and hyphens.")
    owner_email = forms.EmailField(required=False, help_text="An existing user who becomes the owner (optional).")

    def clean_slug(self):
        slug = self.cleaned_data["slug"].lower()
        if not slug[0].isalpha():
            raise ValidationError("The slug must start with a letter.")
        if slug in RESERVED_SLUGS or Tenant.objects.filter(slug=slug).exists():
            raise ValidationError("This slug is taken.")
        return slug

    def clean_owner_email(self):
        email = self.cleaned_data["owner_email"]
        if not email:
            return None
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise ValidationError("No user has this email; they can sign up first, or be invited later.")
        return user
