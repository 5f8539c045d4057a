"""`seed_demo`: an idempotent demo with two tenants, people of every role, and each app's data.

People and passwords are made once; a re-run keeps them (and their passwords) and only adds
what is missing. New passwords are printed once and kept in .data/demo-logins.txt (mode 0600)
so `make run` can show them again. Apps add their own demo data in a `demo.py` module with a
`seed_tenant(tenant, log)` function, run inside the tenant's schema.
"""

import os
import secrets

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand
from django_tenants.utils import schema_context

from portal.accounts.models import User
from portal.core.discovery import app_modules
from portal.tenancy.models import Membership, Role, Tenant
from portal.tenancy.provisioning import create_tenant

TENANTS = {"acme": "Acme Cooling", "globex": "Globex Outlets"}

# (email, name, {tenant slug: role}); alice works for both, to show the tenant switcher.
PEOPLE = [
    ("alice@acme.example", "Alice Owner", {"acme": Role.OWNER, "globex": Role.OPERATOR}),
    ("adam@acme.example", "Adam Admin", {"acme": Role.ADMIN}),
    ("olga@acme.example", "Olga Operator", {"acme": Role.OPERATOR}),
    ("victor@acme.example", "Victor Viewer", {"acme": Role.VIEWER}),
    ("gina@globex.example", "Gina Owner", {"globex": Role.OWNER}),
    ("gus@globex.example", "Gus Admin", {"globex": Role.ADMIN}),
    ("otto@globex.example", "Otto Operator", {"globex": Role.OPERATOR}),
    ("vera@globex.example", "Vera Viewer", {"globex": Role.VIEWER}),
]
STAFF = ("ops@fieldwatch.example", "Fieldwatch Operator")
LOGINS_FILE = settings.DATA_DIR / "demo-logins.txt"


class Command(BaseCommand):
    help = "Create or complete the demo: tenants acme and globex, their people, and demo data."

    def add_arguments(self, parser):
        parser.add_argument("--password", help="password for new demo users (default: a random one each)")

    def handle(self, password=None, **options):
        tenants = {slug: self.ensure_tenant(slug, name) for slug, name in TENANTS.items()}
        new_logins = []
        for email, name, roles in PEOPLE:
            user, raw = self.ensure_user(email, name, password)
            if raw:
                new_logins.append((email, raw, ", ".join(f"{role} of {slug}" for slug, role in roles.items())))
            for slug, role in roles.items():
                Membership.objects.get_or_create(user=user, tenant=tenants[slug], defaults={"role": role})
        staff, raw = self.ensure_user(*STAFF, password, is_staff=True)
        if raw:
            new_logins.append((staff.email, raw, "operator console"))
        for tenant in tenants.values():
            self.seed_apps(tenant)
        self.report(new_logins)

    def ensure_tenant(self, slug: str, name: str) -> Tenant:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = create_tenant(name, slug)
            self.stdout.write(f"created tenant {slug} at {tenant.primary_domain()}")
        return tenant

    def ensure_user(self, email, name, password, is_staff=False):
        user = User.objects.filter(email__iexact=email).first()
        if user is not None:
            return user, None
        raw = password or secrets.token_urlsafe(12)
        user = User.objects.create_user(email, raw, name=name, is_staff=is_staff)
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        return user, raw

    def seed_apps(self, tenant: Tenant) -> None:
        for module in app_modules("demo"):
            with schema_context(tenant.schema_name):
                module.seed_tenant(tenant, self.stdout.write)

    def report(self, new_logins) -> None:
        if not new_logins:
            self.stdout.write("demo complete; existing people kept their passwords")
            return
        lines = [f"{email}  {password}  ({what})" for email, password, what in new_logins]
        LOGINS_FILE.parent.mkdir(exist_ok=True)
        with open(os.open(LOGINS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as handle:
            handle.write("\n".join(lines) + "\n")
        self.stdout.write("Demo logins (shown once, kept in .data/demo-logins.txt):")
        for line in lines:
            self.stdout.write(f"  {line}")
