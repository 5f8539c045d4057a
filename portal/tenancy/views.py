import secrets

from allauth.account.models import EmailAddress
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.accounts.forms import InvitedSignupForm
from portal.accounts.models import User
from portal.audit.log import record
from portal.core.editing import form_view
from portal.core.lists import Column, list_response
from portal.tenancy.access import role_required
from portal.tenancy.filters import MembershipFilter
from portal.tenancy.forms import InviteForm, OrganisationForm, RoleForm
from portal.tenancy.models import (
    Invitation,
    InvitationError,
    Membership,
    Role,
    Tenant,
    accept_invitation,
)
from portal.tenancy.tasks import send_invitation_email

MEMBER_COLUMNS = [
    Column("email", "user.email"),
    Column("name", "user.name"),
    Column("role", "role"),
    Column("joined", "created_at"),
]


def get_membership_for_admin(request, pk: int) -> Membership:
    """A membership of the current tenant (404 for any other tenant's) that the admin may manage."""
    membership = get_object_or_404(Membership.objects.select_related("user", "tenant"), pk=pk, tenant=request.tenant)
    if membership.role == Role.OWNER and not request.membership.allows(Role.OWNER):
        raise PermissionDenied("Only owners may change or remove an owner.")
    return membership


@role_required(Role.ADMIN)
def members(request):
    queryset = Membership.objects.filter(tenant=request.tenant).select_related("user")
    filterset = MembershipFilter(request.GET, queryset=queryset.order_by("user__email"))
    pending = Invitation.objects.open().filter(tenant=request.tenant).select_related("invited_by")
    context = {"pending": pending, "invite_form": InviteForm(actor=request.membership), "roles": Role.choices}
    return list_response(request, filterset, "tenancy/members.html", MEMBER_COLUMNS, "members", context)


@require_POST
@role_required(Role.ADMIN)
def member_role(request, pk):
    membership = get_membership_for_admin(request, pk)
    form = RoleForm(request.POST, actor=request.membership, target=membership)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["role"]))
        return redirect("tenancy-member-list")
    old_role = membership.role
    if form.cleaned_data["role"] != old_role:
        membership.role = form.cleaned_data["role"]
        membership.save(update_fields=["role"])
        record(request, "member.role_changed", membership.user, {"role": [old_role, membership.role]})
        messages.success(request, f"{membership.user.email} is now {membership.get_role_display().lower()}.")
    return redirect("tenancy-member-list")


@require_POST
@role_required(Role.ADMIN)
def member_remove(request, pk):
    membership = get_membership_for_admin(request, pk)
    if membership.is_last_owner():
        messages.error(request, "The last owner cannot be removed; make someone else an owner first.")
        return redirect("tenancy-member-list")
    membership.delete()
    record(request, "member.removed", membership.user, {"role": membership.role})
    messages.success(request, f"{membership.user.email} no longer has access to {request.tenant.name}.")
    if membership.user == request.user:
        return redirect("/")
    return redirect("tenancy-member-list")


def invitation_link(request, raw_token: str) -> str:
    return request.build_absolute_uri(reverse("tenancy-invitation-accept", args=[raw_token]))


def send_invitation(request, invitation: Invitation, raw_token: str) -> None:
    invitation.sent_count += 1
    invitation.save()
    send_invitation_email(invitation.pk, invitation_link(request, raw_token))


@require_POST
@role_required(Role.ADMIN)
def invitation_create(request):
    form = InviteForm(request.POST, actor=request.membership)
    if not form.is_valid():
        queryset = Membership.objects.filter(tenant=request.tenant).select_related("user")
        filterset = MembershipFilter({}, queryset=queryset.order_by("user__email"))
        pending = Invitation.objects.open().filter(tenant=request.tenant).select_related("invited_by")
        context = {"pending": pending, "invite_form": form, "roles": Role.choices, "invite_open": True}
        response = list_response(request, filterset, "tenancy/members.html", MEMBER_COLUMNS, "members", context)
        response.status_code = 400
        return response
    invitation = Invitation(tenant=request.tenant, invited_by=request.user, **form.cleaned_data)
    raw_token = invitation.renew_token()
    send_invitation(request, invitation, raw_token)
    record(request, "invitation.sent", invitation, {"email": invitation.email, "role": invitation.role})
    messages.success(request, f"Invitation sent to {invitation.email}.")
    return redirect("tenancy-member-list")


def get_open_invitation(request, pk: int) -> Invitation:
    return get_object_or_404(Invitation.objects.open(), pk=pk, tenant=request.tenant)


