"""guardian.app.run's detector stage: the pipeline's onset, then re-emission while the episode lasts."""

from __future__ import annotations

import dataclasses

from guardian.detectors.config import DetectorConfig
from guardian.detectors.pipeline import DetectorPipeline
from guardian.model.samples import SampleBatch
from guardian.ingest.stage import ClusterTraffic, DetectorStage
from guardian.model.samples import Metric, Sample, Workload

RUNAWAY = Workload(principal="User:tenant-a", client_id="orders", broker="b1")
PEER = Workload(principal="User:tenant-a", client_id="peer", broker="b1")
BROKER = Workload(broker="b1")


def _batch(w: Workload, ts: float, value: float, metric: Metric = Metric.PRODUCE_BYTE_RATE) -> SampleBatch:
    return SampleBatch.of([Sample(ts=ts, workload=w, metric=metric, value=value, source="prometheus")])


def _stage() -> DetectorStage:
    config = DetectorConfig.from_dict({"tiers": {"produce_byte_rate": {"warm_n": 20}}})
    return DetectorStage(DetectorPipeline(config, clock=lambda: 0.0), traffic=ClusterTraffic(clock=lambda: 200.0),
                         reemit_s=2.0, fast_phase_s=30.0, slow_reemit_s=10.0)


def _drive(stage: DetectorStage, rates: list[tuple[float, float]]) -> list:
    out = []
    for ts, rate in rates:
        stage.process(_batch(PEER, ts, 200_000.0))
        out += [(ts, d) for d in stage.process(_batch(RUNAWAY, ts, rate))]
    return out


def test_an_ongoing_episode_is_re_emitted_with_growing_evidence_then_stops_when_it_recovers() -> None:
    stage = _stage()
    normal = [(float(t), 200_000.0) for t in range(60)]
    runaway = [(float(t), 5_000_000.0) for t in range(60, 120)]
    recovered = [(float(t), 200_000.0) for t in range(120, 240)]
    emitted = _drive(stage, normal + runaway + recovered)
    assert emitted, "a 25x step must be detected"
    first_ts, first = emitted[0]
    assert 60 <= first_ts < 120 and first.workload["client_id"] == "orders"
    during = [d for ts, d in emitted if ts < 120]
    assert len(during) >= 5
    # same episode: same id while the policy may still wait for evidence, and the evidence grows
    fast_phase = [d for d in during if d.duration_s < 30]
    assert {d.id for d in fast_phase} == {first.id}
    durations = [d.duration_s for d in during]
    assert durations == sorted(durations) and durations[-1] > first.duration_s + 20
    # gaps between re-emissions follow reemit_s, then slow_reemit_s
    gaps = [b - a for a, b in zip([d.ts for d in during], [d.ts for d in during][1:])]
    assert min(gaps) >= 2.0
    # after the slow phase starts, the id moves on (a released workload can be quarantined again)
    late = [d for d in during if d.duration_s >= 30]
    assert late and all(d.id.startswith(first.id + ".") for d in late)
    # once the rate is back to normal and the pipeline recovers, nothing more is emitted for it
    last_alarm_ts = max(ts for ts, _ in emitted)
    assert last_alarm_ts < 200
    assert not any(d.workload["client_id"] == "peer" for _, d in emitted)


def test_with_the_default_period_every_second_sample_is_re_emitted_even_when_samples_come_a_little_early() -> None:
    # the engine re-judges a watched runaway only when it is re-emitted: a scrape 0.95 s after the last must
    # not wait for the next one (what a strict "1 s since the last emission" did to 1 s scrapes)
    config = DetectorConfig.from_dict({"tiers": {"produce_byte_rate": {"warm_n": 20}}})
    stage = DetectorStage(DetectorPipeline(config, clock=lambda: 0.0), traffic=ClusterTraffic(clock=lambda: 200.0))
    assert stage.reemit_s == 1.0
    ts, rates = 0.0, []
    for i in range(120):
        ts += 0.95 if i % 2 else 1.05
        rates.append((ts, 200_000.0 if i < 60 else 5_000_000.0))
    emitted = _drive(stage, rates)
    during = [t for t, _ in emitted]
    assert len(during) >= 10, "a 25x step must be detected and re-emitted"
    gaps = [b - a for a, b in zip(during, during[1:])]
    assert max(gaps) < 1.1, f"a re-emission skipped a sample: gaps {gaps}"

