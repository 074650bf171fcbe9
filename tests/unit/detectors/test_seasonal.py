"""The daily profile learns a per-series time-of-day shape and says when it can be trusted."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

import guardian.detectors.seasonal as seasonal_module
from guardian.detectors.config import DetectorConfig
from guardian.detectors.fast import FastTierDetector, TierParams
from guardian.detectors.pipeline import DetectorPipeline
from guardian.detectors.seasonal import DAY, DailyProfile, SeasonalParams
from guardian.model.samples import Metric, Sample, Workload
from guardian.testing import DETECTOR_CHECKS

RES = 10.0  # seconds between samples in these traces (the profile's bins are 30 minutes wide)


def cycle(t: np.ndarray, phases: np.ndarray, base: float = 1000.0) -> np.ndarray:
    """Noise-free daily cycle, peak 1.5 x base and trough 0.5 x base: 3x between them."""
    return base * (1.0 + 0.5 * np.sin(2 * np.pi * (t[:, None] + phases[None, :]) / DAY))


def feed(prof: DailyProfile, t: np.ndarray, values: np.ndarray, frozen: np.ndarray | None = None) -> None:
    slots = np.arange(values.shape[1])
    for i, ti in enumerate(t):
        prof.observe(slots, np.full(len(slots), ti), values[i], None if frozen is None else frozen[i])


def noisy(seed: int, t: np.ndarray, phases: np.ndarray, sd: float = 0.15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cycle(t, phases) * rng.lognormal(0.0, sd, (len(t), len(phases)))


def test_module_docstring_example_runs() -> None:
    result = doctest.testmod(seasonal_module)
    assert result.attempted > 0 and result.failed == 0


def test_profile_tracks_a_3x_daily_cycle_within_15_percent_after_two_days() -> None:
    phases = np.linspace(0, DAY, 8, endpoint=False)
    t = np.arange(0.0, 2 * DAY, RES)
    prof = DailyProfile()
    feed(prof, t, noisy(1, t, phases))
    # day 3, every 5 minutes, without further learning: the profile alone predicts the level
    t3 = np.arange(2 * DAY, 3 * DAY, 300.0)
    truth = cycle(t3, phases)
    worst = 0.0
    for i, ti in enumerate(t3):
        exp, ready = prof.expected(np.arange(len(phases)), np.full(len(phases), ti))
        assert ready.all()
        worst = max(worst, float(np.max(np.abs(exp / truth[i] - 1.0))))
    assert worst < 0.15, worst
    # the daily swing itself is learned (peak over trough of the profile close to 3)
    exp0 = np.array([prof.expected([0], [ti])[0][0] for ti in t3])
    assert 2.5 < exp0.max() / exp0.min() < 3.5


def test_not_ready_before_two_full_days_nor_with_unseen_hours() -> None:
    phases = np.array([0.0, 0.0])
    t = np.arange(0.0, 2 * DAY + 3600, 60.0)
    vals = noisy(2, t, phases)
    vals[(t % DAY) < 6 * 3600, 1] = np.nan   # series 1 never reports between 00:00 and 06:00
    prof = DailyProfile()
    readiness = []
    for i, ti in enumerate(t):
        prof.observe([0, 1], [ti, ti], vals[i])
        readiness.append(prof.expected([0, 1], [ti, ti])[1])
    readiness = np.array(readiness)
    before = t - t[0] < 2 * DAY
    assert not readiness[before].any()
    assert readiness[~before, 0].all()
    assert not readiness[:, 1].any()
    level, ready = prof.expected([1], [t[-1]])
    assert not ready[0] and np.isnan(level[0])


def test_a_3x_step_at_the_trough_is_3x_the_expected_level() -> None:
    phases = np.zeros(4)
    t = np.arange(0.0, 3 * DAY, RES)
    prof = DailyProfile()
    feed(prof, t, noisy(3, t, phases, sd=0.1))
    trough = 3 * DAY + 0.75 * DAY          # sin(3 pi / 2) = -1: the daily minimum
    runaway = 3.0 * cycle(np.array([trough]), phases)[0]
    exp, ready = prof.expected(np.arange(4), np.full(4, trough))
    assert ready.all()
    ratio = runaway / exp
    assert np.all((ratio > 2.6) & (ratio < 3.4)), ratio
    # the same value at the peak is what the series does every day, not 3x anything
    peak = 3 * DAY + 0.25 * DAY
    exp_peak, _ = prof.expected(np.arange(4), np.full(4, peak))
    assert np.all(np.abs(runaway / exp_peak - 1.0) < 0.15)


def test_learning_is_frozen_while_in_alarm() -> None:
    phases = np.zeros(2)
    t = np.arange(0.0, 2 * DAY, 60.0)
    vals = noisy(4, t, phases, sd=0.05)
    prof = DailyProfile()
    feed(prof, t, vals)
    before = [prof.snapshot(s) for s in (0, 1)]
    # six hours of a 5x runaway: series 0 is in alarm (frozen), series 1 is not
    t_run = np.arange(2 * DAY, 2 * DAY + 6 * 3600, 60.0)
    run = 5.0 * cycle(t_run, phases)
    frozen = np.zeros(run.shape, dtype=bool)
    frozen[:, 0] = True
    feed(prof, t_run, run, frozen)
    assert prof.snapshot(0)["mean"] == before[0]["mean"]
    assert prof.snapshot(1)["mean"] != before[1]["mean"]


def test_one_spike_moves_a_bin_by_at_most_the_clip() -> None:
    prof = DailyProfile(SeasonalParams(clip_log=1.0))
    t = np.arange(0.0, 3600.0, 1.0)
    for ti in t:
        prof.observe([0], [ti], [100.0])
    m_before = prof.snapshot(0)["mean"][1]
    prof.observe([0], [3600.0], [1e12])   # bin 1 (00:30-01:00) already holds 30 minutes of data
    assert prof.snapshot(0)["mean"][1] - m_before <= 1.0 / 1800 + 1e-6


def test_snapshot_then_restore_is_the_identity() -> None:
    phases = np.array([0.0, 3600.0, 7200.0])
    t = np.arange(0.0, 2.2 * DAY, 60.0)
    vals = noisy(5, t, phases)
    original = DailyProfile()
    feed(original, t[: len(t) // 2], vals[: len(t) // 2])
    restored = DailyProfile(capacity=2)   # smaller: restore grows it
    for s in range(3):
        restored.restore(s, json.loads(json.dumps(original.snapshot(s))))
        assert restored.snapshot(s) == original.snapshot(s)
    feed(original, t[len(t) // 2:], vals[len(t) // 2:])
    feed(restored, t[len(t) // 2:], vals[len(t) // 2:])
    probe = np.full(3, 2.2 * DAY + 100.0)
    a, ra = original.expected(np.arange(3), probe)
    b, rb = restored.expected(np.arange(3), probe)
    assert ra.all()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ra, rb)


def test_restore_rejects_a_snapshot_with_other_bins() -> None:
    from guardian.errors import PermanentError

    prof = DailyProfile(bins=24)
    prof.observe([0], [0.0], [5.0])
    with pytest.raises(PermanentError):
        DailyProfile(bins=48).restore(0, prof.snapshot(0))


def test_nan_and_infinite_inputs_neither_crash_nor_poison() -> None:
    phases = np.zeros(3)
    t = np.arange(0.0, 2.1 * DAY, 60.0)
    vals = noisy(6, t, phases)
    vals[::7, 0] = np.nan
    vals[::11, 1] = np.inf
    vals[:50, 2] = -np.inf
    prof = DailyProfile()
    feed(prof, t, vals)
    prof.observe([0], [np.nan], [10.0])       # a sample without a time
    exp, ready = prof.expected([0, 1, 2], np.full(3, t[-1]))
    assert ready[[0, 2]].all() and np.isfinite(exp[[0, 2]]).all()
    # series 1 saw +inf, which is ignored like NaN, so it is as good as the others
    assert ready[1] and np.isfinite(exp[1])
    exp_nan_t, ready_nan_t = prof.expected([0], [np.nan])
    assert not ready_nan_t[0] and np.isnan(exp_nan_t[0])
    assert np.isfinite(np.array(prof.snapshot(0)["mean"])).all()


def test_memory_per_series_is_fixed_whatever_the_history() -> None:
    prof = DailyProfile(capacity=4)
    reported = prof.bytes_per_series
    arrays = (prof._mean, prof._weight, prof._first, prof._last, prof._seen)
    assert reported == sum(a.nbytes for a in arrays) // prof.capacity
    assert reported <= 48 * 8 + 3 * 8
    t = np.arange(0.0, 4 * DAY, 300.0)
    feed(prof, t, noisy(7, t, np.zeros(4)))
    assert prof.bytes_per_series == reported
    assert prof.capacity == 4
    prof.observe([1000], [0.0], [1.0])        # a new slot grows every column together
    assert prof.capacity >= 1001
    arrays = (prof._mean, prof._weight, prof._first, prof._last, prof._seen)
    assert sum(a.nbytes for a in arrays) == prof.bytes_per_series * prof.capacity


def test_reset_forgets_a_series() -> None:
    t = np.arange(0.0, 2.1 * DAY, 300.0)
    prof = DailyProfile()
    feed(prof, t, noisy(8, t, np.zeros(2)))
    prof.reset([0])
    assert json.dumps(prof.snapshot(0)) == json.dumps(DailyProfile().snapshot(0))
    assert not prof.expected([0], [t[-1]])[1][0]
    assert prof.expected([1], [t[-1]])[1][0]


def test_baseline_is_the_larger_of_short_and_seasonal_where_ready() -> None:
    t = np.arange(0.0, 2.1 * DAY, 60.0)
    prof = DailyProfile()
    feed(prof, t, cycle(t, np.zeros(1)))
    probe = 2.1 * DAY
    level, ready = prof.expected([0], [probe])
    assert ready[0]
    low, high = 0.5 * level[0], 2.0 * level[0]
    base, ready2 = prof.baseline([0, 0], [probe, probe], [low, high])
    np.testing.assert_allclose(base, [level[0], high])
    # not ready (a slot with no history): the short-term baseline is kept, NaN included
    base, ready3 = prof.baseline([1, 1], [probe, probe], [123.0, np.nan])
    assert not ready3.any() and base[0] == 123.0 and np.isnan(base[1])


def test_deterministic() -> None:
    t = np.arange(0.0, 2.1 * DAY, 120.0)
    vals = noisy(9, t, np.array([0.0, 5000.0]))
    a, b = DailyProfile(), DailyProfile()
    feed(a, t, vals)
    feed(b, t, vals)
    assert a.snapshot(0) == b.snapshot(0) and a.snapshot(1) == b.snapshot(1)


# -- the fast tier with seasonality on ---------------------------------------------------------


def run_tier(det: FastTierDetector, t: np.ndarray, values: np.ndarray):
    slots = np.arange(values.shape[1])
    onsets, bases, profile = [], [], []
    for i, ti in enumerate(t):
        ts = np.full(len(slots), ti)
        if det.seasonal is not None:
            profile.append(det.seasonal.expected(slots, ts)[0])
        step = det.step(slots, ts, values[i])
        onsets.append(step.onset)
        bases.append(step.base)
    return np.array(onsets), np.array(bases), np.array(profile)


def test_fast_tier_uses_the_profile_once_ready_and_still_catches_a_trough_step() -> None:
    phases = np.zeros(3)
    t = np.arange(0.0, 2.8 * DAY, 5.0)
    vals = noisy(10, t, phases, sd=0.1)
    trough = 2 * DAY + 0.75 * DAY
    vals[t >= trough, 0] *= 3.0          # series 0 runs away at its daily minimum
    det = FastTierDetector(TierParams(min_excess=10.0, seasonal=True))
    onsets, bases, profile = run_tier(det, t, vals)
    before = t < trough
    assert not onsets[before].any()                      # three days of a 3x cycle raise nothing
    first = t[onsets[:, 0]]
    assert len(first) and first[0] - trough <= 10.0      # the 3x step within 10 s
    assert not onsets[:, 1:].any()
    # once ready, the baseline the ratio tests use is never below this time of day's profile
    ready = np.isfinite(profile[:, 1])
    assert ready.any() and not ready[t < 2 * DAY].any()
    assert np.all(bases[ready, 1] >= profile[ready, 1])
    assert np.any(bases[ready, 1] == profile[ready, 1])


def test_fast_tier_snapshot_carries_the_profile_and_memory_counts_it() -> None:
    t = np.arange(0.0, 2.1 * DAY, 60.0)
    vals = noisy(11, t, np.zeros(2))
    det = FastTierDetector(TierParams(min_excess=10.0, seasonal=True))
    run_tier(det, t, vals)
    plain = FastTierDetector(TierParams(min_excess=10.0))
    assert det.bytes_per_series == plain.bytes_per_series + det.seasonal.bytes_per_series
    other = FastTierDetector(TierParams(min_excess=10.0, seasonal=True))
    for s in (0, 1):
        other.restore(s, json.loads(json.dumps(det.snapshot(s))))
    t2 = np.arange(2.1 * DAY, 2.2 * DAY, 60.0)
    v2 = noisy(12, t2, np.zeros(2))
    a, b = run_tier(det, t2, v2), run_tier(other, t2, v2)
    np.testing.assert_array_equal(a[1], b[1])
    assert json.dumps(det.snapshot(0)) == json.dumps(other.snapshot(0))


def test_pipeline_moves_the_profile_with_the_workload_and_evicts_it() -> None:
    tiers = dict(DetectorConfig().tiers)
    tiers[Metric.PRODUCE_BYTE_RATE] = TierParams(floor=10_000, min_excess=100_000, seasonal=True)
    config = DetectorConfig(tiers=tiers)
    now = [0.0]
    pipe = DetectorPipeline(config, clock=lambda: now[0])
    w = Workload(principal="User:tenant-a", client_id="diurnal")
    t = np.arange(0.0, 2.1 * DAY, 60.0)
    vals = noisy(13, t, np.zeros(1))[:, 0] * 1000
    assert pipe.process(Sample(ts=float(ti), workload=w, metric=Metric.PRODUCE_BYTE_RATE, value=float(v))
                        for ti, v in zip(t, vals)) == []
    state = json.loads(json.dumps(pipe.snapshot_workload(w)))
    assert len(state["series"]["produce_byte_rate"]["seasonal"]["mean"]) == 48
    other = DetectorPipeline(config, clock=lambda: now[0])
    other.restore_workload(state)
    slot = other.slot(w, Metric.PRODUCE_BYTE_RATE)
    prof = other._tables[Metric.PRODUCE_BYTE_RATE].detector.seasonal
    assert prof.expected([slot], [t[-1]])[1][0]
    now[0] = t[-1] + config.idle_evict_s + 1
    assert other.evict_idle() == 1
    assert not prof.expected([slot], [t[-1]])[1][0]


def _seasonal_tier(seed: int) -> FastTierDetector:
    """A seasonal fast tier whose 3 slots already hold 2.1 days of history, so the profile is ready at t >= 0."""
    det = FastTierDetector(TierParams(min_excess=5.0, seasonal=True), seed=seed)
    rng = np.random.default_rng(seed)
    for ti in np.arange(-2.1 * DAY, 0.0, 60.0):
        det.learn(np.arange(3), np.full(3, ti), 100.0 + rng.normal(0, 5, 3))
    assert det.seasonal.expected([0], [0.0])[1][0]
    return det


@pytest.mark.parametrize("check", DETECTOR_CHECKS, ids=lambda c: c.__name__.removeprefix("check_detector_"))
def test_the_detector_contract_holds_with_a_ready_profile(check) -> None:
    check(_seasonal_tier)
