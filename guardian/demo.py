"""`guardian demo`: the main job on the embedded default.

Brings up local Kafka and Redis, has a tenant produce and consume over SASL,
and shows that tenant's per-client metrics as the broker exports them.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from typing import Callable

from guardian.dev.stack import DevStack, Endpoints

Say = Callable[[str], None]


def _per_client_lines(metrics_url: str, user: str) -> list[str]:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return [line for line in text.splitlines()
            if line.startswith("kafka_server_quota_") and f'user="{user}"' in line and not line.endswith("NaN")]


def run_basic_demo(stack: DevStack, say: Say = print, seconds: float = 5.0) -> Endpoints:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from guardian.dev.security import tenant_config

    ep = stack.up(progress=lambda m: say(f"  {m}"))
    tenant = sorted(ep.tenants)[0]
    topic = f"{tenant}.demo"
    admin = AdminClient({"bootstrap.servers": ep.kafka_bootstrap_servers})
    for fut in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        try:
            fut.result(timeout=30)
        except Exception as exc:  # noqa: BLE001 - an existing topic is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    conf = tenant_config(ep.kafka_sasl_bootstrap_servers, tenant, ep.tenants[tenant])
    producer = Producer({**conf, "client.id": "demo-writer", "linger.ms": 5})
    say(f"{tenant} produces to {topic} over SASL for {seconds:.0f}s ...")
    sent, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        producer.produce(topic, value=b"x" * 512)
        producer.poll(0)
        sent += 1
        if sent % 500 == 0:
            time.sleep(0.01)
    producer.flush(30)
    consumer = Consumer({**conf, "client.id": "demo-reader", "group.id": f"{tenant}.demo-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got, deadline = 0, time.monotonic() + 20
    while got < sent and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got += 1
    consumer.close()
    say(f"sent {sent} messages, consumed {got}")
    say(f"per-client metrics for User:{tenant} from {ep.kafka_metrics_url}:")
    for line in _per_client_lines(ep.kafka_metrics_url, tenant):
        say(f"  {line}")
    return ep
