"""The device HTTP API (tenant hosts), and the API-key page for admins."""

from django.urls import include, path

from portal.api import analytics, bulk, clients, device_views, keys, openapi, toolkit, webhook
from portal.facilities import webhook as facilities_webhook

urlpatterns = [
    # devices (seed contracts: paths and fields are what devices in the field speak)
    path("api/handshake/", device_views.handshake, name="api-handshake"),
    path("api/device/events/", device_views.events, name="api-device-events"),
    path("api/iot/", device_views.legacy_iot, name="api-legacy-iot"),
    path("api/devices/<str:device_id>/heartbeat/", device_views.heartbeat, name="api-device-heartbeat"),
    # integrations: bulk upload (claim check for large bodies), analytics, tokens
    path("api/v1/auth/login", clients.login, name="api-auth-login"),
    path("api/v1/auth/refresh", clients.refresh, name="api-auth-refresh"),
    path("api/v1/telemetry/bulk", bulk.upload, name="api-bulk"),
    path("api/v1/telemetria/bulk", bulk.upload, name="api-bulk-alias"),
    path("api/telemetry/bulk", bulk.upload, name="api-bulk-short"),
    path("api/v1/telemetry/jobs/<int:pk>", bulk.job_status, name="api-bulk-job"),
    path("api/v1/analytics/equipment/<str:uuid>/history", analytics.equipment_history, name="api-equipment-history"),
    path("api/v1/analytics/sensor/<str:uuid>/history", analytics.sensor_history, name="api-sensor-history"),
    path("api/v1/analytics/equipment/<str:uuid>/stats", analytics.equipment_stats, name="api-equipment-stats"),
    path("api/v1/analytics/home-assistant/<str:uuid>", analytics.home_assistant, name="api-home-assistant"),
    path("api/home-assistant/<str:uuid>", analytics.home_assistant, name="api-home-assistant-short"),
    # the broker's rule webhook, health, and this API's OpenAPI document
    # seed 000 writes it with the slash, seed 001's rule without (portal/facilities/webhook.py)
    path("ingest/", facilities_webhook.ingest, name="api-ingest-webhook"),
    path("ingest", facilities_webhook.ingest),
    path("api/v1/health", webhook.health, name="api-health"),
    path("api/v1/health/detailed", webhook.health_detailed, name="api-health-detailed"),
    path("api/schema/", openapi.schema, name="api-schema"),
    # people: the tenant's API keys
    path("settings/api-keys/", keys.key_list, name="api-key-list"),
    path("settings/api-keys/<int:pk>/revoke/", keys.key_revoke, name="api-key-revoke"),
    # the JSON APIs of the fleet apps (portal/<app>/api.py) and sessions, built with the toolkit
    path("", include(toolkit.urls(), namespace="fieldwatch-api")),
]
