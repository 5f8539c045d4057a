from django.urls import path

from portal.core import health, views

health_urlpatterns = [path("health/", health.health, name="core-health")]
tenant_urlpatterns = [path("", views.dashboard, name="core-dashboard")]
public_urlpatterns = [path("", views.public_home, name="core-public-home")]
