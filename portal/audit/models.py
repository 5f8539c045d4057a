from django.conf import settings
from django.db import models


class AuditLog(models.Model):
    """One state change a person made in this tenant. Lives in the tenant's schema.

    The actor is kept by id and email without a database constraint: users live in the public
    schema and the trail must outlive a deleted account.
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_email = models.EmailField(blank=True)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # used by the audit page's filters on action and object, newest first
            models.Index(fields=["action", "-created_at"], name="audit_action_time"),
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
        ]

    def __str__(self):
        return f"{self.actor_email or 'system'} {self.action} {self.object_type} {self.object_id}"
