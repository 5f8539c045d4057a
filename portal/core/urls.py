from django.urls import path

from portal.core import health, views

health_urlpatterns = [
    path("health/", health.health, name="core-health"),
    path("health/detailed/", health.health_detailed, name="core-health-detailed"),
]
tenant_urlpatterns = [
    path("", views.dashboard, name="core-dashboard"),
    path("dashboard/live/", views.dashboard_live, name="core-dashboard-live"),
]
public_urlpatterns = [path("", views.public_home, name="core-public-home")]
