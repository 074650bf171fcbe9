"""Puts sample batches on the metrics topic, keyed by ``Workload.partition_key`` (the tenant; the Kafka edge of every source)."""

from __future__ import annotations

import logging
from typing import Any, Iterable

from guardian.errors import TemporaryError
from guardian.ingest.codec import encode_batch, group_samples
from guardian.model.samples import SampleBatch
from guardian.model.samples import Sample

log = logging.getLogger(__name__)


class SamplePublisher:
    """A confluent-kafka producer that writes encoded batches; ``publish`` returns the number of samples."""

    def __init__(self, client_config: dict[str, Any], topic: str, max_batch: int = 1000,
                 client_id: str = "guardian-collector") -> None:
        from confluent_kafka import Producer

        conf = dict(client_config)
        conf.setdefault("client.id", client_id)
        conf.setdefault("linger.ms", 20)
        conf.setdefault("compression.type", "lz4")
        conf.setdefault("enable.idempotence", True)  # a retried send is not a double-counted sample
        self.topic = topic
        self.max_batch = max_batch
        self._errors: list[str] = []
        self._producer = Producer(conf)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def publish(self, samples: Iterable[Sample]) -> int:
        return self.publish_batches(group_samples(samples, self.max_batch))

    def publish_batches(self, batches: Iterable[SampleBatch]) -> int:
        n = 0
        for batch in batches:
            value = encode_batch(batch)
            while True:
                try:
                    self._producer.produce(self.topic, value=value, key=batch.workload.partition_key.encode(),
                                           on_delivery=self._on_delivery)
                    break
                except BufferError:
                    self._producer.poll(0.1)  # local queue full: let deliveries drain
            n += len(batch)
        self._producer.poll(0)
        return n

    def flush(self, timeout: float = 30.0) -> None:
        left = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if left or errors:
            raise TemporaryError(f"{left} batches undelivered to {self.topic}; errors: {errors[:3]}")

    def close(self) -> None:
        self.flush()