def test_an_episode_whose_ratio_doubles_is_re_emitted_at_once_even_in_its_slow_phase() -> None:
    # a standing alarm (25x for 100 s, re-emitted every 30 s by now) that then grows 10x more: the engine
    # must see the surge within a sample or two, not at the next slow re-emission
    config = DetectorConfig.from_dict({"tiers": {"produce_byte_rate": {"warm_n": 20}}})
    stage = DetectorStage(DetectorPipeline(config, clock=lambda: 0.0), traffic=ClusterTraffic(clock=lambda: 200.0),
                          reemit_s=1.0, fast_phase_s=30.0, slow_reemit_s=30.0)
    rates = ([(float(t), 200_000.0) for t in range(60)] + [(float(t), 5_000_000.0) for t in range(60, 165)]
             + [(float(t), 50_000_000.0) for t in range(165, 180)])
    emitted = _drive(stage, rates)
    assert emitted and emitted[0][0] < 70, "the 25x step must be detected"
    standing = [ts for ts, _ in emitted if 120 <= ts < 165]
    assert len(standing) <= 2, f"the standing alarm is in its slow phase by then: {standing}"
    surge = [(ts, d) for ts, d in emitted if 165 <= ts < 180]
    assert surge and surge[0][0] <= 167, f"the surge at 165 s was re-emitted at {[ts for ts, _ in surge]}"
    assert surge[0][1].ratio >= 2 * max(d.ratio for ts, d in emitted if ts < 165)

def test_re_emissions_report_the_current_level_not_the_onset_value() -> None:
    stage = _stage()
    emitted = _drive(stage, [(float(t), 200_000.0) for t in range(60)] + [(float(t), 5_000_000.0) for t in range(60, 90)])
    observed = [d.observed for _, d in emitted]
    assert observed[-1] > observed[0]
    ranks = [d.severity.rank for _, d in emitted]
    assert ranks == sorted(ranks) and emitted[-1][1].severity.value == "critical"
    assert all(d.baseline < 400_000 for _, d in emitted)


def test_re_emissions_carry_the_signatures_other_rates_as_they_are_now() -> None:
    """A partition storm detected on its topic rate: each re-emission has the partition rate of now."""
    stage = _stage()
    owner = Workload(principal="User:tenant-a")
    emitted = []
    for t in range(0, 400, 2):
        topics = 2.0 if t >= 300 else 0.0
        parts = 0.0 if t < 300 else 40.0 if t < 320 else 200.0     # its topics grow from 20 to 100 partitions
        emitted += stage.process(_batch(owner, float(t), topics, Metric.TOPIC_CREATION_RATE))
        emitted += stage.process(_batch(owner, float(t), parts, Metric.PARTITION_CREATION_RATE))
    assert emitted and emitted[0].metric == "topic_creation_rate"
    seen = [d.extra["rates"]["partition_creation_rate"] for d in emitted]
    assert seen[0] < 50 and seen[-1] > 190, seen


def test_cluster_traffic_sums_the_brokers_in_and_out_averaged_and_forgets_silent_brokers() -> None:
    now = [100.0]
    traffic = ClusterTraffic(stale_after_s=30, window_s=10, clock=lambda: now[0])
    assert traffic() is None
    traffic.observe(_batch(BROKER, 95.0, 1_000_000.0))
    traffic.observe(_batch(BROKER, 96.0, 2_000_000.0, Metric.FETCH_BYTE_RATE))
    traffic.observe(_batch(Workload(broker="b2"), 97.0, 500_000.0))
    # a client's byte rate is not cluster traffic
    traffic.observe(_batch(RUNAWAY, 97.0, 9_000_000.0))
    assert traffic() == 3_500_000.0
    # a burst and a lull average out over the window
    traffic.observe(_batch(BROKER, 99.0, 3_000_000.0))
    assert traffic() == 2_000_000.0 + 2_000_000.0 + 500_000.0
    traffic.observe(_batch(BROKER, 110.0, 1_000_000.0))    # 95 and 99 fall out of the 10 s window
    assert traffic() == 1_000_000.0 + 2_000_000.0 + 500_000.0
    now[0] = 128.0   # only b1's produce (last at 110) is within 30 s
    assert traffic() == 1_000_000.0
    now[0] = 1000.0
    assert traffic() is None


def test_an_episode_found_early_in_a_ramp_is_re_emitted_with_the_severity_it_grew_to() -> None:
    stage = _stage()
    ramp = [(float(t), 200_000.0 * (1 + 19 * min(1.0, (t - 60) / 30))) for t in range(60, 110)]
    emitted = _drive(stage, [(float(t), 200_000.0) for t in range(60)] + ramp)
    first, last = emitted[0][1], emitted[-1][1]
    assert first.severity.rank < last.severity.rank
    assert last.severity.value == "critical" and last.id.startswith(first.id)


