"""Could ``NoveltyDetector`` run in ``guardian run`` as a notify-only tier? Its cost and alert rate.

    python bench/bench_novelty.py            # ~3-5 min on one core

* throughput: samples/s of ``score_learn`` on one core (one call per tick, every series in it);
* memory: tracemalloc heap growth per series once its history ring (1,000 values) is full,
  projected to 50,000 series (a series' state is independent of the others', so it is linear);
* alert rate: onsets at or above the NAB-tuned threshold (0.55, ``OnsetFilter(100)``) per
  series-hour on benign client traffic at 1 s (1 MB/s, 20 % noise, 1.8x bursts of 20 s, 6 per
  hour: the fleet scenario's bursty group), i.e. what a notify-only tier would send.
"""

from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np


def benign(rng: np.random.Generator, n: int) -> np.ndarray:
    x = 1e6 * (1 + rng.normal(0, 0.2, n))
    for start in rng.integers(0, n - 20, size=max(n * 6 // 3600, 1)):
        x[start:start + 20] *= 1.8
    return np.maximum(x, 0.0)


def run(series: int = 100, steps: int = 1200, rate_series: int = 20, rate_steps: int = 7200,
        threshold: float = 0.55) -> dict[str, float]:
    from detectors.novelty import NoveltyDetector, OnsetFilter

    rng = np.random.default_rng(7)
    vals = np.stack([benign(rng, steps) for _ in range(series)], axis=1)
    slots = np.arange(series)
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    det = NoveltyDetector()
    for t in range(steps):
        det.score_learn(slots, np.full(series, float(t)), vals[t])
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename"))
    tracemalloc.stop()
    per_series = grown / series

    det = NoveltyDetector()
    t0 = time.process_time()
    for t in range(steps):
        det.score_learn(slots, np.full(series, float(t)), vals[t])
    rate = series * steps / (time.process_time() - t0)

    det = NoveltyDetector()
    filters = [OnsetFilter(100) for _ in range(rate_series)]
    vals = np.stack([benign(rng, rate_steps) for _ in range(rate_series)], axis=1)
    slots = np.arange(rate_series)
    alerts = 0
    warm = 120  # as the fast tier, a series' first two minutes are not judged
    for t in range(rate_steps):
        scores = det.score_learn(slots, np.full(rate_series, float(t)), vals[t])
        for f, s in zip(filters, scores.tolist()):
            if f.step(s) >= threshold and t >= warm:
                alerts += 1
    hours = rate_series * (rate_steps - warm) / 3600
    return {"samples_per_s_one_core": round(rate), "bytes_per_series_measured": round(per_series),
            "bytes_per_series_declared": det.bytes_per_series,
            "projected_gib_at_50000_series": round(per_series * 50_000 / 2**30, 2),
            "cores_for_50000_series_at_1_sample_per_s": round(50_000 / rate, 1),
            "alerts_per_series_hour": round(alerts / hours, 2), "alerts": alerts, "series_hours": round(hours, 1)}


if __name__ == "__main__":
    print(json.dumps(run()))
