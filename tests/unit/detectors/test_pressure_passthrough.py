"""Broker pressure samples pass through the detectors: no error, no detection, no state, even when they swing."""

from __future__ import annotations

import pytest

from guardian.detectors.config import DetectorConfig
from guardian.detectors.pipeline import DetectorPipeline
from guardian.errors import ConfigError
from guardian.ingest.codec import group_samples
from guardian.model.samples import PRESSURE_METRICS, Metric, Sample, Workload

BROKER = Workload(broker="127.0.0.1:9404")


def broker_pressure(t: int, hurting: bool) -> list[Sample]:
    """One scrape's pressure samples, as the sources emit them; from calm to as bad as it gets."""
    def s(metric: Metric, value: float, **labels: str) -> Sample:
        return Sample(ts=float(t), workload=BROKER, metric=metric, value=value, source="prometheus", labels=labels)

    return [
        s(Metric.REQUEST_HANDLER_IDLE, 0.0 if hurting else 0.97),
        s(Metric.NETWORK_PROCESSOR_IDLE, 0.01 if hurting else 0.99),
        s(Metric.REQUEST_QUEUE_TIME_P99, 9_000.0 if hurting else 1.0, request="Produce"),
        s(Metric.REQUEST_QUEUE_TIME_P99, 7_000.0 if hurting else 0.0, request="Fetch"),
        s(Metric.REQUEST_TOTAL_TIME_P99, 30_000.0 if hurting else 3.0, request="Produce"),
        s(Metric.REQUEST_TOTAL_TIME_P99, 30_000.0 if hurting else 500.0, request="Fetch"),
        s(Metric.PURGATORY_SIZE, 50_000.0 if hurting else 2.0, operation="Produce"),
        s(Metric.PURGATORY_SIZE, 80_000.0 if hurting else 10.0, operation="Fetch"),
        s(Metric.UNDER_REPLICATED_PARTITIONS, 400.0 if hurting else 0.0),
    ]


def test_every_pressure_metric_is_covered_by_the_batch() -> None:
    assert {s.metric for s in broker_pressure(0, False)} == PRESSURE_METRICS


def test_pressure_samples_yield_no_detection_and_no_error_through_both_entry_points() -> None:
    by_sample, by_batch = DetectorPipeline(clock=lambda: 0.0), DetectorPipeline(clock=lambda: 0.0)
    detections = []
    for t in range(600):   # 10 calm minutes to learn a normal, then 5 minutes of extreme pressure
        batch = broker_pressure(t, hurting=t >= 300)
        detections += by_sample.process(batch)
        detections += by_batch.process_batches(group_samples(batch))
    assert detections == []
    assert by_sample.tracked_series() == 0 and by_batch.tracked_series() == 0
    assert by_sample.snapshot_workload(BROKER)["series"] == {}


def test_pressure_samples_beside_a_runaway_leave_its_detection_alone() -> None:
    pipe = DetectorPipeline(clock=lambda: 0.0)
    writer = Workload(principal="User:tenant-a", client_id="writer")
    found = []
    for t in range(400):
        level = 4e6 if t >= 300 else 1e6
        found += pipe.process([Sample(ts=float(t), workload=writer, metric=Metric.PRODUCE_BYTE_RATE, value=level),
                               *broker_pressure(t, hurting=t >= 300)])
    assert [d.workload for d in found] == [writer.as_dict()]


def test_a_tier_for_a_pressure_metric_is_refused() -> None:
    with pytest.raises(ConfigError, match="broker pressure"):
        DetectorConfig.from_dict({"tiers": {"request_handler_idle": {"min_excess": 0.1}}})
