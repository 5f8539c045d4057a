"""Account events a person causes on a tenant's host go into that tenant's audit log.

Accounts live in the public schema; the trail of what happened while someone worked in a
tenant (sign-in, password and email changes, second factors) belongs to that tenant.
"""

from allauth.account import signals as account_signals
from allauth.mfa import signals as mfa_signals
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from portal.audit.log import record


def on_tenant_host(request) -> bool:
    tenant = getattr(request, "tenant", None)
    return tenant is not None and not tenant.is_public


def record_account_event(request, action: str, user, **changes) -> None:
    if request is not None and on_tenant_host(request):
        record(request, action, user, changes)


@receiver(user_logged_in)
def signed_in(sender, request, user, **kwargs):
    record_account_event(request, "user.signed_in", user)


@receiver(user_logged_out)
def signed_out(sender, request, user, **kwargs):
    if user is not None:
        record_account_event(request, "user.signed_out", user)


@receiver(account_signals.password_changed)
def password_changed(sender, request, user, **kwargs):
    record_account_event(request, "user.password_changed", user)


@receiver(account_signals.email_changed)
def email_changed(sender, request, user, from_email_address, to_email_address, **kwargs):
    old = from_email_address.email if from_email_address else None
    record_account_event(request, "user.email_changed", user, email=[old, to_email_address.email])


@receiver(mfa_signals.authenticator_added)
def authenticator_added(sender, request, user, authenticator, **kwargs):
    record_account_event(request, "user.mfa_added", user, type=authenticator.type)


@receiver(mfa_signals.authenticator_removed)
def authenticator_removed(sender, request, user, authenticator, **kwargs):
    record_account_event(request, "user.mfa_removed", user, type=authenticator.type)
