from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from portal.tenancy.middleware import bind_session_to_tenant, forget_hosts
from portal.tenancy.models import Domain, Tenant

for model in (Tenant, Domain):
    post_save.connect(forget_hosts, sender=model, dispatch_uid=f"forget-hosts-save-{model.__name__}")
    post_delete.connect(forget_hosts, sender=model, dispatch_uid=f"forget-hosts-delete-{model.__name__}")


@receiver(user_logged_in)
def bind_session(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        bind_session_to_tenant(request)
