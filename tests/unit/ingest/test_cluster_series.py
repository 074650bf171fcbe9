"""Cluster-wide client series: a client's per-broker parts become one series (guardian.ingest.cluster_series)."""

from __future__ import annotations

import random

import pytest

from guardian.detectors.config import DetectorConfig
from guardian.detectors.pipeline import DetectorPipeline
from guardian.ingest.cluster_series import ClusterSeries, combine_values, is_per_broker
from guardian.model.samples import SampleBatch
from guardian.ingest.stage import DetectorStage
from guardian.model.samples import Metric, Workload

CLIENT = Workload(principal="User:tenant-a", client_id="orders")
PEER = Workload(principal="User:tenant-a", client_id="peer")


def part(w: Workload, broker: str, ts: float, **values: float) -> SampleBatch:
    metrics = tuple(Metric(m) for m in values)
    return SampleBatch(Workload(**{**w.as_dict(), "broker": broker}), metrics, (ts,) * len(metrics),
                       tuple(values.values()), source="prometheus")


def test_on_one_broker_every_batch_passes_through_with_its_values_and_time() -> None:
    cs = ClusterSeries()
    out = []
    for t in range(20):
        out += cs.combine(part(CLIENT, "b1", float(t), produce_byte_rate=100.0 + t, throttle_time=0.0))
    assert len(out) == 20            # every one (the first waits for the second scrape: its round is whole then)
    for t, batch in enumerate(out):
        assert batch.workload == CLIENT and batch.ts == (float(t), float(t))
        assert dict(zip(batch.metrics, batch.values)) == {Metric.PRODUCE_BYTE_RATE: 100.0 + t,
                                                          Metric.THROTTLE_TIME: 0.0}


def test_on_three_brokers_one_sample_per_scrape_round_sums_rates_and_takes_the_worst_time() -> None:
    cs = ClusterSeries()
    rng = random.Random(7)
    brokers = ["b1", "b2", "b3"]
    emitted = []
    for t in range(30):
        order = brokers[:]
        rng.shuffle(order)           # brokers are scraped in no fixed order
        for i, b in enumerate(order):
            share = {"b1": 0.5, "b2": 0.3, "b3": 0.2}[b]
            emitted += cs.combine(part(CLIENT, b, t + 0.01 * i, produce_byte_rate=1000.0 * share,
                                       throttle_time={"b1": 0.0, "b2": 25.0, "b3": 5.0}[b]))
    assert 28 <= len(emitted) <= 31   # one per round (a round's order may differ from the next one's)
    for out in emitted:
        assert out.workload == CLIENT
        values = dict(zip(out.metrics, out.values))
        assert values[Metric.PRODUCE_BYTE_RATE] == pytest.approx(1000.0)
        assert values[Metric.THROTTLE_TIME] == 25.0
    assert cs.detail(CLIENT, Metric.PRODUCE_BYTE_RATE) == pytest.approx({"b1": 500.0, "b2": 300.0, "b3": 200.0})


def test_a_broker_that_stops_reporting_drops_out_of_the_sum_instead_of_freezing_it() -> None:
    cs = ClusterSeries(stale_after_s=5.0)
    last = None
    for t in range(10):
        cs.combine(part(CLIENT, "b1", float(t), produce_byte_rate=100.0))
        cs.combine(part(CLIENT, "b2", float(t), produce_byte_rate=100.0))
    for t in range(10, 30):          # b2 is gone; b1 reports alone
        out = cs.combine(part(CLIENT, "b1", float(t), produce_byte_rate=100.0))
        last = out[-1] if out else last
    assert last is not None and last.values == (100.0,)
    assert cs.detail(CLIENT, Metric.PRODUCE_BYTE_RATE) == {"b1": 100.0}


def test_broker_level_samples_and_samples_without_a_broker_are_not_parts() -> None:
    cs = ClusterSeries()
    broker = SampleBatch(Workload(broker="b1"), (Metric.REQUEST_HANDLER_IDLE,), (1.0,), (0.4,))
    admin = SampleBatch(Workload(principal="User:a", group="g"), (Metric.CONSUMER_LAG,), (1.0,), (5.0,))
    assert cs.combine(broker) == [broker] and cs.combine(admin) == [admin]
    assert not is_per_broker(broker.workload) and not is_per_broker(admin.workload)
    assert len(cs) == 0
    assert combine_values(Metric.REQUEST_LATENCY, [3.0, 9.0]) == 9.0


