from datetime import timedelta

from django.db import models
from django.utils import timezone


class ProcessHeartbeat(models.Model):
    """A long-running process (a bridge) says it is alive, and how it is doing, every few seconds.

    The health check reads these rows: a process whose last beat is older than STALE_AFTER is
    reported as not alive.
    """

    STALE_AFTER = timedelta(seconds=30)

    name = models.CharField(max_length=150, unique=True, help_text="kind:identity, e.g. bridge:fieldwatch-bridge-host1")
    kind = models.CharField(max_length=30)
    host = models.CharField(max_length=150, blank=True)
    pid = models.PositiveIntegerField(null=True)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)
    stats = models.JSONField(default=dict)

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self):
        return self.name

    @property
    def alive(self) -> bool:
        return timezone.now() - self.beat_at <= self.STALE_AFTER

    @classmethod
    def beat(cls, name: str, kind: str, started_at, stats: dict, host: str = "", pid: int | None = None) -> None:
        cls.objects.update_or_create(
            name=name,
            defaults={
                "kind": kind,
                "host": host,
                "pid": pid,
                "started_at": started_at,
                "beat_at": timezone.now(),
                "stats": stats,
            },
        )
