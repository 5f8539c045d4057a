import time

from django.core.management.base import BaseCommand, CommandError

from portal.ops.forms import TenantForm
from portal.tenancy.provisioning import create_tenant


class Command(BaseCommand):
    help = "Create a ready tenant (schema cloned from the migrated template, domain, optional owner)."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="host name part: <slug>.<base domain>")
        parser.add_argument("--name", help="display name (default: the slug, capitalised)")
        parser.add_argument("--owner", help="email of an existing user who becomes the owner")

    def handle(self, slug, name=None, owner=None, **options):
        form = TenantForm({"slug": slug, "name": name or slug.replace("-", " ").title(), "owner_email": owner or ""})
        if not form.is_valid():
            raise CommandError("; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()))
        started = time.monotonic()
        data = form.cleaned_data
        tenant = create_tenant(data["name"], data["slug"], owner=data["owner_email"])
        seconds = time.monotonic() - started
        self.stdout.write(
            f"created {tenant.slug} (schema {tenant.schema_name}) at {tenant.primary_domain()} in {seconds:.2f}s"
        )
