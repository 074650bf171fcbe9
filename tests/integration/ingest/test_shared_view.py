"""Two workers, one engine: the shared cluster view in the real Redis makes the engine decide as if
one worker saw every sample.

The recorded input is what the collectors publish for 3 brokers: the brokers' own pressure and
traffic samples (key ``cluster``) and twelve clients of six tenants (keyed by principal), split
over 6 partitions as librdkafka's default partitioner does and owned by 2 workers. The runaway's
tenant is on the other worker than the brokers' samples. When the runaway starts, the brokers'
request handlers go 90 % busy and the runaway holds most of their thread time: harm by pressure.

In lockstep over the same records:

* one worker seeing everything, with an engine on its in-process providers (the reference);
* two workers, each publishing its part to Redis (``guardian.ingest.view``), with an engine on
  ``SharedClusterView``: the same decisions (a throttle on pressure), the same pressure snapshot
  and traffic, and the same measured effect of the throttle;
* what ran before the shared view: an engine on either worker's own providers. On the brokers'
  worker the runaway's load is unknown, on the runaway's worker the brokers' signals are: both only
  watch. And an engine that reads only the brokers' worker's followed rates records the throttle's
  effect as unmeasured.
"""

from __future__ import annotations

import random
import textwrap
import zlib

import pytest

from guardian.engine.engine import ActionEngine
from guardian.ingest.codec import encode_batch, group_samples
from guardian.ingest.processor import MetricsProcessor
from guardian.ingest.stage import ClusterTraffic, build_stage
from guardian.ingest.view import SharedClusterView, ViewPublisher
from guardian.model.quarantine import Outcome
from guardian.model.samples import Metric, Sample, Workload
from guardian.policy.config import parse_policy
from guardian.policy.effect import FollowedRates
from guardian.policy.pressure import ClusterPressure
from guardian.settings import GuardianSettings
from guardian.testing import MemoryLedger, RecordingActuator

pytestmark = pytest.mark.integration

PARTITIONS, WORKERS = 6, 2
BROKERS = ("1", "2", "3")
T0 = 1_795_000_000.0
RUN, END = 200, 270     # the runaway starts at RUN; the effect is judged ~46 s after the throttle
POLICY = textwrap.dedent("""\
    global:
      max_concurrent_quarantines: 5
      max_throttled_traffic_share: 1.0
    policies:
      - name: tenants
        ladder:
          - {action: throttle, multiple_of_baseline: 2, floor: 1000, evidence_s: 4, ttl_s: 600}
    """)


def worker_of(key: str) -> int:
    return zlib.crc32(key.encode()) % PARTITIONS % WORKERS


BROKERS_WORKER = worker_of("cluster")
TENANTS = [f"User:tenant-{i}" for i in range(6)]
# the runaway's tenant is on the worker that does not see the brokers' signals
RUNAWAY = next(Workload(principal=p, client_id="app-0") for p in TENANTS
               if worker_of(f"principal={p}") != BROKERS_WORKER)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def recorded_input(seed: int = 7) -> list[list[Sample]]:
    rng = random.Random(seed)
    clients = [(p, f"app-{c}", rng.uniform(100_000, 300_000)) for p in TENANTS for c in range(2)]
    scrapes = []
    for t in range(END):
        hurt = t >= RUN
        out, per_broker = [], {b: 0.0 for b in BROKERS}
        for principal, cid, rate in clients:
            x = 20.0 if hurt and (principal, cid) == (RUNAWAY.principal, RUNAWAY.client_id) else 1.0
            weights = [rng.uniform(0.8, 1.2) for _ in BROKERS]
            for i, b in enumerate(BROKERS):
                w = Workload(principal=principal, client_id=cid, broker=b)
                bytes_in = rate * x * rng.uniform(0.95, 1.05) * weights[i] / sum(weights)
                per_broker[b] += bytes_in
                ts = T0 + t + 0.05 * i
                out += [Sample(ts, w, Metric.PRODUCE_BYTE_RATE, bytes_in, source="prometheus"),
                        Sample(ts, w, Metric.REQUEST_TIME_SHARE, 2.0 * x * rng.uniform(0.9, 1.1), source="prometheus")]
        for i, b in enumerate(BROKERS):
            w, ts = Workload(broker=b), T0 + t + 0.05 * i
            out += [Sample(ts, w, Metric.REQUEST_HANDLER_IDLE, 0.1 if hurt else 0.7, source="prometheus"),
                    Sample(ts, w, Metric.REQUEST_TOTAL_TIME_P99, 30.0 if hurt else 5.0, labels={"request": "Produce"},
                           source="prometheus"),
                    Sample(ts, w, Metric.PRODUCE_BYTE_RATE, per_broker[b], source="prometheus")]
        scrapes.append(out)
    return scrapes


