"""The broker plugin's collector: its two topics in, samples on the metrics topic out.

Reads ``guardian.broker-metrics`` (snapshots) and ``guardian.telemetry``
(KIP-714 pushes), decodes them with ``broker_plugin``, publishes the samples
and commits after publishing (at least once). A record that does not decode
goes to the dead-letter topic with the reason and its original bytes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from guardian.errors import DecodeError, TemporaryError
from guardian.ingest.processor import DeadLetter
from guardian.ingest.broker_plugin import BrokerSnapshotDecoder, TelemetryDecoder
from guardian.ingest.publisher import SamplePublisher
from guardian.settings import GuardianSettings

log = logging.getLogger(__name__)


def _headers(msg: Any) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}


class PluginCollector:
    name = "plugin"
    interval_s = 0.0  # consume continuously

    def __init__(self, settings: GuardianSettings, publisher: SamplePublisher, group_suffix: str = "plugin") -> None:
        from confluent_kafka import Consumer, Producer

        topics = settings.topics
        self.metrics_topic, self.telemetry_topic, self.dlq = topics.broker_metrics, topics.telemetry, topics.metrics_dlq
        conf = settings.kafka.client_config()
        self.consumer = Consumer({**conf, "group.id": f"guardian-collect-{group_suffix}", "enable.auto.commit": False,
                                  "auto.offset.reset": "latest", "client.id": "guardian-collect-plugin"})
        self.consumer.subscribe([self.metrics_topic, self.telemetry_topic])
        self.dead_letters = Producer({**conf, "client.id": "guardian-collect-plugin-dlq"})
        self.publisher = publisher
        self.snapshots = BrokerSnapshotDecoder(settings.kafka.cluster)
        self.telemetry = TelemetryDecoder(settings.kafka.cluster)
        self.rejected = 0

    def step(self) -> int:
        from confluent_kafka import KafkaException

        msgs, deadline = [], time.monotonic() + 1.0
        while time.monotonic() < deadline:
            batch = self.consumer.consume(500, timeout=max(0.0, deadline - time.monotonic()))
            if not batch:
                break
            msgs.extend(batch)
        samples = []
        for msg in msgs:
            if msg.error():
                raise TemporaryError(f"plugin collector consumer: {msg.error()}")
            try:
                if msg.topic() == self.telemetry_topic:
                    samples.extend(self.telemetry.decode(msg.value() or b"", _headers(msg)))
                else:
                    samples.extend(self.snapshots.decode(msg.value() or b""))
            except DecodeError as exc:
                self._dead_letter(msg, exc)
        n = self.publisher.publish(samples)
        self.publisher.flush()
        self.dead_letters.flush(10)
        if msgs:
            try:
                self.consumer.commit(asynchronous=False)
            except KafkaException as exc:
                raise TemporaryError(f"plugin collector commit failed: {exc}") from exc
        return n

    def _dead_letter(self, msg: Any, exc: DecodeError) -> None:
        self.rejected += 1
        letter = DeadLetter(reason=str(exc).split(":", 1)[0], detail=str(exc), value=msg.value() or b"",
                            key=msg.key(), topic=msg.topic(), partition=msg.partition(), offset=msg.offset())
        self.dead_letters.produce(self.dlq, value=letter.value, key=letter.key, headers=letter.headers())
        log.warning("plugin record %s-%d@%d dead-lettered: %s", msg.topic(), msg.partition(), msg.offset(), exc)

    def close(self) -> None:
        self.consumer.close()
        self.dead_letters.flush(10)
        self.publisher.close()
