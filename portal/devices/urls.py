from django.urls import path

from portal.devices import deadletters, live, settings_views, views

urlpatterns = [
    path("devices/", views.device_list, name="devices-device-list"),
    path("devices/<int:pk>/", views.device_detail, name="devices-device-detail"),
    path("devices/<int:pk>/live/", live.device_live, name="devices-device-live"),
    path("devices/<int:pk>/edit/", views.device_edit, name="devices-device-edit"),
    path("devices/<int:pk>/sensors/<int:sensor_pk>/edit/", views.sensor_edit, name="devices-sensor-edit"),
    path("devices/<int:pk>/register/", views.device_action, {"action": "register"}, name="devices-device-register"),
    path(
        "devices/<int:pk>/unregister/", views.device_action, {"action": "unregister"}, name="devices-device-unregister"
    ),
    path(
        "devices/<int:pk>/rotate-token/",
        views.device_action,
        {"action": "rotate-token"},
        name="devices-device-rotate-token",
    ),
    path(
        "devices/<int:pk>/revoke-token/",
        views.device_action,
        {"action": "revoke-token"},
        name="devices-device-revoke-token",
    ),
    path(
        "devices/<int:pk>/reset-provisioning/",
        views.device_action,
        {"action": "reset-provisioning"},
        name="devices-device-reset-provisioning",
    ),
    path("devices/<int:pk>/device-id/", views.assign_device_id, name="devices-device-assign-id"),
    path(
        "devices/<int:pk>/mqtt/issue/", views.device_action, {"action": "mqtt-issue"}, name="devices-device-mqtt-issue"
    ),
    path(
        "devices/<int:pk>/mqtt/revoke/",
        views.device_action,
        {"action": "mqtt-revoke"},
        name="devices-device-mqtt-revoke",
    ),
    path("explorer/", views.explorer, name="devices-explorer-query"),
    path("explorer/live/", live.explorer_live, name="devices-explorer-live"),
    path("explorer/sensors/", views.explorer_sensors, name="devices-explorer-sensors"),
    path("explorer/export/", views.explorer_export, name="devices-explorer-export"),
    path("dead-letters/", deadletters.dead_letter_list, name="devices-deadletter-list"),
    path("dead-letters/replay/", deadletters.dead_letter_replay, name="devices-deadletter-replay"),
    path("settings/telemetry/", settings_views.telemetry_settings, name="devices-settings-edit"),
]
