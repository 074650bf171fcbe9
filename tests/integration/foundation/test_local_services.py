"""The embedded Redis persists: what is written survives a restart."""

from __future__ import annotations

import uuid

import pytest
import redis

from guardian_dev.redis import LocalRedis

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


def test_broker_formats_storage_when_the_cluster_id_starts_with_a_dash(tmp_path) -> None:
    # Cluster ids are url-safe base64 and may start with '-'; the storage tool must not read it as a flag.
    import json
    import os
    from pathlib import Path

    from guardian_dev.kafka import KafkaState, LocalKafka

    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "guardian"
    kafka = LocalKafka(tmp_path, home, tenants=["tenant-a"])
    (tmp_path / "kafka.json").write_text(json.dumps(KafkaState(cluster_id="-dashFirstClusterIdAbc").__dict__))
    try:
        state = kafka.start()
        assert state.cluster_id == "-dashFirstClusterIdAbc"
        assert "cluster.id=-dashFirstClusterIdAbc" in (tmp_path / "kafka" / "data" / "meta.properties").read_text()
    finally:
        kafka.destroy()
