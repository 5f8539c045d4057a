from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "portal.alerts"
    label = "alerts"
    verbose_name = "Alerts and notifications"

    def ready(self):
        from portal.alerts import receivers  # noqa: F401 (connects the telemetry signals)
