"""Redis when configured; otherwise fakeredis, an in-process server behind the same client API."""

from __future__ import annotations

from fakeredis import FakeAsyncRedis
from redis.asyncio import Redis

from lipika.config import Settings


def create_redis(settings: Settings) -> Redis:
    if settings.redis_url:
        return Redis.from_url(settings.redis_url, decode_responses=True)
    return FakeAsyncRedis(decode_responses=True)
