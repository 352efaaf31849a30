"""Fixtures for the rate-limit tests: a storage on the shared Redis under a key prefix of the
test's own (its keys, and only those, are deleted afterwards), and a private `redis-server`
that a test may watch with MONITOR, flush, kill and restart without disturbing anyone.

Without a reachable Redis (or without `redis-server`) the tests skip; in CI (`CI=true`) they
fail instead."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from limits.aio.storage import RedisStorage

from kassa.ratelimit.limiter import create_storage
from tests.edge.conftest import REDIS_SERVER, SHARED_REDIS, OwnRedis, _redis_answers, _unavailable


def unique_prefix() -> str:
    return f"kassa-test-{uuid.uuid4().hex[:12]}"


def redis_storage_at(url: str, prefix: str | None = None) -> RedisStorage:
    storage = create_storage(url, prefix=prefix or unique_prefix())
    assert isinstance(storage, RedisStorage)
    return storage


@pytest.fixture
async def shared_storage() -> AsyncIterator[RedisStorage]:
    host, port = SHARED_REDIS
    if not _redis_answers(host, port):
        _unavailable(f"Redis is not reachable at {host}:{port}")
    storage = redis_storage_at(f"redis://{host}:{port}/0")
    yield storage
    await storage.reset()  # the keys under this test's prefix only


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if REDIS_SERVER is None:
        _unavailable("redis-server is not installed")
    redis = OwnRedis(tmp_path)
    redis.start()
    yield redis
    redis.kill()
