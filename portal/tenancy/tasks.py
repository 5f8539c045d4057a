"""The one helper for tenant work in Huey.

Every task that touches tenant data is declared with @tenant_task: it is enqueued with the
schema name first and runs inside schema_context of that tenant only. @tenant_periodic_task
adds a periodic fan-out that enqueues one run per active tenant.

Huey does not acknowledge: a killed worker can lose or repeat a task, so tasks are idempotent.
"""

import functools
import logging

from django_tenants.utils import schema_context
from huey.contrib.djhuey import db_periodic_task, db_task


def tenant_task(**task_options):
    def decorator(func):
        @db_task(name=func.__name__, **task_options)  # huey prefixes the module (copied by wraps)
        @functools.wraps(func)
        def task(schema_name: str, *args, **kwargs):
            with schema_context(schema_name):
                return func(*args, **kwargs)

        return task

    return decorator


def enqueue_quietly(task, *args) -> bool:
    """Enqueue, and log instead of failing when the queue is down: for reactions that a sweep or
    command applies later (manage.py mqtt_sync), which must not undo the person's change."""
    try:
        task(*args)
        return True
    except Exception:
        logging.getLogger(__name__).exception("could not queue %s; it is applied by the next sync", task.name)
        return False


def enqueue_for_active_tenants(task, *args, **kwargs) -> int:
    from portal.tenancy.models import Tenant

    schemas = list(Tenant.objects.active().values_list("schema_name", flat=True))
    for schema_name in schemas:
        task(schema_name, *args, **kwargs)
    return len(schemas)


def tenant_periodic_task(schedule, **task_options):
    """A tenant task plus a periodic task on `schedule` (a huey crontab) that fans it out."""

    def decorator(func):
        per_tenant = tenant_task(**task_options)(func)

        @db_periodic_task(schedule, name=f"{func.__name__}.fan_out")
        def fan_out():
            return enqueue_for_active_tenants(per_tenant)

        per_tenant.fan_out = fan_out
        return per_tenant

    return decorator


@db_task()
def send_invitation_email(invitation_id: int, link: str) -> bool:
    """Email an invitation link. The raw token exists only in this link, never in the database."""
    from django.conf import settings
    from django.core.mail import send_mail
    from django.template.loader import render_to_string

    from portal.tenancy.models import Invitation

    invitation = Invitation.objects.select_related("tenant", "invited_by").filter(pk=invitation_id).first()
    if invitation is None or invitation.status != "pending":
        return False  # revoked or accepted meanwhile: nothing to send
    context = {"invitation": invitation, "link": link, "days": settings.INVITATION_DAYS}
    subject = render_to_string("tenancy/email/invitation_subject.txt", context).strip()
    body = render_to_string("tenancy/email/invitation_message.txt", context)
    send_mail(subject, body, None, [invitation.email])
    return True
