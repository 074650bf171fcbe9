"""The signature pipeline: onsets, cold start, tenant share, retry storms, explanations, state moves."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from guardian.detectors.config import DetectorConfig
from guardian.model.detection import Detection, Signature
from guardian.detectors.pipeline import DetectorPipeline
from guardian.errors import ConfigError
from guardian.model.samples import Metric, Sample, Workload

BYTES = Metric.PRODUCE_BYTE_RATE


def wl(tenant: str, cid: str) -> Workload:
    return Workload(principal=f"User:{tenant}", client_id=cid)


def feed(pipe: DetectorPipeline, t0: int, t1: int, series: dict, seed: int = 0) -> list[Detection]:
    """series: {(workload, metric): fn(t) -> level}; 5% multiplicative noise, 1 s resolution."""
    rng = np.random.default_rng(seed + t0)
    out = []
    for t in range(t0, t1):
        batch = [Sample(ts=float(t), workload=w, metric=m, value=float(fn(t) * rng.lognormal(0, 0.05)))
                 for (w, m), fn in series.items()]
        out.extend(pipe.process(batch))
    return out


def peers(tenant: str, n: int, level: float = 1e6) -> dict:
    return {(wl(tenant, f"peer-{i}"), BYTES): (lambda t, lv=level: lv) for i in range(n)}


def test_a_3x_step_is_one_onset_within_10s_and_again_after_recovery() -> None:
    pipe = DetectorPipeline(clock=lambda: 0.0)
    bad = wl("t1", "bad")
    series = {**peers("t0", 3), (bad, BYTES): lambda t: 3e6 if 900 <= t < 1200 or t >= 1800 else 1e6}
    dets = feed(pipe, 0, 2000, series)
    onsets = [d for d in dets if d.workload["client_id"] == "bad"]
    assert [d.signature for d in onsets] == [Signature.RUNAWAY_PRODUCER] * 2
    assert 900 < onsets[0].ts <= 910 and 1800 < onsets[1].ts <= 1810
    assert all(d.workload["client_id"] == "bad" for d in dets)


def test_a_ramp_to_3x_over_5_minutes_is_caught_by_60s_after_it_reaches_3x() -> None:
    pipe = DetectorPipeline(clock=lambda: 0.0)
    bad = wl("t1", "ramp")
    series = {(bad, BYTES): lambda t: 1e6 * (1 + 2 * min(max(t - 900, 0) / 300, 1))}
    dets = feed(pipe, 0, 1400, series)
    assert len(dets) == 1 and 900 < dets[0].ts <= 900 + 300 + 60


def test_a_failover_inside_a_tenant_is_not_a_runaway() -> None:
    pipe = DetectorPipeline(clock=lambda: 0.0)
    a, b = wl("t2", "primary"), wl("t2", "standby")
    series = {(a, BYTES): lambda t: 0.0 if t >= 900 else 2e6, (b, BYTES): lambda t: 4e6 if t >= 900 else 2e6}
    assert feed(pipe, 0, 2400, series) == []


def test_clients_that_stopped_long_before_do_not_offset_a_new_clients_rise() -> None:
    # a tenant restarts its producer under a new client-id each time (the drill's repeats): the
    # stopped ones report 0 against a baseline that takes ~an hour to decay; they moved nothing
    pipe = DetectorPipeline(clock=lambda: 0.0)
    gone = {(wl("t2b", f"old-{k}"), BYTES): (lambda t: 2e5 if t < 600 else 0.0) for k in range(3)}
    new = wl("t2b", "new")
    dets = feed(pipe, 0, 1000, {**gone, (new, BYTES): lambda t: 1e6 if t >= 900 else 2e5})
    assert [d.workload["client_id"] for d in dets] == ["new"]
    assert dets[0].extra["tenant_excess_share"] > 0.9 and dets[0].confidence > 0.7


@pytest.mark.parametrize("gap_s", [0, 30])
def test_a_failover_after_the_primary_stopped_shortly_before_is_still_not_a_runaway(gap_s: int) -> None:
    pipe = DetectorPipeline(clock=lambda: 0.0)
    a, b = wl("t2c", "primary"), wl("t2c", "standby")
    series = {(a, BYTES): lambda t: 0.0 if t >= 900 - gap_s else 2e6, (b, BYTES): lambda t: 4e6 if t >= 900 else 2e6}
    assert feed(pipe, 0, 2400, series) == []


def test_cold_start_judges_a_new_workload_against_its_tenant_peers_from_the_start() -> None:
    pipe = DetectorPipeline(clock=lambda: 0.0)
    feed(pipe, 0, 600, peers("t3", 5, 1e6))
    newcomer, normal = wl("t3", "newcomer"), wl("t3", "normal-newcomer")
    series = {**peers("t3", 5, 1e6), (newcomer, BYTES): lambda t: 3e7, (normal, BYTES): lambda t: 1.2e6}
    dets = feed(pipe, 600, 700, series)
    assert [d.workload["client_id"] for d in dets] == ["newcomer"]
    assert dets[0].ts <= 610 and dets[0].extra["young"] is True
    assert dets[0].baseline < 2e6  # judged against the peers (1e6), not its own 3e7


def test_a_new_client_is_judged_against_established_peers_not_ones_first_seen_moments_before() -> None:
    """A tenant's clients all first seen in one scrape, at levels 300x apart: whether the scrape's
    samples arrive one at a time or together, no client is the others' normal, so nothing fires."""
    levels = {wl("t9", f"c{i}"): 1e4 * 3 ** i for i in range(6)}     # 10 kB/s .. 2.4 MB/s
    found = []
    for cut in (1, len(levels)):
        pipe = DetectorPipeline(clock=lambda: 0.0)
        rng = np.random.default_rng(1)
        dets = []
        for t in range(300):
            batch = [Sample(ts=float(t), workload=w, metric=BYTES, value=float(v * rng.lognormal(0, 0.05)))
                     for w, v in levels.items()]
            for i in range(0, len(batch), cut):
                dets.extend(pipe.process(batch[i:i + cut]))
        found.append(dets)
    assert found == [[], []]


