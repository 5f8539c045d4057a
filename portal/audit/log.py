"""Writing the audit trail: every state change a person makes goes through record()."""

from django.db import models

from portal.audit.models import AuditLog


def client_ip(request) -> str | None:
    # REMOTE_ADDR is the proxy's address behind a proxy; the deployment's proxy sets it right
    # (gunicorn --forwarded-allow-ips) rather than us trusting a spoofable header here.
    return request.META.get("REMOTE_ADDR") or None


def changed_fields(before: dict, after: dict) -> dict:
    """{field: [old, new]} for the fields whose value differs."""
    return {key: [before.get(key), value] for key, value in after.items() if before.get(key) != value}


def record(request, action: str, obj: models.Model | None = None, changes: dict | None = None, **target) -> AuditLog:
    """Write one audit row in the current schema.

    request: gives the actor and IP (None for system actions).
    obj: the object acted on; or pass object_type, object_id, object_repr in target.
    changes: {field: [old, new]} or any JSON detail of the action.
    """
    user = getattr(request, "user", None)
    if obj is not None:
        target.setdefault("object_type", obj._meta.label_lower)
        target.setdefault("object_id", str(obj.pk))
        target.setdefault("object_repr", str(obj)[:200])
    return AuditLog.objects.create(
        actor=user if user is not None and user.is_authenticated else None,
        actor_email=user.email if user is not None and user.is_authenticated else "",
        action=action,
        changes=changes or {},
        ip=client_ip(request) if request is not None else None,
        **target,
    )
