"""Several stream-processor workers find what one finds: the same recorded input, 1 and 3 workers.

The recorded input is what the collectors publish for 3 brokers: tenants with several clients,
each client's traffic split over the brokers, one tenant launching a new client far above its
peers' normal, and runaways. Records are keyed as the publisher keys them and partitioned as
librdkafka's default partitioner does (CRC32 of the key); each worker runs its own processor and
detector stage over the partitions it owns, in offset order. The detections must be the same.
"""

from __future__ import annotations

import random
import zlib
from typing import Callable

from guardian.ingest.codec import encode_batch, group_samples
from guardian.ingest.processor import MetricsProcessor
from guardian.ingest.stage import build_stage
from guardian.model.samples import Metric, Sample, Workload
from guardian.settings import GuardianSettings

PARTITIONS = 6
BROKERS = ("b1", "b2", "b3")
T0 = 1_795_000_000.0


def recorded_input(seed: int = 3) -> list[list[Sample]]:
    """One list of samples per scrape second, as the three brokers' scrapers would publish them."""
    rng = random.Random(seed)
    clients = [(f"User:tenant-{t}", f"app-{c}", rng.uniform(50_000, 400_000)) for t in range(7) for c in range(3)]
    launch = ("User:tenant-2", "app-new", 5_000_000.0)   # appears at t=150, ~20x its peers' normal
    runaways = {("User:tenant-5", "app-1"): 20.0, ("User:tenant-6", "app-0"): 20.0}
    scrapes = []
    for t in range(260):
        out = []
        for principal, cid, rate in clients + ([launch] if t >= 150 else []):
            r = rate * (runaways.get((principal, cid), 1.0) if t >= 200 else 1.0) * rng.uniform(0.9, 1.1)
            weights = [rng.uniform(0.8, 1.2) for _ in BROKERS]
            for i, b in enumerate(BROKERS):
                w = Workload(principal=principal, client_id=cid, broker=b)
                out.append(Sample(T0 + t + 0.05 * i, w, Metric.PRODUCE_BYTE_RATE, r * weights[i] / sum(weights),
                                  source="prometheus"))
        for i, b in enumerate(BROKERS):
            out.append(Sample(T0 + t + 0.05 * i, Workload(broker=b), Metric.REQUEST_HANDLER_IDLE, 0.8, source="prometheus"))
        scrapes.append(out)
    return scrapes


def records(scrapes: list[list[Sample]], key_of: Callable[[Workload], str]) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) in publish order."""
    out = []
    for samples in scrapes:
        for batch in group_samples(samples):
            key = key_of(batch.workload).encode()
            out.append((zlib.crc32(key) % PARTITIONS, key, encode_batch(batch)))
    return out


def detect(recs: list[tuple[int, bytes, bytes]], workers: int) -> set[tuple]:
    settings = GuardianSettings()
    processors = [MetricsProcessor(build_stage(settings)) for _ in range(workers)]
    offsets = [0] * PARTITIONS
    found = set()
    for partition, key, value in recs:
        out = processors[partition % workers].handle(value, key, "guardian.metrics", partition, offsets[partition])
        offsets[partition] += 1
        assert not out.dead_letters, out.dead_letters
        for d in out.detections:
            found.add((tuple(sorted(d.workload.items())), d.signature.value, d.id, round(d.ts, 3),
                       round(d.ratio, 3), round(d.baseline, 1)))
    return found


def test_three_workers_find_exactly_what_one_worker_finds() -> None:
    recs = records(recorded_input(), lambda w: w.partition_key)
    one, three = detect(recs, 1), detect(recs, 3)
    assert one, "the runaways must be found"
    runaways = {dict(d[0]).get("client_id") for d in one if dict(d[0]).get("principal") in
                ("User:tenant-5", "User:tenant-6")}
    assert {"app-1", "app-0"} <= runaways
    assert any(dict(d[0]) == {"principal": "User:tenant-2", "client_id": "app-new"} for d in one), \
        "the launch far above its peers' normal is judged against them"
    assert three == one


def test_keyed_by_workload_the_workers_would_disagree() -> None:
    # why the key is the tenant: keyed by the narrowest identity, each worker holds part of a
    # tenant, so a new client's prior (its tenant's peers) and what it is compared with differ
    recs = records(recorded_input(), lambda w: w.key)
    assert detect(recs, 3) != detect(recs, 1)


def test_the_standalone_worker_takes_one_stage_and_builds_the_detectors_as_guardian_run_does() -> None:
    import pytest

    from guardian.errors import ConfigError
    from guardian.ingest.stage import DetectorStage
    from guardian.ingest.worker import _detector_stage, main

    with pytest.raises(ConfigError, match="two different stages"):
        main(["--detectors", "--limit", "produce_byte_rate=0"])
    alone = GuardianSettings(view={"enabled": False}, state={"enabled": False})
    stage, state, close = _detector_stage(alone, "w1")
    assert isinstance(stage, DetectorStage) and state is None and stage.view is None
    assert stage.traffic is not None and stage.pressure is not None and stage.rates is not None
    close()
    # as shipped: its part of the shared view published and its state saved in the ledger's Redis
    # (clients connect on first use: nothing is contacted here)
    shipped = GuardianSettings(redis={"url": "redis://127.0.0.1:1/0"})
    stage, state, close = _detector_stage(shipped, "w1")
    assert stage.view is not None and stage.view.worker == "w1" and state is not None and state.stage is stage
    close()
    with pytest.raises(ConfigError, match="no Redis configured"):
        _detector_stage(GuardianSettings(redis={"url": ""}), "w1")
