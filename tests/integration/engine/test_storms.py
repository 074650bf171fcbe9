"""Storms under the shipped default policy, on the real broker: the quota made for each storm.

* a rebalance storm is a group-level detection (no client-id): the engine describes the group
  and throttles each member's (tenant-a, client-id) request time;
* a partition storm is a principal-level detection: the engine caps the principal's partition
  mutations (``controller_mutation_rate``, KIP-599) and further topic creations are refused.

Each test releases its quarantine and checks the broker is back to no quota.
"""

from __future__ import annotations

import time
import uuid

import pytest

from guardian.model.detection import Detection, Severity, Signature
from guardian.model.quarantine import QState
from guardian.clients.kafka_admin import GroupMembers, QuotaEntity
from guardian.policy.config import default_policy_path, load_policy

pytestmark = pytest.mark.integration


def storm(signature: Signature, metric: str, observed: float, **workload: str) -> Detection:
    return Detection(id=f"det-{uuid.uuid4().hex[:8]}", ts=time.time(), signature=signature,
                     severity=Severity.CRITICAL, confidence=0.95, workload=workload, metric=metric,
                     baseline=0.0, observed=observed, ratio=observed / 0.01, duration_s=20.0)


def test_a_rebalance_storm_throttles_the_request_time_of_each_member_client(
        make_engine, quota, quota_admin, tenant_conf, make_topic, unique, bootstrap):
    from confluent_kafka import Consumer

    topic = make_topic("tenant-a")
    group, cid = f"tenant-a.storm-{unique}", f"billing-{unique}"
    entity = QuotaEntity.of(user="tenant-a", client_id=cid)
    consumer = Consumer(tenant_conf("tenant-a", **{"group.id": group, "client.id": cid,
                                                   "session.timeout.ms": 10000}))
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert consumer.assignment(), "the consumer joined its group"
        engine = make_engine({"quota": quota()}, load_policy(default_policy_path()),
                             group_members=GroupMembers({"bootstrap.servers": bootstrap}))
        d = engine.handle(storm(Signature.REBALANCE_STORM, "rebalance_rate", 0.5,
                                principal="User:tenant-a", group=group))
        assert d.outcome.value == "quarantined", d.reason
        assert d.policy == "group-rebalance-storm"
        q = engine.get(d.quarantine_id)
        assert q.state is QState.ACTIVE and q.workload == {"principal": "User:tenant-a", "group": group}
        assert quota_admin.describe(entity) == {"request_percentage": 5.0}
        engine.release(q.id, by="sre", reason="test over")
        engine.tick()
        assert quota_admin.describe(entity) == {}
    finally:
        consumer.close()
        quota_admin.restore(entity, {})


def test_a_group_that_cannot_be_described_is_not_throttled_at_all(make_engine, quota, unique, bootstrap):
    engine = make_engine({"quota": quota()}, load_policy(default_policy_path()),
                         group_members=GroupMembers({"bootstrap.servers": bootstrap}))
    d = engine.handle(storm(Signature.REBALANCE_STORM, "rebalance_rate", 0.5,
                            principal="User:tenant-a", group=f"tenant-a.nobody-{unique}"))
    assert d.outcome.value == "unplannable" and "members' client-ids" in d.reason and not d.intents


def test_a_partition_storm_caps_the_principals_topic_creation(make_engine, quota, quota_admin, tenant_conf, unique):
    from confluent_kafka.admin import AdminClient, NewTopic

    entity = QuotaEntity.of(user="tenant-c")
    throttled: list[float] = []
    admin = AdminClient(tenant_conf("tenant-c", throttle_cb=lambda ev: throttled.append(ev.throttle_time)))
    created: list[str] = []

    def create(n: int, partitions: int = 10) -> None:
        for _ in range(n):
            name = f"tenant-c.storm-{unique}-{len(created)}"
            admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)[name].result(timeout=60)
            created.append(name)
            admin.poll(0)   # serve the throttle callback

    try:
        create(4)
        assert throttled == [] or max(throttled) == 0, "no quota: no throttle"
        engine = make_engine({"quota": quota()}, load_policy(default_policy_path()))
        d = engine.handle(storm(Signature.PARTITION_STORM, "partition_creation_rate", 40.0,
                                principal="User:tenant-c"))
        assert d.outcome.value == "quarantined", d.reason
        assert d.policy == "tenant-partition-storm"
        assert quota_admin.describe(entity) == {"controller_mutation_rate": 0.5}
        # 0.5 partitions/s over the broker's 11 x 1 s window allows a burst of ~5.5: ask for 40.
        # librdkafka speaks CreateTopics < v6, so the broker delays it (throttle_time) instead of
        # refusing with THROTTLING_QUOTA_EXCEEDED; either way the storm is slowed to the quota.
        create(4)
        assert throttled and max(throttled) > 0, "the broker throttled the creations"
        engine.release(d.quarantine_id, by="sre", reason="test over")
        engine.tick()
        assert quota_admin.describe(entity) == {}
    finally:
        quota_admin.restore(entity, {})
        if created:
            AdminClient(tenant_conf("tenant-c")).delete_topics(created)


def test_the_drill_refuses_to_start_over_a_quota_a_dead_run_left_behind(quota_admin, bootstrap):
    """A principal-wide storm quota left on the broker would throttle the next drill from its first second."""
    from guardian_dev.drill.runner import leftover_quotas

    entity = QuotaEntity.of(user="tenant-c")
    try:
        assert leftover_quotas(bootstrap, ["tenant-b", "tenant-c"]) == {}
        quota_admin.alter(entity, {"controller_mutation_rate": 2.0})
        assert leftover_quotas(bootstrap, ["tenant-b", "tenant-c"]) == {"tenant-c": {"controller_mutation_rate": 2.0}}
    finally:
        quota_admin.restore(entity, {})