@require_POST
@role_required(Role.ADMIN)
def invitation_resend(request, pk):
    invitation = get_open_invitation(request, pk)
    raw_token = invitation.renew_token()
    send_invitation(request, invitation, raw_token)
    record(request, "invitation.resent", invitation, {"email": invitation.email})
    messages.success(request, f"Invitation sent again to {invitation.email}; the earlier link no longer works.")
    return redirect("tenancy-member-list")


@require_POST
@role_required(Role.ADMIN)
def invitation_revoke(request, pk):
    invitation = get_open_invitation(request, pk)
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    record(request, "invitation.revoked", invitation, {"email": invitation.email})
    messages.success(request, f"Invitation of {invitation.email} revoked.")
    return redirect("tenancy-member-list")


def invitation_accept(request, token):
    """The link in an invitation email. Shows what it is for, then, depending on who follows it:
    accept (signed in with the invited email), sign in (account exists) or create an account."""
    invitation = Invitation.objects.for_token(token)
    if invitation is None or invitation.tenant_id != request.tenant.pk:
        return render(request, "tenancy/invitation.html", {"problem": "This invitation link is not valid."}, status=404)
    user = request.user if request.user.is_authenticated else None
    problem = invitation.problem_for(user)
    has_account = User.objects.filter(email__iexact=invitation.email).exists()
    form = None
    if problem is None and user is None and not has_account:
        form = InvitedSignupForm(request.POST or None, email=invitation.email)

    if request.method == "POST" and problem is None:
        if user is None and form is not None and form.is_valid():
            user = create_invited_user(request, invitation, form.cleaned_data)
        if user is not None:
            try:
                membership = accept_invitation(invitation, user)
            except InvitationError as error:
                problem = str(error)
            else:
                record(request, "invitation.accepted", invitation, {"email": user.email, "role": membership.role})
                messages.success(request, f"Welcome to {request.tenant.name}.")
                return redirect("core-dashboard")

    status = 410 if problem and invitation.status != "pending" else (403 if problem else 200)
    context = {"invitation": invitation, "problem": problem, "form": form, "has_account": has_account}
    return render(request, "tenancy/invitation.html", context, status=status)


def create_invited_user(request, invitation: Invitation, data: dict) -> User:
    """The invitation email proved the address, so the account starts verified and signed in."""
    user = User.objects.create_user(invitation.email, data["password1"], name=data.get("name", ""))
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    login(request, user, backend="allauth.account.auth_backends.AuthenticationBackend")
    return user


# --- Moving between a user's tenants --------------------------------------------------------
# Sessions are host-only, so going to another tenant's host needs a sign-in there. The switch
# hands the user over with a one-time, 60-second signed token for that tenant only.

HANDOFF_SALT = "fieldwatch.tenancy.handoff"
HANDOFF_MAX_AGE = 60


@login_required
def switch(request, slug):
    target = get_object_or_404(Tenant.objects.active(), slug=slug)
    if not Membership.objects.filter(user=request.user, tenant=target).exists():
        raise Http404("No such organisation.")
    token = signing.dumps(
        {"u": request.user.pk, "t": target.schema_name, "n": secrets.token_urlsafe(16)}, salt=HANDOFF_SALT
    )
    port = request.get_port()
    default_port = "443" if request.is_secure() else "80"
    host = target.primary_domain() + ("" if port == default_port else f":{port}")
    return redirect(f"{request.scheme}://{host}{reverse('tenancy-handoff')}?token={token}")


def handoff(request):
    try:
        claim = signing.loads(request.GET.get("token", ""), salt=HANDOFF_SALT, max_age=HANDOFF_MAX_AGE)
    except signing.BadSignature:
        raise PermissionDenied("This sign-in link is invalid or has expired; sign in again.") from None
    # add() succeeds once per nonce: a replayed link is refused
    if claim.get("t") != connection.schema_name or not cache.add(f"handoff:{claim['n']}", 1, HANDOFF_MAX_AGE * 2):
        raise PermissionDenied("This sign-in link is invalid or has already been used.")
    user = User.objects.filter(pk=claim["u"], is_active=True).first()
    if user is None or not Membership.objects.filter(user=user, tenant=request.tenant).exists():
        raise PermissionDenied("You are not a member of this organisation.")
    login(request, user, backend="allauth.account.auth_backends.AuthenticationBackend")
    return redirect("core-dashboard")


@role_required(Role.ADMIN)
def organisation_settings(request):
    """The organisation's name and time zone (admins), audited."""
    return form_view(
        request,
        OrganisationForm,
        instance=Tenant.objects.get(pk=request.tenant.pk),  # not the routing cache's copy, which may be stale
        template="includes/object_form.html",
        action="organisation.updated",
        success_url=request.path,
        context={"title": "Organisation settings", "cancel_url": "/"},
    )
