"""Session fixtures: the real Kafka broker and Redis, through the same provider code as `guardian-dev up`.

Provider order: KAFKA_BOOTSTRAP_SERVERS + REDIS_URL from the environment, then
testcontainers when a Docker engine answers, then local processes. Unit tests
never touch these fixtures, so `pytest -m "not integration"` needs no services.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from guardian_dev.stack import DevStack, Endpoints
from guardian.settings import DevSettings

TENANTS = ["tenant-a", "tenant-b", "tenant-c"]


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    run_dir = tmp_path_factory.mktemp("stack")
    settings = DevSettings(tenants=TENANTS)
    stack = DevStack(settings, run_dir=run_dir)
    stack.up(progress=lambda msg: print(f"[dev-stack] {msg}"))
    yield stack
    stack.down(progress=lambda msg: print(f"[dev-stack] {msg}"), purge=True)


@pytest.fixture(scope="session")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """A local 3-broker KRaft cluster (and its own Redis), as `guardian-dev up --brokers 3` starts it.

    Started on first use only (tests that need several brokers ask for it), always local: a cluster
    named in the environment is not known to have three brokers.
    """
    run_dir = tmp_path_factory.mktemp("cluster3")
    stack = DevStack(DevSettings(tenants=TENANTS, brokers=3), run_dir=run_dir, use_environment=False,
                     use_docker=False)
    try:
        stack.up(progress=lambda msg: print(f"[cluster3] {msg}"))
        yield stack
    finally:
        stack.down(progress=lambda msg: print(f"[cluster3] {msg}"), purge=True)


@pytest.fixture(scope="session")
def endpoints(dev_stack: DevStack) -> Endpoints:
    return dev_stack.endpoints()


@pytest.fixture(scope="session")
def bootstrap(endpoints: Endpoints) -> str:
    """The admin (PLAINTEXT) listener."""
    return endpoints.kafka_bootstrap_servers


@pytest.fixture(scope="session")
def redis_url(endpoints: Endpoints) -> str:
    return endpoints.redis_url


@pytest.fixture(scope="session")
def tenant_conf(endpoints: Endpoints) -> Callable[..., dict]:
    """``tenant_conf("tenant-a", **extra)``: librdkafka config of a tenant on the SASL listener."""
    from guardian_dev.security import tenant_config

    def make(tenant: str, **extra: object) -> dict:
        if tenant not in endpoints.tenants:
            pytest.skip(f"the cluster under test has no credentials for {tenant} (KAFKA_TENANTS_JSON)")
        return tenant_config(endpoints.kafka_sasl_bootstrap_servers, tenant, endpoints.tenants[tenant], **extra)

    return make


@pytest.fixture
def make_topic(bootstrap: str) -> Iterator[Callable[..., str]]:
    """``make_topic("tenant-a", partitions=1)`` creates ``tenant-a.<unique>``; deleted after the test."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    made: list[str] = []

    def make(prefix: str, partitions: int = 1, name: str | None = None) -> str:
        topic = f"{prefix}.{name or 't'}-{uuid.uuid4().hex[:8]}"
        for fut in admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=30).values():
            fut.result(timeout=30)
        made.append(topic)
        return topic

    yield make
    if made:
        for fut in admin.delete_topics(made, operation_timeout=30).values():
            try:
                fut.result(timeout=30)
            except Exception:  # noqa: BLE001 - best-effort clean-up
                pass


@pytest.fixture
def redis_client(redis_url: str):
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Anything under tests/integration is an integration test even if a marker was forgotten.
    for item in items:
        if "tests/integration" in Path(str(item.fspath)).as_posix():
            item.add_marker(pytest.mark.integration)


os.environ.setdefault("GUARDIAN_TESTING", "1")
