from django.urls import path

from portal.audit import views

urlpatterns = [path("audit/", views.audit_log, name="audit-log-list")]
