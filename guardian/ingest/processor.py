"""The stream processor's logic, without the stream: one record in, what to emit out.

``MetricsProcessor.handle`` validates and decodes a ``guardian.metrics``
record (one batch, or a tenant's pack of them), hands the batches to the
detector stage and returns an ``Outcome``: the detections to publish, and a
``DeadLetter`` (reason, detail, bytes, source topic/partition/offset) for
``guardian.metrics.dlq`` for the record, or for each bad batch of a pack (its
own bytes, so the rest of the pack is used). It never raises for a bad
record or a failing stage: failures are data, so nothing crashes and nothing
is dropped silently. ``worker.py`` runs it over Kafka.

The detector stage is anything with ``process(batch) -> list[Detection]``
(``SampleStage``); the detectors package provides the real one, and
``LimitStage`` is a static-limit stage usable on its own.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from guardian.model.detection import Detection, Severity, Signature
from guardian.errors import DecodeError
from guardian.ingest.codec import BatchDecodeError, decode_record, encode_batch
from guardian.model.samples import SampleBatch
from guardian.model.samples import Metric

DLQ_REASON = "guardian-dlq-reason"
DLQ_DETAIL = "guardian-dlq-detail"
DLQ_TOPIC = "guardian-source-topic"
DLQ_PARTITION = "guardian-source-partition"
DLQ_OFFSET = "guardian-source-offset"
DLQ_ORIGINAL_SIZE = "guardian-original-size"
WORKER_HEADER = "guardian-worker"
# The source topic bounds a record (broker default ~1 MiB); anything beyond this is cut, never refused.
DLQ_MAX_VALUE_BYTES = 3 * 1024 * 1024


@runtime_checkable
class SampleStage(Protocol):
    """The narrow interface between ingestion and detection."""

    def process(self, batch: SampleBatch) -> list[Detection]:
        """Score (and learn from) one workload's batch; return the detections it triggers."""


class NullStage:
    """Detects nothing; ingestion runs (and is measured) without a detector."""

    def process(self, batch: SampleBatch) -> list[Detection]:
        return []


class LimitStage:
    """Flags every sample above a static per-metric limit (e.g. a policy's hard ceiling).

    Detection ids are derived from the sample, so a replayed record yields the same id.
    """

    def __init__(self, limits: Mapping[Metric | str, float]) -> None:
        self.limits = {Metric(m): float(v) for m, v in limits.items()}

    def process(self, batch: SampleBatch) -> list[Detection]:
        out: list[Detection] = []
        limits = self.limits
        for metric, ts, value in zip(batch.metrics, batch.ts, batch.values):
            limit = limits.get(metric)
            if limit is None or value <= limit:
                continue
            ratio = value / limit if limit > 0 else float("inf")
            severity = Severity.CRITICAL if ratio >= 10 else Severity.HIGH if ratio >= 3 else Severity.MEDIUM
            ident = hashlib.blake2b(f"{batch.key}|{metric.value}|{ts!r}|{value!r}|{sorted(batch.labels.items())}"
                                    .encode(), digest_size=10).hexdigest()
            out.append(Detection(id=ident, ts=ts, signature=Signature.ANOMALY, severity=severity,
                                 confidence=1.0, workload=batch.workload.as_dict(), metric=metric.value,
                                 baseline=limit, observed=value, ratio=min(ratio, 1e9), duration_s=0.0,
                                 evidence=[(ts, value)], detector="limit", extra=dict(batch.labels)))
        return out


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str
    value: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int

    def headers(self) -> list[tuple[str, bytes]]:
        h = [(DLQ_REASON, self.reason.encode()), (DLQ_DETAIL, self.detail[:1000].encode()),
             (DLQ_TOPIC, self.topic.encode()), (DLQ_PARTITION, str(self.partition).encode()),
             (DLQ_OFFSET, str(self.offset).encode())]
        if len(self.value) > DLQ_MAX_VALUE_BYTES:
            h.append((DLQ_ORIGINAL_SIZE, str(len(self.value)).encode()))
        return h

    def payload(self) -> bytes:
        """The original bytes, cut to ``DLQ_MAX_VALUE_BYTES`` (the size header then says how long it was)."""
        return self.value[:DLQ_MAX_VALUE_BYTES]


