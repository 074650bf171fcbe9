"""`guardian-dev up --brokers 2 --controllers 1`: brokers that are only brokers beside a dedicated KRaft
controller (Kafka's production layout). The controller enforces a principal's controller mutation quota
(the partition-storm throttle) on the CreateTopics requests the brokers forward to it."""

from __future__ import annotations

import time
import uuid
from typing import Iterator

import pytest

from guardian_dev.stack import DevStack, Endpoints
from guardian.clients.kafka_admin import ClientQuotaAdmin, QuotaEntity
from guardian.settings import DevSettings


@pytest.fixture(scope="module")
def dedicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevStack, Endpoints]]:
    # module-scoped: down before the next module, so at most one extra cluster runs at a time
    stack = DevStack(DevSettings(tenants=["tenant-a", "tenant-b"], brokers=2, controllers=1),
                     run_dir=tmp_path_factory.mktemp("dedicated"), use_environment=False, use_docker=False)
    try:
        yield stack, stack.up(progress=lambda m: print(f"[dedicated] {m}"))
    finally:
        stack.down(progress=lambda m: print(f"[dedicated] {m}"), purge=True)


def _admin(ep: Endpoints, tenant: str):
    from confluent_kafka.admin import AdminClient

    from guardian_dev.security import tenant_config

    return AdminClient(tenant_config(ep.kafka_sasl_bootstrap_servers, tenant, ep.tenants[tenant]))


def _create(admin, tenant: str, partitions: int = 10) -> None:
    from confluent_kafka.admin import NewTopic

    topic = f"{tenant}.dc-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=60,
                        request_timeout=60)[topic].result(timeout=60)


def _created_in(ep: Endpoints, tenant: str, seconds: float, out: dict[str, int]) -> None:
    """Create 30-partition topics one after another on one connection, as a script in a loop does."""
    admin, n, end = _admin(ep, tenant), 0, time.monotonic() + seconds
    while time.monotonic() < end:
        _create(admin, tenant, partitions=30)
        n += 1
    out[tenant] = n


def test_the_brokers_register_with_the_dedicated_controller(dedicated) -> None:
    from confluent_kafka.admin import AdminClient

    stack, ep = dedicated
    kafka = stack.status()["kafka"]
    assert [b["node_id"] for b in kafka["brokers"]] == [1, 2] and all(b["running"] for b in kafka["brokers"])
    assert [(c["node_id"], c["running"]) for c in kafka["controllers"]] == [(101, True)]
    brokers = AdminClient({"bootstrap.servers": ep.kafka_bootstrap_servers}).list_topics(timeout=10).brokers
    assert sorted(brokers) == [1, 2]                      # the controller serves no clients
    _create(_admin(ep, "tenant-b"), "tenant-b")           # a tenant creates a topic through a broker


def test_the_controller_throttles_a_principals_topic_creation_at_its_mutation_quota(dedicated) -> None:
    """tenant-a at 2 partition mutations/s: each 30-partition topic it creates is answered with a throttle
    time its next request waits out (4 topics in 8 s when measured); tenant-b, unthrottled, goes on (143)."""
    import threading

    _, ep = dedicated
    with ClientQuotaAdmin(ep.kafka_bootstrap_servers) as quotas:
        quotas.alter(QuotaEntity.of(user="tenant-a"), {"controller_mutation_rate": 2.0})
    try:
        time.sleep(2.0)   # the quota reaches the controller (and the brokers) through the metadata log
        counts: dict[str, int] = {}
        runs = [threading.Thread(target=_created_in, args=(ep, t, 8.0, counts)) for t in ("tenant-a", "tenant-b")]
        for r in runs:
            r.start()
        for r in runs:
            r.join(timeout=120)
        assert 1 <= counts["tenant-a"] <= 6 and counts["tenant-b"] >= 4 * counts["tenant-a"], counts
    finally:
        with ClientQuotaAdmin(ep.kafka_bootstrap_servers) as quotas:
            quotas.alter(QuotaEntity.of(user="tenant-a"), remove=["controller_mutation_rate"])