def test_idle_workloads_are_forgotten() -> None:
    cs = ClusterSeries()
    cs.combine(part(CLIENT, "b1", 0.0, produce_byte_rate=1.0))
    cs.combine(part(PEER, "b1", 500.0, produce_byte_rate=1.0))
    assert cs.forget_idle(now=700.0, idle_s=600.0) == 1 and len(cs) == 1
    assert cs.detail(CLIENT, Metric.PRODUCE_BYTE_RATE) == {}


def _stage() -> DetectorStage:
    config = DetectorConfig.from_dict({"tiers": {"produce_byte_rate": {"warm_n": 20}}})
    return DetectorStage(DetectorPipeline(config, clock=lambda: 0.0))


def _drive(stage: DetectorStage, brokers: list[str]) -> list:
    """A client at 300 kB/s, then 20x from t=120, spread evenly over ``brokers``, next to a steady peer."""
    out = []
    for t in range(240):
        rate = 300_000.0 * (20 if t >= 120 else 1)
        for i, b in enumerate(brokers):
            ts = t + 0.01 * i
            stage.process(part(PEER, b, ts, produce_byte_rate=200_000.0 / len(brokers)))
            out += stage.process(part(CLIENT, b, ts, produce_byte_rate=rate / len(brokers)))
    return out


def test_a_runaway_split_over_three_brokers_is_detected_with_its_cluster_wide_figures() -> None:
    one, three = _drive(_stage(), ["b1"]), _drive(_stage(), ["b1", "b2", "b3"])
    assert one and three
    first_one, first_three = one[0], three[0]
    # the same runaway, found as one cluster-wide series: same signature, figures and onset
    assert first_three.workload == first_one.workload == {"principal": "User:tenant-a", "client_id": "orders"}
    assert first_three.signature == first_one.signature
    assert first_three.baseline == pytest.approx(first_one.baseline, rel=0.02)
    assert first_three.observed == pytest.approx(first_one.observed, rel=0.05)
    assert first_three.baseline > 0.6 * 300_000.0   # the client's baseline, not a third of it
    assert abs(first_three.ts - first_one.ts) <= 1.5
    # per-broker detail is kept as context
    assert first_one.extra["brokers"].keys() == {"b1"}
    assert set(first_three.extra["brokers"]) == {"b1", "b2", "b3"}
    assert sum(first_three.extra["brokers"].values()) == pytest.approx(first_three.extra["brokers"]["b1"] * 3)


def test_an_open_round_moves_with_its_partition() -> None:
    import json

    def batch(broker: str, ts: float, rate: float) -> SampleBatch:
        return SampleBatch(Workload(principal="User:a", client_id="x", broker=broker), (Metric.PRODUCE_BYTE_RATE,),
                           (ts,), (rate,), source="prometheus", labels={"k": "v"})

    a = ClusterSeries()
    for b in (batch("1", 10.0, 300.0), batch("2", 10.1, 100.0), batch("1", 11.0, 330.0)):
        a.combine(b)
    mine = lambda w: w.principal == "User:a"   # noqa: E731
    b = ClusterSeries()
    b.restore(json.loads(json.dumps(a.snapshot(mine))))
    nxt = batch("2", 11.1, 90.0)                       # closes the round that was open at the move
    out_a, out_b = a.combine(nxt), b.combine(nxt)
    assert out_b == out_a and [x.values for x in out_b] == [(420.0,)]
    whole = Workload(principal="User:a", client_id="x")
    assert b.detail(whole, Metric.PRODUCE_BYTE_RATE) == a.detail(whole, Metric.PRODUCE_BYTE_RATE)
    for later in (batch("1", 12.0, 310.0), batch("2", 12.1, 95.0)):
        assert b.combine(later) == a.combine(later)
    assert a.forget(mine) == 1 and len(a) == 0