@dataclass
class Outcome:
    """What one record gave: each batch with the detections it triggered, and the dead letters."""

    scored: list[tuple[SampleBatch, list[Detection]]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def batches(self) -> list[SampleBatch]:
        return [batch for batch, _ in self.scored]

    @property
    def detections(self) -> list[Detection]:
        return [d for _, found in self.scored for d in found]


class IngestMetrics(Protocol):
    """What the processor reports. ``guardian.metrics.GuardianMetrics`` is the implementation
    ``guardian run`` passes (one definition of every guardian_* metric per process);
    ``ProcessorMetrics`` below stands in when a worker runs on its own."""

    def observe_records(self, count: int = 1) -> None: ...

    def observe_samples(self, count: int, source: str = ..., newest_ts: float | None = None) -> None: ...

    def observe_dead_letter(self, reason: str, count: int = 1) -> None: ...

    def observe_detection(self, detection: Any) -> None: ...

    def set_consumer_lag(self, topic: str, partition: int, messages: int) -> None: ...


class ProcessorMetrics:
    """A standalone ``IngestMetrics`` on a registry the caller passes in, with the same names
    as ``GuardianMetrics``' ingest metrics, for a worker run without the rest of the guardian."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge

        self.samples = Counter("guardian_ingest_samples_total", "Samples decoded and handed to the detectors",
                               ["source"], registry=registry)
        self.records = Counter("guardian_ingest_records_total", "Records read from the metrics topic",
                               registry=registry)
        self.dead_letters = Counter("guardian_ingest_dead_letters_total",
                                    "Records sent to the dead-letter topic, by decode failure reason",
                                    ["reason"], registry=registry)
        self.detections = Counter("guardian_detector_detections_total", "Detections emitted", registry=registry)
        self.lag = Gauge("guardian_ingest_consumer_lag_messages",
                         "Messages between this worker's position and the end of its partition",
                         ["topic", "partition"], registry=registry)

    def observe_records(self, count: int = 1) -> None:
        self.records.inc(count)

    def observe_samples(self, count: int, source: str = "unknown", newest_ts: float | None = None) -> None:
        self.samples.labels(source=source[:32]).inc(count)

    def observe_dead_letter(self, reason: str, count: int = 1) -> None:
        self.dead_letters.labels(reason=reason[:32]).inc(count)

    def observe_detection(self, detection: Any) -> None:
        self.detections.inc()

    def set_consumer_lag(self, topic: str, partition: int, messages: int) -> None:
        self.lag.labels(topic=topic, partition=str(partition)).set(max(0, messages))


def _own_bytes(record_value: bytes | None, batch: SampleBatch) -> bytes:
    """What a dead letter of ``batch`` carries: its record's bytes if it came alone, else the batch re-encoded."""
    return record_value if record_value is not None else encode_batch(batch)


class MetricsProcessor:
    """Decode, validate, detect; route failures to dead letters. Pure apart from the stage it calls."""

    def __init__(self, stage: SampleStage | None = None, metrics: IngestMetrics | None = None) -> None:
        self.stage = stage or NullStage()
        self.metrics = metrics

    def handle(self, value: bytes | None, key: bytes | None, topic: str, partition: int,
               offset: int) -> Outcome:
        if self.metrics:
            self.metrics.observe_records()
        out, batches = self._open(value, key, topic, partition, offset)
        for batch, batch_value in batches:
            try:
                detections = list(self.stage.process(batch))
            except Exception as exc:  # noqa: BLE001 - a failing stage must not stop the stream
                out.dead_letters.append(self._dead("stage", f"{type(exc).__name__}: {exc}",
                                                   _own_bytes(batch_value, batch), key, topic, partition, offset))
                continue
            self._scored(out, batch, detections)
        return out

    def handle_many(self, records: list[tuple[bytes | None, bytes | None, str, int, int]]) -> list[Outcome]:
        """``handle`` for a chunk of records, ``(value, key, topic, partition, offset)`` each, in order.

        A stage with ``process_many`` (``guardian.app.run.DetectorStage``) gets every decoded batch of the
        chunk in one call: the detectors are vectorised and their cost is per call, not per sample.
        If that call fails, every batch of the chunk is a dead letter (reason ``stage``)."""
        many = getattr(self.stage, "process_many", None)
        if many is None:
            return [self.handle(*r) for r in records]
        if self.metrics:
            self.metrics.observe_records(len(records))
        outcomes: list[Outcome] = []
        decoded: list[tuple[Outcome, SampleBatch, bytes | None, tuple]] = []
        for record in records:
            out, batches = self._open(*record)
            outcomes.append(out)
            decoded += [(out, batch, batch_value, record) for batch, batch_value in batches]
        try:
            found = many([batch for _, batch, _, _ in decoded]) if decoded else []
        except Exception as exc:  # noqa: BLE001 - a failing stage must not stop the stream
            detail = f"{type(exc).__name__}: {exc}"
            for out, batch, batch_value, (_, key, topic, partition, offset) in decoded:
                out.dead_letters.append(self._dead("stage", detail, _own_bytes(batch_value, batch), key, topic,
                                                   partition, offset))
            return outcomes
        for (out, batch, _, _), detections in zip(decoded, found):
            self._scored(out, batch, list(detections))
        return outcomes

    def _open(self, value: bytes | None, key: bytes | None, topic: str, partition: int,
              offset: int) -> tuple[Outcome, list[tuple[SampleBatch, bytes | None]]]:
        """Decode a record: its outcome so far (the dead letters) and its good batches, each with the
        bytes a dead letter of it carries: the record's own for a record of one batch, else None (the
        batch alone, encoded when it is needed)."""
        out = Outcome()
        try:
            batches, rejected = decode_record(value)  # type: ignore[arg-type]
        except DecodeError as exc:
            out.dead_letters.append(self._dead(getattr(exc, "reason", "invalid"), getattr(exc, "detail", str(exc)),
                                               value, key, topic, partition, offset))
            return out, []
        single = len(batches) == 1 and not rejected
        # keyed by tenant (Workload.partition_key); records keyed by workload (0.1.0 and before) are still read
        record_key = key.decode("utf-8", "replace") if key is not None else None
        good: list[tuple[SampleBatch, bytes | None]] = []
        for batch in batches:
            batch_value = value if single else None
            if record_key is not None and record_key not in (batch.workload.partition_key, batch.key):
                rejected.append((BatchDecodeError("key", f"record key {key[:200]!r} is not the batch's partition key "
                                                         f"{batch.workload.partition_key!r}"),
                                 _own_bytes(batch_value, batch)))
            else:
                good.append((batch, batch_value))
        for exc, item in rejected:
            out.dead_letters.append(self._dead(exc.reason, exc.detail, item, key, topic, partition, offset))
        return out, good

    def _scored(self, out: Outcome, batch: SampleBatch, detections: list[Detection]) -> None:
        out.scored.append((batch, detections))
        if self.metrics:
            self.metrics.observe_samples(len(batch), batch.source, max(batch.ts) if batch.ts else None)
            for d in detections:
                self.metrics.observe_detection(d)

    def _dead(self, reason: str, detail: str, value: bytes | None, key: bytes | None, topic: str,
              partition: int, offset: int) -> DeadLetter:
        if self.metrics:
            self.metrics.observe_dead_letter(reason)
        return DeadLetter(reason, detail, value or b"", key, topic, partition, offset)
