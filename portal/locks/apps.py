from django.apps import AppConfig


class LocksConfig(AppConfig):
    name = "portal.locks"
    label = "locks"
    verbose_name = "Smart locks"

    def ready(self):
        from portal.locks import receivers  # noqa: F401 (connects the signal handlers)