class Worker:
    """One worker's stage and the providers it feeds (its own, as each process has)."""

    def __init__(self, clock: Clock, publisher: ViewPublisher | None = None, name: str = "w") -> None:
        self.pressure = ClusterPressure(stale_after_s=30.0, clock=clock)
        self.traffic = ClusterTraffic(stale_after_s=30.0, clock=clock)
        self.rates = FollowedRates(clock=clock)
        self.publisher = publisher
        if publisher is not None:
            publisher.pressure, publisher.traffic, publisher.rates = self.pressure, self.traffic, self.rates
        self.stage = build_stage(GuardianSettings(), self.traffic, None, self.pressure, self.rates, publisher)
        self.processor = MetricsProcessor(self.stage)
        self.offsets: dict[int, int] = {}

    def handle(self, partition: int, key: bytes, value: bytes) -> list:
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        out = self.processor.handle(value, key, "guardian.metrics", partition, offset)
        assert not out.dead_letters, out.dead_letters
        return out.detections


def engine(clock: Clock, pressure, traffic, rates) -> ActionEngine:
    return ActionEngine(MemoryLedger(clock=clock), parse_policy(POLICY, "test.yaml"),
                        {"quota": RecordingActuator("quota")}, clock=clock, cluster_pressure=pressure,
                        cluster_traffic=traffic, client_rates=rates)


def is_runaway(d) -> bool:
    return d.workload.get("principal") == RUNAWAY.principal and d.workload.get("client_id") == RUNAWAY.client_id


def summary(decisions) -> list[tuple]:
    return [(d.outcome.value, (d.harm or {}).get("reason"), (d.harm or {}).get("broker")) for d in decisions]


def effects(e: ActionEngine) -> list[dict]:
    """The recorded effect of each byte-rate throttle. A pressure-sized throttle also caps thread time
    (request_percentage); no cluster-wide series shows that one, so its effect is recorded as skipped."""
    found = [rec.effect for q in e.list_quarantines() for rec in e.actions(q.id) if rec.effect]
    assert all(x["result"] == "skipped" for x in found if x["key"] == "request_percentage"), found
    return [x for x in found if x["key"] != "request_percentage"]


def test_two_workers_sharing_their_view_decide_as_one_worker_seeing_everything(redis_client, unique):
    prefix = f"test-view-{unique}:"
    clock = Clock()
    one = Worker(clock)
    pubs = [ViewPublisher(redis_client, prefix, f"w{i}", interval_s=1.0, ttl_s=10.0, clock=clock)
            for i in range(WORKERS)]
    two = [Worker(clock, pubs[i]) for i in range(WORKERS)]
    shared = SharedClusterView(redis_client, prefix, pressure_stale_after_s=30.0, traffic_stale_after_s=30.0,
                               cache_s=0.0, clock=clock)
    engines = {
        "one worker": engine(clock, one.pressure.snapshot, one.traffic, one.rates.read),
        "shared view": engine(clock, shared.cluster_pressure, shared.cluster_traffic, shared.client_rates),
        # before the shared view: the engine saw only its own process's stage
        "brokers' worker alone": engine(clock, two[BROKERS_WORKER].pressure.snapshot, two[BROKERS_WORKER].traffic,
                                        two[BROKERS_WORKER].rates.read),
        "runaway's worker alone": engine(clock, two[1 - BROKERS_WORKER].pressure.snapshot,
                                         two[1 - BROKERS_WORKER].traffic, two[1 - BROKERS_WORKER].rates.read),
        # pressure shared, but the followed rates only those of the brokers' worker
        "rates of the brokers' worker": engine(clock, shared.cluster_pressure, shared.cluster_traffic,
                                               two[BROKERS_WORKER].rates.read),
    }
    found: dict[str, list] = {name: [] for name in engines}
    compared = False
    try:
        for t, scrape in enumerate(recorded_input()):
            clock.t = T0 + t + 0.5
            for batch in group_samples(scrape):
                key = batch.workload.partition_key.encode()
                partition = zlib.crc32(key) % PARTITIONS
                value = encode_batch(batch)
                whole = one.handle(partition, key, value)
                split = two[partition % WORKERS].handle(partition, key, value)
                assert [d.id for d in split] == [d.id for d in whole]
                for d in whole:
                    found["one worker"] += [engines["one worker"].handle(d)] if is_runaway(d) else []
                for d in split:
                    if is_runaway(d):
                        for name, e in engines.items():
                            if name != "one worker":
                                found[name].append(e.handle(d))
            for e in engines.values():
                e.tick()
            if t == RUN + 10:
                for p in pubs:             # the views as of now (published every second anyway)
                    p.publish(p_principals(two[pubs.index(p)]))
                assert_same_snapshot(one, shared)
                compared = True
    finally:
        for k in redis_client.scan_iter(match=prefix + "*"):
            redis_client.delete(k)
    assert compared

    reference = summary(found["one worker"])
    assert [r for r in reference if r[:2] == ("quarantined", "pressure")], reference
    assert summary(found["shared view"]) == reference

    # without the shared view the engine only watches, wherever the lease is
    for alone in ("brokers' worker alone", "runaway's worker alone"):
        outcomes = {d.outcome for d in found[alone]}
        assert Outcome.QUARANTINED not in outcomes and Outcome.WATCH in outcomes, (alone, summary(found[alone]))

    # the throttle's effect, measured on every worker's points, is the one worker's
    (ref,), (got,) = effects(engines["one worker"]), effects(engines["shared view"])
    assert ref["result"] == got["result"] == "not_effective"       # the recorded runaway goes on at 20x
    assert got["measured"] == pytest.approx(ref["measured"], rel=1e-9)
    assert got["brokers"] == pytest.approx(ref["brokers"], rel=1e-9)
    assert got["window"] == ref["window"]
    # the throttle was sized from the view as last published (up to a second old): about the same
    assert got["target"] == pytest.approx(ref["target"], rel=0.05)
    (blind,) = effects(engines["rates of the brokers' worker"])
    assert blind["result"] == "unmeasured"


