"""Puts sample batches on the metrics topic, keyed by ``Workload.partition_key`` (the tenant; the Kafka edge of every source).

A tenant's batches of one publication are packed into as few records as ``max_batch`` samples a record
allow (``codec.pack_records``): the stream processor's cost is per record, and on a large cluster each
client on each broker is a batch of a few samples. ``pack=False`` (``GUARDIAN_INGEST__PACK_RECORDS``)
writes one batch a record (version 1, which workers from before packs read); workers read both."""

from __future__ import annotations

import logging
from typing import Any, Iterable

from guardian.errors import TemporaryError
from guardian.ingest.codec import encode_batch, group_samples, pack_records
from guardian.model.samples import SampleBatch
from guardian.model.samples import Sample

log = logging.getLogger(__name__)


def records_for(batches: Iterable[SampleBatch], max_batch: int = 1000,
                pack: bool = True) -> list[tuple[bytes, bytes, int]]:
    """The metrics records of ``batches``, ``(key, value, samples)`` each: a tenant's packed, or one a batch."""
    if pack:
        return pack_records(batches, max_batch)
    return [(b.workload.partition_key.encode(), encode_batch(b), len(b)) for b in batches]


class SamplePublisher:
    """A confluent-kafka producer that writes encoded batches; ``publish`` returns the number of samples."""

    def __init__(self, client_config: dict[str, Any], topic: str, max_batch: int = 1000,
                 client_id: str = "guardian-collector", pack: bool = True) -> None:
        from confluent_kafka import Producer

        conf = dict(client_config)
        conf.setdefault("client.id", client_id)
        conf.setdefault("linger.ms", 20)
        conf.setdefault("compression.type", "lz4")
        conf.setdefault("enable.idempotence", True)  # a retried send is not a double-counted sample
        self.topic = topic
        self.max_batch = max_batch
        self.pack = pack
        self._errors: list[str] = []
        self._producer = Producer(conf)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def publish(self, samples: Iterable[Sample]) -> int:
        return self.publish_batches(group_samples(samples, self.max_batch))

    def records(self, batches: Iterable[SampleBatch]) -> list[tuple[bytes, bytes, int]]:
        """What ``publish_batches`` writes: ``(key, value, samples)`` a record."""
        return records_for(batches, self.max_batch, self.pack)

    def publish_batches(self, batches: Iterable[SampleBatch]) -> int:
        n = 0
        for key, value, samples in self.records(batches):
            while True:
                try:
                    self._producer.produce(self.topic, value=value, key=key, on_delivery=self._on_delivery)
                    break
                except BufferError:
                    self._producer.poll(0.1)  # local queue full: let deliveries drain
            n += samples
        self._producer.poll(0)
        return n

    def flush(self, timeout: float = 30.0) -> None:
        left = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if left or errors:
            raise TemporaryError(f"{left} batches undelivered to {self.topic}; errors: {errors[:3]}")

    def close(self) -> None:
        self.flush()
