from django.urls import path

from portal.tenancy import views

urlpatterns = [
    path("members/", views.members, name="tenancy-member-list"),
    path("settings/organisation/", views.organisation_settings, name="tenancy-organisation-edit"),
    path("members/<int:pk>/role/", views.member_role, name="tenancy-member-role"),
    path("members/<int:pk>/remove/", views.member_remove, name="tenancy-member-remove"),
    path("members/invitations/", views.invitation_create, name="tenancy-invitation-create"),
    path("members/invitations/<int:pk>/resend/", views.invitation_resend, name="tenancy-invitation-resend"),
    path("members/invitations/<int:pk>/revoke/", views.invitation_revoke, name="tenancy-invitation-revoke"),
    path("invitations/<str:token>/", views.invitation_accept, name="tenancy-invitation-accept"),
    path("accounts/handoff/", views.handoff, name="tenancy-handoff"),
]

# Both the public site and tenant hosts can hand a user over to another of their tenants.
switch_urlpatterns = [path("switch/<slug:slug>/", views.switch, name="tenancy-switch")]
