from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "portal.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"

    def ready(self):
        from portal.tenancy import signals  # noqa: F401
