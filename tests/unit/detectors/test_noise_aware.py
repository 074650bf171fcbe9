"""The sustained-rise test scales with each series' own noise: bursty benign traffic stays quiet,
a 3x step still fires within 10 s on a quiet and on a noisy series, and a daily cycle does not
bias the baseline (its trend is followed)."""

from __future__ import annotations

import numpy as np
import pytest

from guardian.detectors.config import DEFAULT_TIERS
from guardian.detectors.fast import FastTierDetector
from guardian.model.samples import Metric

DAY = 86_400.0
PARAMS = DEFAULT_TIERS[Metric.PRODUCE_BYTE_RATE]


def run(levels: np.ndarray, noise: float | np.ndarray, seed: int) -> list[tuple[int, int]]:
    """levels: (seconds, series) true levels; returns (second, series) of every onset."""
    det = FastTierDetector(PARAMS, capacity=levels.shape[1])
    rng = np.random.default_rng(seed)
    values = levels * rng.lognormal(0.0, noise, levels.shape)
    slots = np.arange(levels.shape[1])
    out = []
    for i, row in enumerate(values):
        step = det.step(slots, np.full(len(slots), float(i)), row)
        out.extend((i, int(j)) for j in np.nonzero(step.onset)[0])
    return out


def diurnal(seconds: int, n: int, seed: int, amplitude: float = 0.4, base: float = 5e5) -> np.ndarray:
    t = np.arange(seconds, dtype=np.float64)[:, None]
    phase = np.random.default_rng(seed).uniform(0, DAY, n)[None, :]
    return base * (1.0 + amplitude * np.sin(2 * np.pi * (t + phase) / DAY))


def test_noisy_bursty_benign_series_do_not_alarm() -> None:
    # 25 % per-second noise, a daily cycle, and a benign 1.8x burst of 20 s every 2 minutes on each
    seconds, n = 7200, 40
    levels = diurnal(seconds, n, seed=3)
    rng = np.random.default_rng(4)
    starts = rng.integers(0, 120, n)
    t = np.arange(seconds)[:, None]
    in_burst = ((t - starts[None, :]) % 120) < 20
    levels = np.where((t >= 1800) & in_burst, 1.8 * levels, levels)   # bursts after a 30 min warm-up
    assert run(levels, noise=0.25, seed=5) == []


NOISES = (0.05, 0.15, 0.25)


@pytest.fixture(scope="module")
def step_ttd() -> dict[float, list[int]]:
    """Seconds from a 3x step (after 2 h of a daily cycle) to each series' first onset, per noise level."""
    seconds, at, n = 7800, 7200, 20
    levels = diurnal(seconds, n * len(NOISES), seed=6)
    levels[at:] *= 3.0
    noise = np.repeat(NOISES, n)[None, :]
    onsets = run(levels, noise=noise, seed=7)
    assert all(i >= at for i, _ in onsets)                       # nothing before the step
    first = {j: i - at for i, j in sorted(onsets, reverse=True)}
    assert sorted(first) == list(range(n * len(NOISES)))         # every series fires
    return {x: sorted(first[j] for j in range(k * n, (k + 1) * n)) for k, x in enumerate(NOISES)}


def test_a_3x_step_fires_within_10s_on_a_quiet_series(step_ttd) -> None:
    assert max(step_ttd[0.05]) <= 10


@pytest.mark.parametrize("noise", [0.15, 0.25])
def test_a_3x_step_on_a_noisy_series_fires_mostly_within_10s(step_ttd, noise: float) -> None:
    # noisier series need more evidence (the price of not alarming on their bursts): at 15 % noise
    # nearly all, at 25 % most 3x steps fire within 10 s, and none takes long
    ttd = step_ttd[noise]
    within = sum(x <= 10 for x in ttd) / len(ttd)
    assert within >= (0.85 if noise <= 0.15 else 0.6)
    assert max(ttd) <= 45


def test_a_daily_cycle_does_not_lag_the_baseline() -> None:
    # at the steepest rise of a +-40 % daily cycle the baseline stays within a few percent of the level
    t = np.arange(0.0, DAY / 2, 10.0)   # 10 s resolution: the EWMAs use the time between samples
    level = 1e6 * (1.0 + 0.4 * np.sin(2 * np.pi * (t - DAY / 4) / DAY))   # trough at 0, steepest at DAY/4
    det = FastTierDetector(PARAMS, capacity=1)
    ratios = [float(det.step([0], [ti], [v]).ratio[0]) for ti, v in zip(t, level)]
    steep = ratios[int(DAY / 40) - 60: int(DAY / 40) + 60]
    assert max(abs(r - 1.0) for r in steep) < 0.05