def test_peers_younger_than_warm_n_samples_give_a_newcomer_no_prior() -> None:
    pipe = DetectorPipeline(clock=lambda: 0.0)
    feed(pipe, 0, 60, peers("t10", 3, 1e6))                     # 60 samples each: still young
    newcomer = wl("t10", "newcomer")
    feed(pipe, 60, 61, {**peers("t10", 3, 1e6), (newcomer, BYTES): lambda t: 3e7})
    table = pipe._tables[BYTES]
    assert table.detector.state.cols["base"][table.slot_of[newcomer]] > 2e7      # its own level


def test_a_newcomer_alarmed_against_its_peers_from_the_start_learns_its_own_level_when_warm() -> None:
    """Its alarm was against the tenant's prior, not a level of its own: once warm it stops being one
    long alarm, and a later runaway from its own level is a fresh detection against that level."""
    pipe = DetectorPipeline(clock=lambda: 0.0)
    feed(pipe, 0, 600, peers("t6", 5, 1e6))
    big = wl("t6", "big")
    dets = feed(pipe, 600, 1200, {**peers("t6", 5, 1e6), (big, BYTES): lambda t: 3e7 if t < 1000 else 1.5e8})
    assert [(d.extra["young"], d.ts < 610) for d in dets] == [(True, True), (False, False)]
    assert 1000 <= dets[1].ts <= 1010 and 2e7 < dets[1].baseline < 4e7   # 5x its own 3e7, not 150x the peers


def test_a_young_runaway_from_a_level_it_had_learned_stays_in_its_alarm_when_warm() -> None:
    pipe = DetectorPipeline(clock=lambda: 0.0)
    feed(pipe, 0, 600, peers("t7", 5, 1e6))
    late = wl("t7", "late")
    series = {**peers("t7", 5, 1e6), (late, BYTES): lambda t: 4e7 if t >= 660 else 1.2e6}
    dets = feed(pipe, 600, 900, series)
    assert [d.extra["young"] for d in dets] == [True]          # one alarm, 60 s after its start, kept
    det = pipe._tables[BYTES].detector
    assert det.state.cols["alarm"][pipe._tables[BYTES].slot_of[late]] == 1.0


def test_retry_storm_needs_requests_and_errors_up_with_smaller_requests() -> None:
    pipe = DetectorPipeline(clock=lambda: 0.0)
    w = wl("t4", "retrier")
    series = {
        (w, Metric.PRODUCE_BYTE_RATE): lambda t: 1e6,
        (w, Metric.PRODUCE_REQUEST_RATE): lambda t: 1200.0 if t >= 900 else 300.0,
        (w, Metric.ERROR_RATE): lambda t: 200.0 if t >= 900 else 1.0,
    }
    dets = feed(pipe, 0, 1000, series)
    assert {d.signature for d in dets} == {Signature.RETRY_STORM}
    assert len(dets) == 1
    assert dets[0].extra["bytes_per_request_ratio"] < 0.7


