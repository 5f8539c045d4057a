from django.apps import AppConfig


class OutletsConfig(AppConfig):
    name = "portal.outlets"
    label = "outlets"
    verbose_name = "Service outlets"
