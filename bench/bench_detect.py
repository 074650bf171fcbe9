"""Benchmark: detector pipeline throughput on one core across many workloads, and memory per series.

Feeds ``steps`` ticks of one sample per workload for two metrics (produce bytes
and requests) through ``DetectorPipeline``:

* ``samples_per_s``: through ``process(samples)``, the stream processor's entry
  point, with ``Sample`` objects built beforehand (decoding is ingestion's cost);
* ``samples_per_s_batches``: through ``process_batches`` (columnar ``SampleBatch`` per workload);
* ``samples_per_s_arrays``: through ``process_arrays`` (slots already resolved);
* ``bytes_per_series``: Python heap growth (tracemalloc) per tracked series after
  the first tick, i.e. state arrays plus the key-to-slot maps, excluding the
  ``Workload`` objects the caller already holds;
* ``state_bytes_per_series``: the fast tier's declared bounded state.

    guardian-dev bench detect --json        # or: python bench/bench_detect.py
"""

from __future__ import annotations

import gc
import json
import os
import time
import tracemalloc
from typing import Any

import numpy as np


def _one_core() -> None:
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass


def run_bench(workloads: int = 100_000, steps: int = 20, seed: int = 0) -> dict[str, Any]:
    from guardian.detectors.pipeline import DetectorPipeline
    from guardian.model.samples import Metric, Sample, Workload

    _one_core()
    rng = np.random.default_rng(seed)
    metrics = (Metric.PRODUCE_BYTE_RATE, Metric.PRODUCE_REQUEST_RATE)
    bases = {Metric.PRODUCE_BYTE_RATE: 1e6, Metric.PRODUCE_REQUEST_RATE: 300.0}
    wls = [Workload(principal=f"User:tenant-{i % 50}", client_id=f"client-{i}") for i in range(workloads)]

    # -- Sample path ------------------------------------------------------------------
    pipe = DetectorPipeline(clock=lambda: 0.0)
    tracemalloc.start()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    first = [Sample(ts=0.0, workload=w, metric=m, value=bases[m]) for w in wls for m in metrics]
    sample_bytes = tracemalloc.get_traced_memory()[0] - before
    pipe.process(first)
    del first
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    series = pipe.tracked_series()
    bytes_per_series = max(grown, 0) / series

    elapsed = 0.0
    n_samples = 0
    detections = 0
    for step in range(1, steps + 1):
        noise = rng.lognormal(0.0, 0.1, (len(metrics), workloads))
        # one record per workload carries all its metrics, as the sources publish them
        batch = [Sample(ts=float(step), workload=w, metric=m, value=bases[m] * float(noise[mi, i]))
                 for i, w in enumerate(wls) for mi, m in enumerate(metrics)]
        t0 = time.perf_counter()
        detections += len(pipe.process(batch))
        elapsed += time.perf_counter() - t0
        n_samples += len(batch)
        del batch

    # -- columnar batch path (one SampleBatch per workload, as ingestion delivers) ------
    from guardian.model.samples import SampleBatch

    bpipe = DetectorPipeline(clock=lambda: 0.0)
    b_elapsed = 0.0
    b_samples = 0
    for step in range(steps + 1):
        noise = rng.lognormal(0.0, 0.1, (len(metrics), workloads))
        batches = [SampleBatch(workload=w, metrics=metrics, ts=(float(step),) * len(metrics),
                               values=tuple(bases[m] * float(noise[mi, i]) for mi, m in enumerate(metrics)))
                   for i, w in enumerate(wls)]
        t0 = time.perf_counter()
        bpipe.process_batches(batches)
        if step:
            b_elapsed += time.perf_counter() - t0
            b_samples += workloads * len(metrics)
        del batches

    # -- array path ---------------------------------------------------------------------
    apipe = DetectorPipeline(clock=lambda: 0.0)
    slots = {m: np.array([apipe.slot(w, m) for w in wls], dtype=np.int64) for m in metrics}
    a_elapsed = 0.0
    a_samples = 0
    for step in range(steps + 1):
        noise = rng.lognormal(0.0, 0.1, (len(metrics), workloads))
        ts = np.full(workloads, float(step))
        t0 = time.perf_counter()
        for mi, m in enumerate(metrics):
            apipe.process_arrays(m, slots[m], ts, bases[m] * noise[mi])
        if step:  # the first tick allocates
            a_elapsed += time.perf_counter() - t0
            a_samples += workloads * len(metrics)

    tier = pipe._tables[Metric.PRODUCE_BYTE_RATE].detector
    return {
        "samples_per_s": round(n_samples / elapsed),
        "samples_per_s_batches": round(b_samples / b_elapsed),
        "samples_per_s_arrays": round(a_samples / a_elapsed),
        "bytes_per_series": round(bytes_per_series),
        "state_bytes_per_series": tier.bytes_per_series,
        "workloads": workloads,
        "series": series,
        "samples": n_samples,
        "detections": detections,
        "sample_object_bytes": round(sample_bytes / max(series, 1)),
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


if __name__ == "__main__":
    print(json.dumps(run_bench()))