def test_a_detection_explains_itself() -> None:
    pipe = DetectorPipeline(clock=lambda: 0.0)
    w = wl("t5", "loud")
    [d] = feed(pipe, 0, 1000, {(w, BYTES): lambda t: 1e7 if t >= 900 else 1e6})
    assert d.metric == "produce_byte_rate" and d.ratio > 5 and d.observed > 5 * d.baseline
    assert d.duration_s >= 1 and len(d.evidence) == 8 and d.evidence[-1][0] == d.ts
    assert d.severity.rank >= 2 and 0 < d.confidence <= 1
    assert "runaway_producer" in d.explain() and Detection.from_dict(json.loads(json.dumps(d.to_dict()))) == d


def test_snapshot_and_restore_a_workload_moves_its_state() -> None:
    w = wl("t6", "moved")
    series = {(w, BYTES): lambda t: 5e6 if t >= 1000 else 1e6}
    a = DetectorPipeline(clock=lambda: 0.0)
    feed(a, 0, 900, series)
    state = json.loads(json.dumps(a.snapshot_workload(w)))
    b = DetectorPipeline(clock=lambda: 0.0)
    b.restore_workload(state)
    da, db = feed(a, 900, 1100, series), feed(b, 900, 1100, series)
    assert [d.to_dict() for d in da] == [d.to_dict() for d in db] and len(da) == 1


def test_missing_values_are_ignored() -> None:
    pipe = DetectorPipeline(clock=lambda: 0.0)
    w = wl("t7", "gappy")
    assert feed(pipe, 0, 600, {(w, BYTES): lambda t: float("nan") if t % 5 == 0 else 1e6}) == []


def test_idle_series_are_evicted() -> None:
    now = [0.0]
    pipe = DetectorPipeline(DetectorConfig(idle_evict_s=100), clock=lambda: now[0])
    feed(pipe, 0, 10, peers("t8", 3))
    now[0] = 500.0
    assert pipe.evict_idle() == 3 and pipe.tracked_series() == 0


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError):
        DetectorConfig.from_dict({"tiers": {"produce_byte_rate": {"hold": 3}}})
    with pytest.raises(ConfigError):
        DetectorConfig.from_dict({"thresholds": {}})
    cfg = DetectorConfig.from_dict({"tiers": {"produce_byte_rate": {"hold_s": 8}}})
    assert cfg.tiers[BYTES].hold_s == 8


def test_columnar_batches_give_the_same_detections_as_samples() -> None:
    from guardian.model.samples import SampleBatch

    w = wl("t9", "columnar")
    rng = np.random.default_rng(4)
    vals = 1e6 * rng.lognormal(0, 0.05, 1000) * np.where(np.arange(1000) >= 900, 4.0, 1.0)
    a, b = DetectorPipeline(clock=lambda: 0.0), DetectorPipeline(clock=lambda: 0.0)
    da, db = [], []
    for t in range(0, 1000, 10):  # one record per workload per 10 s
        samples = [Sample(ts=float(k), workload=w, metric=BYTES, value=float(vals[k])) for k in range(t, t + 10)]
        da += a.process(samples)
        db += b.process_batches([SampleBatch.of(samples)])
    assert len(da) == 1 and [d.to_dict() for d in da] == [d.to_dict() for d in db]


def _windowed(per_second: dict[int, float], t: float) -> float:
    """The broker's quota byte rate: bytes of the last 11 one-second windows over >= 10 s."""
    lo = int(t) - 10
    return sum(per_second.get(k, 0.0) for k in range(lo, int(t) + 1)) / max(t - lo, 10.0)


