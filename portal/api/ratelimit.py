"""Cache-backed rate limits for device and integration endpoints (fixed windows).

The count lives in the cache: shared by all processes with REDIS_URL, per process otherwise.
"""

import time

from django.conf import settings
from django.core.cache import cache


def parse_rate(rate: str) -> tuple[int, int]:
    """"120/60" -> (120 requests, per 60 seconds)."""
    count, _, seconds = rate.partition("/")
    return int(count), int(seconds or 60)


def retry_after(scope: str, identity: str, rate: str) -> int | None:
    """Count one request of `identity`; seconds to wait when over the limit, else None."""
    limit, window = parse_rate(rate)
    now = time.time()
    key = f"ratelimit:{scope}:{identity}:{int(now // window)}"
    if cache.add(key, 1, window + 1):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, window + 1)
            count = 1
    if count > limit:
        return max(1, int(window - now % window))
    return None


def device_rate() -> str:
    return settings.FIELDWATCH_DEVICE_RATE


def key_rate() -> str:
    return settings.FIELDWATCH_KEY_RATE
