"""Cache-backed rate limits for device and integration endpoints (fixed windows).

The count lives in the cache: shared by all processes with REDIS_URL, per process otherwise.
"""

import time

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache


def parse_rate(rate: str) -> tuple[int, int]:
    """ "120/60" -> (120 requests, per 60 seconds)."""
    count, _, seconds = rate.partition("/")
    return int(count), int(seconds or 60)


def retry_after(scope: str, identity: str, rate: str) -> int | None:
    """Count one request of `identity`; seconds to wait when over the limit, else None."""
    limit, window = parse_rate(rate)
    now = time.time()
    key = f"ratelimit:{scope}:{identity}:{int(now // window)}"
    if counted(key, window + 1) > limit:
        return max(1, int(window - now % window))
    return None


def counted(key: str, timeout: int) -> int:
    """Add one to the count under `key` (kept `timeout` seconds from its first count); the new count.

    On Redis one INCR through one client for the process, and an EXPIRE after the first count:
    Django's RedisCache makes a client for every call, and its add() then incr() were over half
    of a device event's CPU (a MULTI of SET NX EX and INCR still a third). A process killed
    between the two leaves one key of a past window without expiry: a few bytes, never read
    again. The count is an integer as Django's RedisCache stores one, so cache.get(key) reads
    it. Other caches: add(), else incr()."""
    client = redis_client()
    if client is not None:
        full = cache.make_and_validate_key(key)
        count = client.incr(full)
        if count == 1:
            client.expire(full, timeout)
        return count
    if cache.add(key, 1, timeout):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout)
        return 1


_clients: dict[str, object] = {}


def redis_client():
    """The process's Redis client for the default cache's server, or None on another cache."""
    if not isinstance(caches["default"], RedisCache):
        return None
    location = settings.CACHES["default"]["LOCATION"]
    client = _clients.get(location)
    if client is None:
        import redis

        client = _clients[location] = redis.Redis.from_url(location)
    return client


def device_rate() -> str:
    return settings.FIELDWATCH_DEVICE_RATE


def key_rate() -> str:
    return settings.FIELDWATCH_KEY_RATE
