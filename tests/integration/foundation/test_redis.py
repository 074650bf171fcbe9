"""The embedded Redis persists: what is written survives a restart."""

from __future__ import annotations

import uuid

import pytest
import redis

from guardian.dev.redis import LocalRedis

pytestmark = pytest.mark.integration


def test_data_survives_a_redis_restart(tmp_path) -> None:
    local = LocalRedis(tmp_path)
    state = local.start()
    key, value = f"survive-{uuid.uuid4().hex}", b"kept"
    try:
        client = redis.Redis.from_url(state.url)
        client.set(key, value)
        client.close()
        first_pid = state.pid
        assert local.stop() is True
        state = local.start()
        assert state.pid != first_pid
        assert redis.Redis.from_url(state.url).get(key) == value
    finally:
        local.destroy()
