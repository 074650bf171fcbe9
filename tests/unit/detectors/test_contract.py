"""One contract suite run against every detector in the package."""

from __future__ import annotations

import json
from typing import Callable

import numpy as np
import pytest

from detectors.base import Detector
from detectors.fast import FastTierDetector, TierParams

FACTORIES: dict[str, Callable[[int], Detector]] = {
    "fast_tier": lambda seed: FastTierDetector(TierParams(min_excess=5.0), seed=seed),
}


def trace(seed: int, n: int, slots: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Noisy diurnal-ish series per slot with a late 4x step on slot 0."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    vals = 100 + 20 * np.sin(2 * np.pi * t / 300)[:, None] + rng.normal(0, 5, (n, slots))
    vals[int(n * 0.8):, 0] *= 4
    return t, vals


def run(det: Detector, t: np.ndarray, vals: np.ndarray) -> np.ndarray:
    slots = np.arange(vals.shape[1])
    return np.array([det.score_learn(slots, np.full(len(slots), ti), row) for ti, row in zip(t, vals)])


@pytest.fixture(params=sorted(FACTORIES))
def factory(request) -> Callable[[int], Detector]:
    return FACTORIES[request.param]


def test_deterministic_with_a_seed(factory) -> None:
    t, vals = trace(1, 600)
    a = run(factory(7), t, vals)
    b = run(factory(7), t, vals)
    np.testing.assert_array_equal(a, b)


def test_scores_are_in_unit_interval_and_the_step_is_seen(factory) -> None:
    t, vals = trace(2, 800)
    scores = run(factory(0), t, vals)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores[640:, 0].max() > scores[300:640, 0].max()


def test_snapshot_then_restore_gives_identical_scores(factory) -> None:
    t, vals = trace(3, 700)
    original = factory(0)
    run(original, t[:500], vals[:500])
    snaps = {s: json.loads(json.dumps(original.snapshot(s))) for s in range(vals.shape[1])}
    restored = factory(0)
    for s, snap in snaps.items():
        restored.restore(s, snap)
    np.testing.assert_array_equal(run(original, t[500:], vals[500:]), run(restored, t[500:], vals[500:]))


def test_score_does_not_change_state(factory) -> None:
    t, vals = trace(4, 300)
    det = factory(0)
    run(det, t, vals)
    before = json.dumps(det.snapshot(0))
    det.score([0], [300.0], [1e9])
    assert json.dumps(det.snapshot(0)) == before


def test_missing_and_nan_inputs_do_not_crash_or_poison(factory) -> None:
    det = factory(0)
    t, vals = trace(5, 300)
    vals[::7, 1] = np.nan
    vals[::11, 2] = np.inf
    vals[:5, 0] = np.nan  # a series whose first samples are missing
    scores = run(det, t, vals)
    assert np.all(np.isfinite(scores))
    assert np.all(scores[::7, 1] == 0.0)
    after = det.score_learn([0, 1, 2], [300.0] * 3, [100.0, 100.0, 100.0])
    assert np.all(np.isfinite(after))


def test_memory_per_series_is_bounded(factory) -> None:
    det = factory(0)
    rng = np.random.default_rng(6)
    sizes = []
    for chunk in range(4):
        for i in range(600):
            det.score_learn([0], [chunk * 600 + i], [float(rng.lognormal(3, 1))])
        sizes.append(len(json.dumps(det.snapshot(0))))
    # state stops growing once its rings and tables are full, and stays under the declared bound
    assert sizes[-1] <= sizes[-2] * 1.05
    assert sizes[-1] <= 4 * det.bytes_per_series + 1024
