from django.urls import path

from portal.alerts import live, views

urlpatterns = [
    path("alerts/", views.alert_list, name="alerts-alert-list"),
    path("alerts/count/live/", live.nav_count, name="alerts-nav-count"),
    path("alerts/acknowledge/", views.alert_acknowledge, name="alerts-alert-acknowledge"),
    path("alerts/<int:pk>/", views.alert_detail, name="alerts-alert-detail"),
    path("alerts/<int:pk>/resolve/", views.alert_resolve, name="alerts-alert-resolve"),
    path("alerts/rules/", views.rule_list, name="alerts-rule-list"),
    path("alerts/rules/new/", views.rule_create, name="alerts-rule-create"),
    path("alerts/rules/<int:pk>/", views.rule_detail, name="alerts-rule-detail"),
    path("alerts/rules/<int:pk>/edit/", views.rule_edit, name="alerts-rule-edit"),
    path("alerts/rules/<int:pk>/toggle/", views.rule_toggle, name="alerts-rule-toggle"),
    path("alerts/rules/<int:pk>/delete/", views.rule_delete, name="alerts-rule-delete"),
    path("alerts/silences/", views.silence_list, name="alerts-silence-list"),
    path("alerts/silences/new/", views.silence_create, name="alerts-silence-create"),
    path("alerts/silences/<int:pk>/expire/", views.silence_expire, name="alerts-silence-expire"),
    path("alerts/channels/", views.channel_list, name="alerts-channel-list"),
    path("alerts/channels/new/", views.channel_create, name="alerts-channel-create"),
    path("alerts/channels/<int:pk>/edit/", views.channel_edit, name="alerts-channel-edit"),
    path("alerts/channels/<int:pk>/delete/", views.channel_delete, name="alerts-channel-delete"),
    path("alerts/channels/<int:pk>/test/", views.channel_test, name="alerts-channel-test"),
    path("alerts/deliveries/", views.notification_list, name="alerts-notification-list"),
    path("alerts/deliveries/<int:pk>/", views.notification_detail, name="alerts-notification-detail"),
]
