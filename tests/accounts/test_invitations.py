import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context
from helpers import PASSWORD, sign_in, unchanged

from portal.accounts.models import User
from portal.audit.models import AuditLog
from portal.tenancy.models import Invitation, Membership, Role


def invite(client, email="newcomer@example.com", role="operator") -> str:
    """Invite through the members page and return the link from the email."""
    response = client.post("/members/invitations/", {"email": email, "role": role})
    assert response.status_code == 302, response.content
    return re.search(r"http://acme\.localhost/invitations/\S+/", mail.outbox[-1].body).group(0)


def test_admin_invites_and_the_newcomer_creates_an_account(as_acme, acme):
    link = invite(as_acme("acme_admin"))
    assert mail.outbox[-1].to == ["newcomer@example.com"]
    stranger = Client(HTTP_HOST="acme.localhost")
    page = stranger.get(link)
    assert page.status_code == 200
    assert b"Create your account" in page.content
    response = stranger.post(
        link, {"name": "New Comer", "password1": "another-long-passphrase", "password2": "another-long-passphrase"}
    )
    assert response.status_code == 302
    user = User.objects.get(email="newcomer@example.com")
    assert Membership.objects.get(user=user, tenant=acme).role == Role.OPERATOR
    assert user.emailaddress_set.get().verified  # the invitation proved the address
    assert stranger.get("/").status_code == 200  # signed in, on the dashboard
    with schema_context("acme"):
        assert set(AuditLog.objects.values_list("action", flat=True)) >= {"invitation.sent", "invitation.accepted"}


def test_a_used_invitation_cannot_be_reused(as_acme):
    link = invite(as_acme("acme_admin"))
    first = Client(HTTP_HOST="acme.localhost")
    first.post(link, {"password1": "another-long-passphrase", "password2": "another-long-passphrase"})
    again = Client(HTTP_HOST="acme.localhost").get(link)
    assert again.status_code == 410
    assert b"already been used" in again.content


def test_an_expired_invitation_is_refused(as_acme):
    link = invite(as_acme("acme_admin"))
    Invitation.objects.filter(email="newcomer@example.com").update(expires_at=timezone.now() - timedelta(minutes=1))
    response = Client(HTTP_HOST="acme.localhost").post(
        link, {"password1": "another-long-passphrase", "password2": "another-long-passphrase"}
    )
    assert response.status_code == 410
    assert b"expired" in response.content
    assert not User.objects.filter(email="newcomer@example.com").exists()


def test_an_invitation_for_someone_else_is_refused(as_acme, people, acme):
    link = invite(as_acme("acme_admin"))
    wrong = sign_in(Client(HTTP_HOST="acme.localhost"), people["outsider"], "acme")
    response = wrong.post(link)
    assert response.status_code == 403
    assert b"was sent to newcomer@example.com" in response.content
    assert not Membership.objects.filter(user=people["outsider"], tenant=acme).exists()


def test_an_existing_user_accepts_after_signing_in(as_acme, people, acme):
    link = invite(as_acme("acme_admin"), email="outsider@example.com", role="viewer")
    anonymous = Client(HTTP_HOST="acme.localhost")
    assert b"Sign in to accept" in anonymous.get(link).content
    path = link.replace("http://acme.localhost", "")
    response = anonymous.post(f"/accounts/login/?next={path}", {"login": "outsider@example.com", "password": PASSWORD})
    assert response["Location"] == path
    assert anonymous.post(path).status_code == 302
    assert Membership.objects.get(user=people["outsider"], tenant=acme).role == Role.VIEWER


def test_an_invitation_link_of_another_tenant_is_not_valid_here(as_acme):
    link = invite(as_acme("acme_admin"))
    response = Client(HTTP_HOST="globex.localhost").get(link.replace("acme.localhost", ""))
    assert response.status_code == 404


def test_revoked_and_resent_invitations(as_acme):
    client = as_acme("acme_admin")
    old_link = invite(client)
    invitation = Invitation.objects.get(email="newcomer@example.com")
    client.post(f"/members/invitations/{invitation.pk}/resend/")
    new_link = re.search(r"http://\S+/invitations/\S+/", mail.outbox[-1].body).group(0)
    assert new_link != old_link
    assert Client(HTTP_HOST="acme.localhost").get(old_link).status_code == 404
    client.post(f"/members/invitations/{invitation.pk}/revoke/")
    assert Client(HTTP_HOST="acme.localhost").get(new_link).status_code == 410


def test_inviting_a_member_or_an_open_address_is_a_form_error(as_acme):
    client = as_acme("acme_admin")
    response = client.post("/members/invitations/", {"email": "acme_viewer@example.com", "role": "viewer"})
    assert response.status_code == 400
    assert b"already a member" in response.content
    invite(client)
    response = client.post("/members/invitations/", {"email": "NEWCOMER@example.com", "role": "viewer"})
    assert b"open already" in response.content


@pytest.mark.parametrize("persona", ["acme_viewer", "acme_operator"])
def test_only_admins_invite(as_acme, persona):
    client = as_acme(persona)
    with unchanged():
        response = client.post("/members/invitations/", {"email": "x@example.com", "role": "viewer"})
    assert response.status_code == 403
    assert not Invitation.objects.filter(email="x@example.com").exists()