def p_principals(worker: Worker):
    return worker.stage.open_principals()


def assert_same_snapshot(one: Worker, shared: SharedClusterView) -> None:
    whole, merged = one.pressure.snapshot(), shared.cluster_pressure()
    assert merged.brokers.keys() == whole.brokers.keys() == set(BROKERS)
    for b, w in whole.brokers.items():
        m = merged.brokers[b]
        assert (m.ts, m.signals, m.normals) == (w.ts, w.signals, w.normals)
        assert m.signals["request_handler_idle"] == 0.1
        assert m.total.request_time == pytest.approx(w.total.request_time)
        assert m.total.bytes_in == pytest.approx(w.total.bytes_in)
        assert m.load_of(RUNAWAY.principal) == w.load_of(RUNAWAY.principal)
        assert m.load_of(RUNAWAY.principal, [RUNAWAY.client_id]).request_time > 0.5 * m.total.request_time
    assert shared.cluster_traffic() == pytest.approx(one.traffic())


def closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_dead_workers_view_expires_and_a_redis_outage_never_stops_ingestion(redis_client, unique, caplog):
    import logging
    import time

    from guardian.errors import TemporaryError
    from guardian.ingest.view import view_client

    prefix = f"test-view-{unique}:"
    clock = Clock()
    scrapes = recorded_input()[:5]
    alive = Worker(clock, ViewPublisher(redis_client, prefix, "w0", ttl_s=0.5, clock=clock))
    shared = SharedClusterView(redis_client, prefix, cache_s=0.0, clock=clock)
    try:
        for t, scrape in enumerate(scrapes):
            clock.t = T0 + t + 0.5
            for batch in group_samples(scrape):
                key = batch.workload.partition_key.encode()
                alive.handle(zlib.crc32(key) % PARTITIONS, key, encode_batch(batch))
        assert set(shared.cluster_pressure().brokers) == set(BROKERS) and shared.cluster_traffic()
        time.sleep(0.8)   # the worker died: its view expires, and what it knew is unknown again
        assert shared.cluster_pressure().brokers == {} and shared.cluster_traffic() is None
    finally:
        for k in redis_client.scan_iter(match=prefix + "*"):
            redis_client.delete(k)

    dead = view_client(f"redis://127.0.0.1:{closed_port()}/0")   # as `guardian run` builds it
    cut_off = Worker(clock, ViewPublisher(dead, prefix, "w1", retry_s=60.0, clock=clock))
    caplog.set_level(logging.WARNING, logger="guardian.ingest.view")
    for t, scrape in enumerate(scrapes):
        clock.t = T0 + t + 0.5
        for batch in group_samples(scrape):
            key = batch.workload.partition_key.encode()
            cut_off.handle(zlib.crc32(key) % PARTITIONS, key, encode_batch(batch))   # ingestion goes on
    assert cut_off.publisher.published == 0 and cut_off.stage._batches == sum(len(group_samples(s)) for s in scrapes)
    assert len([r for r in caplog.records if "not published" in r.getMessage()]) == 1   # then paused retry_s
    reader = SharedClusterView(dead, prefix, cache_s=0.0, clock=clock)
    with pytest.raises(TemporaryError):
        reader.cluster_pressure()           # the engine reads a TemporaryError as unknown pressure
    assert reader.client_rates("User:a", "x", "produce_byte_rate") == []
    dead.close()