def test_the_stage_forgets_series_and_episodes_of_workloads_gone_quiet() -> None:
    now = [0.0]
    config = DetectorConfig.from_dict({"idle_evict_s": 600, "tiers": {"produce_byte_rate": {"warm_n": 20}}})
    stage = DetectorStage(DetectorPipeline(config, clock=lambda: now[0]), evict_every_s=60.0)
    gone = Workload(principal="User:tenant-a", client_id="batch-job-1", broker="b1")
    for t in range(0, 120):
        now[0] = float(t)
        stage.process(_batch(PEER, float(t), 200_000.0))
        stage.process(_batch(gone, float(t), 200_000.0 if t < 60 else 5_000_000.0))
    assert stage.pipeline.tracked_series() == 2
    whole = dataclasses.replace(gone, broker=None)   # episodes are of the cluster-wide series
    assert any(k[0] == whole for k in stage._episodes), "its runaway is an open episode"
    # the batch job ends; its peer goes on for longer than idle_evict_s
    for t in range(120, 900):
        now[0] = float(t)
        stage.process(_batch(PEER, float(t), 200_000.0))
    assert stage.pipeline.tracked_series() == 1 and stage.evicted == 1
    assert not any(k[0] == whole for k in stage._episodes)
    assert len(stage.cluster_series) == 1, "the combiner forgets the quiet workload too"


def test_a_chunk_of_records_gives_the_detections_of_one_record_at_a_time() -> None:
    """``process_many`` (one detector call per chunk: issue 16's worker bottleneck) finds the same
    episodes, with the same ids, evidence and re-emissions, as ``process`` record by record; each
    workload's detections go with its last record of the chunk. Three brokers, so the cluster-wide
    series are combined too."""
    clients = [Workload(principal=f"User:tenant-{i % 2}", client_id=f"c{i}") for i in range(6)]
    rounds = []
    for t in range(120):
        chunk = []
        for i, w in enumerate(clients):
            rate = 100_000.0 * (1 + i) * (12.0 if i == 3 and t >= 80 else 1.0)
            chunk += [_batch(dataclasses.replace(w, broker=b), t + 0.1 * k, rate / 3) for k, b in enumerate("123")]
        rounds.append(chunk)
    one, many = _stage(), _stage()
    singly = [[d for b in chunk for d in one.process(b)] for chunk in rounds]
    chunked = [many.process_many(chunk) for chunk in rounds]
    key = lambda d: (d.id, d.ts, d.workload["client_id"], d.signature, round(d.observed, 6), d.duration_s)  # noqa: E731
    assert [[key(d) for d in r] for r in singly] == [[key(d) for per in r for d in per] for r in chunked]
    found = [d for r in singly for d in r]
    assert found and {d.workload["client_id"] for d in found} == {"c3"}
    assert len({d.id for d in found}) < len(found)          # an ongoing episode was re-emitted
    for chunk, per in zip(rounds, chunked):                # with the workload's last record
        for b, dets in zip(chunk, per):
            assert all(d.workload["client_id"] == b.workload.client_id and b.workload.broker == "3" for d in dets)


def test_eviction_goes_by_sample_time_so_replayed_old_samples_are_not_all_idle() -> None:
    """The stage schedules eviction by the samples' time; the pipeline must judge idleness by it too.
    By a wall clock a day ahead of the samples, every series looked idle and was dropped each pass."""
    config = DetectorConfig.from_dict({"idle_evict_s": 600, "tiers": {"produce_byte_rate": {"warm_n": 20}}})
    stage = DetectorStage(DetectorPipeline(config, clock=lambda: 86_400.0), evict_every_s=60.0)
    for t in range(0, 300):
        stage.process(_batch(PEER, float(t), 200_000.0))
    assert stage.evicted == 0 and stage.pipeline.tracked_series() == 1


def test_the_stage_hands_a_followed_clients_cluster_wide_rate_and_its_parts_to_the_engine() -> None:
    from guardian.policy.effect import FollowedRates

    rates = FollowedRates(clock=lambda: 10.0)
    stage = dataclasses.replace(_stage(), rates=rates)
    on_b2 = dataclasses.replace(RUNAWAY, broker="b2")
    assert rates.read("User:tenant-a", "orders", "produce_byte_rate") == []   # the engine starts following
    for ts in (1.0, 2.0, 3.0):
        stage.process(_batch(RUNAWAY, ts, 300.0))
        stage.process(_batch(on_b2, ts + 0.1, 100.0))
        stage.process(_batch(PEER, ts, 50.0))                                   # not followed: not kept
    points = rates.read("User:tenant-a", "orders", "produce_byte_rate")
    assert len(points) >= 2 and {p.total for p in points} == {400.0}            # whole rounds: the sum
    assert points[-1].brokers == {"b1": 300.0, "b2": 100.0}
    assert {k[1] for k in rates._points} == {"orders"}
