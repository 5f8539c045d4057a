from django.urls import path

from portal.locks import code_views, device_views, log_views, views

urlpatterns = [
    # the lock itself (device key): the access check, on the lean device path
    path("api/locks/<str:lock_id>/access/", device_views.access_check, name="locks-api-access"),
    path("locks/", views.lock_list, name="locks-lock-list"),
    path("locks/new/", views.lock_create, name="locks-lock-create"),
    path("locks/access-log/", log_views.access_log, name="locks-accesslog-list"),
    path("locks/security/", log_views.security, name="locks-security-list"),
    path("locks/<int:pk>/", views.lock_detail, name="locks-lock-detail"),
    path("locks/<int:pk>/live/", views.lock_live, name="locks-lock-live"),
    path("locks/<int:pk>/edit/", views.lock_edit, name="locks-lock-edit"),
    path("locks/<int:pk>/delete/", views.lock_delete, name="locks-lock-delete"),
    path("locks/<int:pk>/actions/time-sync/", views.lock_time_sync, name="locks-lock-timesync"),
    path("locks/<int:pk>/actions/settings/", views.lock_settings, name="locks-lock-settings"),
    path("locks/<int:pk>/actions/firmware/", views.lock_ota, name="locks-lock-ota"),
    path("locks/<int:pk>/actions/rotate-key/", views.lock_rotate_key, name="locks-lock-rotatekey"),
    path("locks/<int:pk>/report/", log_views.monthly_report, name="locks-lock-report"),
    path("locks/<int:pk>/report/email/", log_views.email_report, name="locks-lock-reportemail"),
    path("locks/<int:pk>/pins/new/", code_views.pin_create, name="locks-pin-create"),
    path("locks/<int:pk>/pins/<int:pin_pk>/revoke/", code_views.pin_revoke, name="locks-pin-revoke"),
    path("locks/<int:pk>/qr/new/", code_views.qr_create, name="locks-qr-create"),
    path("locks/<int:pk>/qr/<int:qr_pk>/", code_views.qr_detail, name="locks-qr-detail"),
    path("locks/<int:pk>/qr/<int:qr_pk>/svg/", code_views.qr_svg, name="locks-qr-svg"),
    path("locks/<int:pk>/qr/<int:qr_pk>/revoke/", code_views.qr_revoke, name="locks-qr-revoke"),
    path("locks/<int:pk>/guests/new/", code_views.guest_create, name="locks-guest-create"),
    path("locks/<int:pk>/guests/<int:guest_pk>/revoke/", code_views.guest_revoke, name="locks-guest-revoke"),
    path("locks/<int:pk>/codes/sync/", code_views.code_sync, name="locks-code-sync"),
    # last: lock/unlock by name after every fixed word of the same shape
    path("locks/<int:pk>/<str:kind>/", views.lock_command, name="locks-lock-command"),
]
