import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from telemetry.models import hash_token

KEY_PREFIX = "fwk_"  # tells an API key from a signed access token in an Authorization header
KEY_ROLES = [("viewer", "Viewer (read)"), ("operator", "Operator (read, act on devices and data)"), ("admin", "Admin")]


class ApiKeyQuerySet(models.QuerySet):
    def for_raw(self, raw: str):
        """The live key a raw secret names, or None (looked up by its hash only)."""
        if not raw or not raw.startswith(KEY_PREFIX) or len(raw) > 200:
            return None
        return self.filter(key_hash=hash_token(raw), revoked_at=None).first()


class ApiKey(models.Model):
    """A tenant's key for its integrations (bulk upload, analytics). Only the hash is stored."""

    name = models.CharField(max_length=100)
    # what the key may do in the JSON APIs (portal.api.toolkit.member); existing keys upload and
    # read telemetry, an operator's work. Keys act for programs, so never as an owner.
    role = models.CharField(max_length=10, choices=KEY_ROLES, default="operator")
    prefix = models.CharField(max_length=12, help_text="The key's first characters, to recognise it in lists.")
    key_hash = models.CharField(max_length=64, unique=True)
    # users live in the public schema: no database constraint, and deleting a user leaves the id
    # (a cascade from public cannot reach into every tenant's schema)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, name: str, user=None, role: str = "operator") -> tuple["ApiKey", str]:
        """A new key and its raw secret, which is shown once and never stored."""
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(name=name, role=role, prefix=raw[:12], key_hash=hash_token(raw), created_by=user)
        return key, raw

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])


class BulkJob(models.Model):
    """A large bulk upload, stored as a file and processed by a Huey task (claim check)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    file_name = models.CharField(max_length=300, help_text="Path in the default storage.")
    size_bytes = models.BigIntegerField()
    gzip = models.BooleanField(default=False)
    equipment_done = models.IntegerField(default=0)
    written = models.IntegerField(default=0)
    duplicates = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the worker running it (each committed batch)."
    )
    resumes = models.PositiveSmallIntegerField(default=0, help_text="Times it was resumed after its worker stalled.")
    sender = models.CharField(
        max_length=120,
        blank=True,
        help_text='The client that uploaded it ("key:<id>", "user:<id>"): its dead letters count against that '
        "client's allowance, in the first run and every resumed one alike.",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"bulk job {self.pk} ({self.status})"
