import hashlib
import re
import secrets
from datetime import timedelta
from zoneinfo import ZoneInfo, available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.text import slugify
from django_tenants.models import DomainMixin, TenantMixin
from django_tenants.utils import schema_exists


class TenantQuerySet(models.QuerySet):
    def customers(self):
        """Every tenant but the public schema (which holds the site and console, not a customer)."""
        return self.exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)

    def active(self):
        return self.customers().filter(is_active=True)


def validate_time_zone(name: str) -> None:
    if name not in available_timezones():
        raise ValidationError(f"{name!r} is not a time zone of the IANA database (e.g. Europe/Lisbon, UTC).")


class Tenant(TenantMixin):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    is_active = models.BooleanField(default=True, help_text="Suspended tenants see a notice; their devices get 403.")
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="Pages, charts, CSV and day/month buckets of this organisation use this time zone.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    auto_create_schema = True
    auto_drop_schema = True

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def zone(self) -> ZoneInfo:
        """The tenant's time zone (UTC should a stored name ever stop being valid)."""
        try:
            return ZoneInfo(self.time_zone or "UTC")
        except (ValueError, KeyError):
            return ZoneInfo("UTC")

    @property
    def is_public(self) -> bool:
        return self.schema_name == settings.PUBLIC_SCHEMA_NAME

    @staticmethod
    def schema_for_slug(slug: str) -> str:
        # PostgreSQL identifiers take no hyphens without quoting; schema names stay plain.
        return slug.replace("-", "_")

    @staticmethod
    def domain_for_slug(slug: str) -> str:
        return f"{slug}.{settings.BASE_DOMAIN}"

    @classmethod
    def suggest_slug(cls, name: str) -> str:
        base = slugify(name).replace("_", "-")[:40].strip("-") or "org"
        if not base[0].isalpha():
            base = f"org-{base}"
        slug, n = base, 2
        while cls.slug_problem(slug):
            slug, n = f"{base}-{n}", n + 1
        return slug

    @classmethod
    def slug_problem(cls, slug: str) -> str | None:
        """Why a new tenant may not take this slug, or None.

        Reserved by schema name as well as by slug: `tenant_template` and `tenant-template` both name
        the template schema, and django-tenants adopts a schema that exists instead of creating one,
        so a tenant given the template (or public, or a system schema) would share its tables.
        """
        if not SLUG_PATTERN.fullmatch(slug):
            return "Use lower-case letters, digits and hyphens, starting with a letter."
        schema = cls.schema_for_slug(slug)
        if slug in RESERVED_SLUGS or schema_is_reserved(schema):
            return "This address is reserved."
        if cls.objects.filter(models.Q(slug=slug) | models.Q(schema_name=schema)).exists() or schema_exists(schema):
            return "This address is taken."
        return None

    @classmethod
    def validate_new_slug(cls, slug: str) -> None:
        problem = cls.slug_problem(slug)
        if problem:
            raise ValidationError(problem, code="slug")

    def primary_domain(self) -> str:
        return next((d.domain for d in self.domains.all() if d.is_primary), self.domain_for_slug(self.slug))


# Host names a customer may not take: they collide with the public site or infrastructure.
RESERVED_SLUGS = {"www", "api", "ops", "admin", "public", "static", "mail", "mqtt", "status", "tenant-template"}

# A host-name label (no underscore: DNS refuses it, and `a_b` would share the schema of `a-b`).
SLUG_PATTERN = re.compile(r"[a-z][a-z0-9-]*")


def schema_is_reserved(schema: str) -> bool:
    """Schemas no tenant may own: public, the template new tenants are cloned from, PostgreSQL's own."""
    fixed = {settings.PUBLIC_SCHEMA_NAME, settings.TENANT_BASE_SCHEMA, "information_schema"}
    return schema in fixed or schema.startswith("pg_")


class Domain(DomainMixin):
    pass


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"


# Each role can do everything the roles below it can.
ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")]
        ordering = ["user__email"]

    def __str__(self):
        return f"{self.user} in {self.tenant} as {self.role}"

    def allows(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def is_last_owner(self) -> bool:
        if self.role != Role.OWNER:
            return False
        return not Membership.objects.filter(tenant=self.tenant, role=Role.OWNER).exclude(pk=self.pk).exists()


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class InvitationQuerySet(models.QuerySet):
    def open(self):
        """Neither accepted nor revoked (possibly expired: those can be resent)."""
        return self.filter(accepted_at=None, revoked_at=None)

    def pending(self):
        """Open and still within its validity: the link works."""
        return self.open().filter(expires_at__gt=timezone.now())

    def for_token(self, raw: str):
        """The invitation a raw token from an email link names, or None."""
        return self.select_related("tenant").filter(token_hash=hash_token(raw)).first()


class Invitation(models.Model):
    """An invitation to join a tenant; only the token's hash is stored, the raw token is in the email."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    sent_count = models.PositiveIntegerField(default=0)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open invitation per address and tenant; resending renews it instead of adding another.
            models.UniqueConstraint(
                Lower("email"),
                "tenant",
                condition=models.Q(accepted_at=None, revoked_at=None),
                name="invitation_one_open_per_email",
            )
        ]

    def __str__(self):
        return f"Invitation of {self.email} to {self.tenant}"

    def renew_token(self) -> str:
        """Give the invitation a fresh token and expiry; returns the raw token for the email link."""
        raw = secrets.token_urlsafe(32)
        self.token_hash = hash_token(raw)
        self.expires_at = timezone.now() + timedelta(days=settings.INVITATION_DAYS)
        return raw

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"

    def problem_for(self, user) -> str | None:
        """Why this invitation cannot be accepted (by this user, if given), or None when it can."""
        messages = {
            "accepted": "This invitation has already been used.",
            "revoked": "This invitation was revoked by an administrator.",
            "expired": "This invitation has expired. Ask an administrator to send a new one.",
        }
        if self.status in messages:
            return messages[self.status]
        if not self.tenant.is_active:
            return "This organisation is suspended."
        if user is not None and user.is_authenticated and user.email.lower() != self.email.lower():
            return f"This invitation was sent to {self.email}, but you are signed in as {user.email}."
        return None


class InvitationError(Exception):
    pass


def accept_invitation(invitation: Invitation, user) -> Membership:
    """Turn an invitation into a membership, once: a conditional update decides who wins a race."""
    problem = invitation.problem_for(user)
    if problem:
        raise InvitationError(problem)
    with transaction.atomic():
        won = Invitation.objects.pending().filter(pk=invitation.pk).update(accepted_at=timezone.now(), accepted_by=user)
        if not won:
            raise InvitationError("This invitation has already been used.")
        membership, _ = Membership.objects.get_or_create(
            user=user, tenant=invitation.tenant, defaults={"role": invitation.role}
        )
    invitation.refresh_from_db()
    return membership


class LockRoute(models.Model):
    """Which tenant a lock id belongs to, for locks in the field that speak seed 004's topics
    (`smartlock/{id}/…` names no tenant). Kept in the public schema beside the tenants, so the
    bridge finds the schema of a lock message with one indexed lookup; the lock id is unique across
    the whole deployment (the topic has no other way to tell two locks apart)."""

    lock_id = models.CharField(max_length=64, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="lock_routes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["lock_id"]

    def __str__(self):
        return f"{self.lock_id} → {self.tenant.slug}"
