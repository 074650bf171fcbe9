"""`guardian-dev up --brokers 3 --broker-plugin`: the plugin loads on every broker and each publishes."""

from __future__ import annotations

import time
import uuid
from typing import Iterator

import orjson
import pytest

from guardian_dev.stack import DevStack, Endpoints
from guardian.settings import DevSettings


@pytest.fixture(scope="module")
def plugin_cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    # module-scoped: down before the next module, so at most one extra cluster runs at a time
    stack = DevStack(DevSettings(tenants=["tenant-a"], brokers=3), run_dir=tmp_path_factory.mktemp("plugin-c3"),
                     use_environment=False, use_docker=False, broker_plugin=True)
    try:
        yield stack.up(progress=lambda m: print(f"[plugin-c3] {m}"))
    finally:
        stack.down(progress=lambda m: print(f"[plugin-c3] {m}"), purge=True)


def test_every_broker_publishes_its_snapshots(plugin_cluster3: Endpoints) -> None:
    from confluent_kafka import Consumer

    from guardian_dev.plugin import PLUGIN_TOPICS

    consumer = Consumer({"bootstrap.servers": plugin_cluster3.kafka_bootstrap_servers,
                         "group.id": f"t-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"})
    consumer.subscribe([PLUGIN_TOPICS[0]])
    seen: set[str] = set()
    deadline = time.monotonic() + 90   # bounds the loop only; the assertion is on who published
    try:
        while seen != {"1", "2", "3"} and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            seen.add(str(orjson.loads(msg.value())["broker"]))
    finally:
        consumer.close()
    assert seen == {"1", "2", "3"}, f"snapshots only from broker(s) {sorted(seen)}"
