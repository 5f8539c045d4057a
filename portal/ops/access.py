"""Who may open the console: signed-in staff whose session passed a second factor.

Every console view is wrapped in @staff_required. The steps, in order:

1. Not signed in: the sign-in page, then back here.
2. Signed in but not staff: 403 (the console exists on the public host; saying so costs nothing).
3. Staff without TOTP: sent to enrol (allauth.mfa's activation page), then back here.
4. Staff with TOTP whose session never presented it (a session made before enrolment on another
   device, or by any path that skipped allauth's two-factor stage): asked for a code again
   (allauth.mfa's re-authentication page), then back here.

"Presented it" is allauth's own record of the session's authentication steps: its login stage and
its re-authentication write a `{"method": "mfa"}` entry. Enrolling does not, so on the public
site allauth's activation page is served by a subclass (ActivateTOTPView below, routed in
portal/urls_public.py ahead of allauth's URLs) that writes one (the person has just typed a valid
code) and then returns to the console page that sent them.
"""

import functools
from urllib.parse import urlencode

from allauth.account.internal.flows.login import get_authentication_records, record_authentication
from allauth.mfa.models import Authenticator
from allauth.mfa.totp import views as totp_views
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import reverse

RETURN_KEY = "fieldwatch_console_return"


def passed_second_factor(request) -> bool:
    return any(entry.get("method") == "mfa" for entry in get_authentication_records(request, request.user))


def back_here(url_name: str, request):
    return redirect(f"{reverse(url_name)}?{urlencode({REDIRECT_FIELD_NAME: request.get_full_path()})}")


def staff_required(view):
    @functools.wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("The console is for Fieldwatch operators.")
        if not is_mfa_enabled(request.user, [Authenticator.Type.TOTP]):
            # the activation form posts to its own bare URL, so the way back waits in the session
            request.session[RETURN_KEY] = request.get_full_path()
            return back_here("mfa_activate_totp", request)
        if not passed_second_factor(request):
            return back_here("mfa_reauthenticate", request)
        return view(request, *args, **kwargs)

    return wrapped


class ActivateTOTPView(totp_views.ActivateTOTPView):
    """allauth's TOTP activation, plus: the session counts as having presented the second factor,
    and staff go back to the console page that sent them (recovery codes stay one click away)."""

    def form_valid(self, form):
        response = super().form_valid(form)
        record_authentication(self.request, self.request.user, "mfa", type=Authenticator.Type.TOTP)
        return response

    def get_success_url(self) -> str:
        back = self.request.session.pop(RETURN_KEY, None)
        if self.request.user.is_staff and back and back.startswith("/ops/"):
            messages.success(self.request, "Two-factor authentication is on. Keep your recovery codes safe.")
            return back
        return super().get_success_url()


activate_totp = ActivateTOTPView.as_view()
