"""Rate limits on Redis, the production cache: counted in one round trip through one client."""

import pytest
import redis
from django.core.cache import cache
from helpers import REDIS_URL, needs_redis

from portal.api import ratelimit

pytestmark = needs_redis()


@pytest.fixture
def redis_cache(settings):
    settings.CACHES = {
        "default": settings.CACHES["default"]
        | {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    redis.Redis.from_url(REDIS_URL).flushdb()
    yield redis.Redis.from_url(REDIS_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()


def test_requests_are_counted_in_redis_up_to_the_limit_with_the_window_as_expiry(redis_cache, monkeypatch):
    monkeypatch.setattr(ratelimit.time, "time", lambda: 1_000_000.0)  # window 16,666 of 60 s, 40 s into it
    assert [ratelimit.retry_after("device", "gw-1", "3/60") for _ in range(4)] == [None, None, None, 20]
    assert ratelimit.retry_after("device", "gw-2", "3/60") is None  # another identity has its own count
    key = "ratelimit:device:gw-1:16666"
    assert cache.get(key) == 4  # stored as Django's RedisCache stores an integer: the cache reads it
    assert 0 < redis_cache.ttl(cache.make_and_validate_key(key)) <= 61
    assert ratelimit.redis_client() is ratelimit.redis_client()  # one client for the process


def test_other_caches_count_through_the_cache_api(settings):
    assert ratelimit.redis_client() is None  # the tests' memory cache
    cache.clear()
    assert [ratelimit.retry_after("device", "gw-1", "2/60") is None for _ in range(3)] == [True, True, False]