def test_a_rewinding_consumer_is_caught_within_8s_in_every_repeat_of_a_drill() -> None:
    # the incident drill's shape: 3 repeats 70 s apart, each a fresh client-id of one tenant that
    # reads 200 KB/s for 30 s, then re-reads a ~40 MB topic every 5 s, then stops (reports 0);
    # scraped every 1.3-1.8 s, 20 samples to warm up, so each new client is barely warm at onset
    rng = np.random.default_rng(7)
    cfg = DetectorConfig.from_dict({"tiers": {"fetch_byte_rate": {"warm_n": 20}}})
    pipe = DetectorPipeline(cfg, clock=lambda: 0.0)
    onsets = [30 + 70 * k for k in range(3)]
    per_client = []
    for k, onset in enumerate(onsets):
        b = {s: 2e5 * rng.uniform(0.9, 1.1) for s in range(onset - 26, onset)}   # joins ~4 s late
        b.update({s: 2e5 + (4e7 + 2e5 * s if (s - onset) % 5 == 0 else 0.0) for s in range(onset, onset + 30)})
        per_client.append((wl("t10", f"replay-r{k}"), b, onset - 26))
    first: dict[str, float] = {}
    t = 0.0
    while t < 210:
        batch = [Sample(ts=t, workload=w, metric=Metric.FETCH_BYTE_RATE, value=_windowed(b, t))
                 for w, b, start in per_client if t >= start]
        for d in pipe.process(batch):
            first.setdefault(d.workload["client_id"], d.ts)
        t += rng.uniform(1.3, 1.8)
    delays = [first[f"replay-r{k}"] - onset for k, onset in enumerate(onsets)]
    assert all(0 < d <= 8 for d in delays), delays


def test_a_snapshot_from_before_the_quiet_and_rise_columns_restores() -> None:
    w = wl("t11", "old-snapshot")
    a = DetectorPipeline(clock=lambda: 0.0)
    feed(a, 0, 600, {(w, BYTES): lambda t: 1e6})
    state = a.snapshot_workload(w)
    for series in state["series"].values():
        series.pop("quiet_ts"), series.pop("rise_ts")
    b = DetectorPipeline(clock=lambda: 0.0)
    b.restore_workload(state)
    dets = feed(b, 600, 700, {(w, BYTES): lambda t: 5e6 if t >= 650 else 1e6})
    assert len(dets) == 1 and dets[0].extra["tenant_excess_share"] > 0.9


def test_a_partition_share_of_the_pipeline_moves_and_scores_exactly_as_before() -> None:
    # two tenants; the one that moves has a peer, a runaway after the move, and its tenant sums
    moved = {(wl("t12", "a"), BYTES): lambda t: 5e6 if t >= 1000 else 1e6, (wl("t12", "b"), BYTES): lambda t: 2e6}
    stays = {(wl("t13", "c"), BYTES): lambda t: 3e6 if t >= 950 else 1e6}

    def run(pipe: DetectorPipeline, t0: int, t1: int, series: dict) -> list[Detection]:
        # each series' noise depends on the series and the second only, so split runs see the same values
        out = []
        for t in range(t0, t1):
            out += pipe.process([Sample(ts=float(t), workload=w, metric=m,
                                        value=fn(t) * random.Random(f"{w.key}|{t}").uniform(0.95, 1.05))
                                 for (w, m), fn in series.items()])
        return out

    a = DetectorPipeline(clock=lambda: 0.0)
    run(a, 0, 900, {**moved, **stays})
    select = lambda w: w.tenant == "t12"   # noqa: E731
    state = json.loads(json.dumps(a.snapshot_workloads(select)))
    b = DetectorPipeline(clock=lambda: 0.0)
    assert sorted(w.client_id for w in b.restore_workloads(state)) == ["a", "b"]
    assert a.forget_workloads(select) == 2 and a.tracked_series() == 1
    da, db = run(a, 900, 1100, stays), run(b, 900, 1100, moved)
    ref = DetectorPipeline(clock=lambda: 0.0)
    run(ref, 0, 900, {**moved, **stays})
    expected = run(ref, 900, 1100, {**moved, **stays})
    assert len(da) == 1 and len(db) == 1
    assert sorted([d.to_dict() for d in da + db], key=lambda d: d["ts"]) == [d.to_dict() for d in expected]


def test_a_snapshot_that_does_not_fit_is_refused_before_anything_changes() -> None:
    from guardian.errors import SnapshotError

    w = wl("t14", "x")
    a = DetectorPipeline(clock=lambda: 0.0)
    feed(a, 0, 200, {(w, BYTES): lambda t: 1e6})
    good = a.snapshot_workloads(lambda _: True)
    bad_metric = {**good, "tables": {**good["tables"], "no_such_metric": good["tables"]["produce_byte_rate"]}}
    bad_row = {**good, "tables": {"produce_byte_rate": good["tables"]["produce_byte_rate"] + [[{"nope": 1}, {}]]}}
    for state in (bad_metric, bad_row, {"tables": 3}):
        b = DetectorPipeline(clock=lambda: 0.0)
        with pytest.raises(SnapshotError):
            b.restore_workloads(state)
        assert b.tracked_series() == 0 and b.workloads() == []
