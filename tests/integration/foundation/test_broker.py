"""The embedded broker is real: SASL tenants, the authorizer, quotas and per-client metrics."""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from guardian.clients.kafka_admin import ClientQuotaAdmin, QuotaEntity

pytestmark = pytest.mark.integration


def _produce(conf: dict, topic: str, n: int, size: int = 100) -> list:
    """Produce ``n`` messages and return the delivery errors (empty when all succeeded)."""
    errors: list = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer(conf)
    for i in range(n):
        producer.produce(topic, value=b"x" * size, key=str(i).encode(), on_delivery=on_delivery)
        producer.poll(0)
    producer.flush(30)
    return errors


def test_tenant_produces_and_consumes_its_own_topic(tenant_conf, make_topic) -> None:
    topic = make_topic("tenant-a")
    assert _produce(tenant_conf("tenant-a", **{"client.id": "a-writer"}), topic, 50) == []
    consumer = Consumer(tenant_conf("tenant-a", **{"group.id": f"tenant-a.g-{uuid.uuid4().hex[:6]}",
                                                   "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 50 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.key())
    consumer.close()
    assert sorted(int(k) for k in got) == list(range(50))


def test_tenant_is_refused_on_another_tenants_topic(tenant_conf, make_topic) -> None:
    topic_b = make_topic("tenant-b")
    errors = _produce(tenant_conf("tenant-a", **{"message.timeout.ms": 10000}), topic_b, 1)
    assert len(errors) == 1
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_unknown_password_is_refused(tenant_conf) -> None:
    seen: list[KafkaError] = []
    producer = Producer(tenant_conf("tenant-a", **{"sasl.password": "not-the-password", "error_cb": seen.append}))
    with pytest.raises(KafkaException):
        producer.list_topics(timeout=5)
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        producer.poll(0.2)  # error callbacks are served by poll
    assert any(e.code() == KafkaError._AUTHENTICATION for e in seen), seen


def test_jmx_exporter_shows_per_client_produce_byte_rate(tenant_conf, make_topic, endpoints) -> None:
    topic = make_topic("tenant-a")
    client_id = f"rate-probe-{uuid.uuid4().hex[:6]}"
    assert _produce(tenant_conf("tenant-a", **{"client.id": client_id}), topic, 2000, size=500) == []
    want = f'kafka_server_quota_byte_rate{{client_id="{client_id}",request="Produce",user="tenant-a"}}'
    deadline = time.monotonic() + 20
    value = None
    while time.monotonic() < deadline and value is None:
        text = urllib.request.urlopen(endpoints.kafka_metrics_url, timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith(want):
                value = float(line.rsplit(" ", 1)[1])
        time.sleep(0.5)
    assert value is not None, f"{want} not exported"
    assert value > 0


def _described(quotas: ClientQuotaAdmin, entity: QuotaEntity, want: dict, timeout_s: float = 10.0) -> dict:
    """The entity's quotas once they read ``want``, or as they still read at the deadline. A KRaft broker
    serves DescribeClientQuotas from its metadata image, which an alteration reaches a moment after the
    controller committed it (one CI run read the old quotas right after a restore)."""
    deadline = time.monotonic() + timeout_s
    while (got := quotas.describe(entity)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def test_client_quota_round_trip_restores_previous_state(bootstrap) -> None:
    entity = QuotaEntity.of(user="tenant-c", client_id=f"quota-probe-{uuid.uuid4().hex[:6]}")
    with ClientQuotaAdmin(bootstrap) as quotas:
        before = quotas.describe(entity)
        assert before == {}
        quotas.alter(entity, {"producer_byte_rate": 1024.0, "request_percentage": 50.0})
        altered = {"producer_byte_rate": 1024.0, "request_percentage": 50.0}
        assert _described(quotas, entity, altered) == altered
        quotas.restore(entity, before)
        assert _described(quotas, entity, {}) == {}
        # The sensor-enabling default set by `guardian-dev up` is untouched.
        default = quotas.describe(QuotaEntity.of(user=None, client_id=None))
        assert default.get("producer_byte_rate", 0) > 1e12
