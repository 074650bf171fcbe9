"""The 3-broker cluster's endpoints, tenants and a topic whose partitions are led by different brokers."""

from __future__ import annotations

import time
import uuid
from typing import Callable, Iterator

import pytest

from guardian_dev.stack import DevStack, Endpoints


@pytest.fixture(scope="module")
def c3(cluster3: DevStack) -> Endpoints:
    ep = cluster3.endpoints()
    assert len(ep.metrics_urls) == 3, f"the cluster under test has {len(ep.metrics_urls)} exporters, not 3"
    return ep


@pytest.fixture
def c3_tenant(c3: Endpoints) -> Callable[..., dict]:
    """``c3_tenant("tenant-a", **extra)``: librdkafka config of a tenant on every broker's SASL listener."""
    from guardian_dev.security import tenant_config

    def make(tenant: str, **extra: object) -> dict:
        return tenant_config(c3.kafka_sasl_bootstrap_servers, tenant, c3.tenants[tenant], **extra)

    return make


@pytest.fixture
def spread_topic(c3: Endpoints) -> Iterator[tuple[str, dict[int, int]]]:
    """``(topic, {partition: leader node id})``: ``tenant-a.spread-*`` with partition i led by broker i+1
    (one replica each, so leadership cannot move during a test)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": c3.kafka_bootstrap_servers})
    topic = f"tenant-a.spread-{uuid.uuid4().hex[:8]}"
    for fut in admin.create_topics([NewTopic(topic, num_partitions=3, replica_assignment=[[1], [2], [3]])],
                                   operation_timeout=30).values():
        fut.result(timeout=30)
    leaders: dict[int, int] = {}
    for _ in range(100):   # every broker learns the new leaders through the metadata log
        meta = admin.list_topics(topic, timeout=10).topics[topic]
        leaders = {p: m.leader for p, m in meta.partitions.items()}
        if sorted(leaders.values()) == [1, 2, 3]:
            break
        time.sleep(0.1)
    assert sorted(leaders.values()) == [1, 2, 3], f"partition leaders {leaders}"
    yield topic, leaders
    for fut in admin.delete_topics([topic], operation_timeout=30).values():
        try:
            fut.result(timeout=30)
        except Exception:  # noqa: BLE001 - best-effort clean-up
            pass
