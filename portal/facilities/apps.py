from django.apps import AppConfig


class FacilitiesConfig(AppConfig):
    name = "portal.facilities"
    label = "facilities"
    verbose_name = "Facilities"
