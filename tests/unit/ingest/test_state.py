"""Detector state per stream partition: a restored stage scores as if it had never stopped.

The input is what the collectors publish for 3 brokers: six tenants of three clients each, every
client split over the brokers, one runaway that starts before the worker stops (its episode must
go on being re-emitted with the same id) and one that starts after. Records are keyed and
partitioned as in production (tenant key, CRC32 of it); each worker runs the processor, the real
``DetectorStage`` and a ``PartitionStateKeeper`` over the partitions it owns.
"""

from __future__ import annotations

import logging
import random
import zlib
from typing import Any

import pytest

from guardian.detectors.config import DetectorConfig
from guardian.detectors.pipeline import DetectorPipeline
from guardian.errors import TemporaryError
from guardian.ingest.codec import encode_batch, group_samples
from guardian.ingest.processor import MetricsProcessor
from guardian.ingest.state import (SNAPSHOT_FORMAT, MemorySnapshotStore, PartitionStateKeeper, Snapshot,
                                   decode_snapshot, encode_snapshot)
from guardian.ingest.stage import DetectorStage
from guardian.model.samples import Metric, Sample, Workload

PARTITIONS = 6
BROKERS = ("b1", "b2", "b3")
T0 = 1_795_000_000.0
CUT = 200                                    # the second the first worker stops
BEFORE = ("User:tenant-1", "app-0")          # 5x from t=180: an open episode at the cut
AFTER = ("User:tenant-2", "app-1")           # 5x from t=230: needs the learned normal to be seen
TOPIC = "guardian.metrics"


def scrapes(seconds: int = 300, seed: int = 7) -> list[list[Sample]]:
    rng = random.Random(seed)
    clients = [(f"User:tenant-{t}", f"app-{c}") for t in range(6) for c in range(3)]
    out = []
    for t in range(seconds):
        batch = []
        for principal, cid in clients:
            factor = 5.0 if ((principal, cid) == BEFORE and t >= 180) or ((principal, cid) == AFTER and t >= 230) else 1.0
            rate = 200_000.0 * factor * rng.uniform(0.95, 1.05)
            weights = [rng.uniform(0.8, 1.2) for _ in BROKERS]
            for i, b in enumerate(BROKERS):
                w = Workload(principal=principal, client_id=cid, broker=b)
                batch.append(Sample(T0 + t + 0.05 * i, w, Metric.PRODUCE_BYTE_RATE, rate * weights[i] / sum(weights),
                                    source="prometheus"))
        for i, b in enumerate(BROKERS):
            batch.append(Sample(T0 + t + 0.05 * i, Workload(broker=b), Metric.REQUEST_HANDLER_IDLE, 0.8,
                                source="prometheus"))
        out.append(batch)
    return out


def records(seconds: int = 300) -> list[list[tuple[int, bytes, bytes]]]:
    """Per second, the (partition, key, value) records as the publishers write them."""
    out = []
    for batch in scrapes(seconds):
        second = []
        for b in group_samples(batch):
            key = b.workload.partition_key.encode()
            second.append((zlib.crc32(key) % PARTITIONS, key, encode_batch(b)))
        out.append(second)
    return out


def stage(**config: Any) -> DetectorStage:
    # the pipeline's eviction clock is pinned: these samples are in the past of the wall clock
    return DetectorStage(DetectorPipeline(DetectorConfig.from_dict(config), clock=lambda: T0))


class Worker:
    """A processor, its stage and its keeper, fed record by record as the faust agent feeds them."""

    def __init__(self, store: MemorySnapshotStore | None, interval_s: float = 30.0, **config: Any) -> None:
        self.stage = stage(**config)
        self.processor = MetricsProcessor(self.stage)
        self.keeper = PartitionStateKeeper(self.stage, store, TOPIC, interval_s=interval_s) if store is not None else None

    def feed(self, recs: list[tuple[int, bytes, bytes]]) -> list[dict]:
        out = []
        for partition, key, value in recs:
            if self.keeper is not None:
                self.keeper.before(partition)
            o = self.processor.handle(value, key, TOPIC, partition, 0)
            assert not o.dead_letters, o.dead_letters
            for batch in o.batches if self.keeper is not None else ():
                self.keeper.after(partition, key, batch.workload, max(batch.ts))
            out += [d.to_dict() for d in o.detections]
        return out


def flat(seconds: list[list[tuple[int, bytes, bytes]]]) -> list[tuple[int, bytes, bytes]]:
    return [r for second in seconds for r in second]


def of(dets: list[dict], who: tuple[str, str]) -> list[dict]:
    return [d for d in dets if (d["workload"].get("principal"), d["workload"].get("client_id")) == who]


@pytest.fixture(scope="module")
def recs() -> list[list[tuple[int, bytes, bytes]]]:
    return records()


@pytest.fixture(scope="module")
def reference(recs) -> tuple[list[dict], list[dict]]:
    """Detections of one uninterrupted worker: (before the cut, after it)."""
    w = Worker(None)
    return w.feed(flat(recs[:CUT])), w.feed(flat(recs[CUT:]))


def test_a_restarted_worker_scores_the_next_samples_exactly_as_the_uninterrupted_one(recs, reference) -> None:
    before, after = reference
    assert of(before, BEFORE) and of(after, AFTER), "the scenario must have both runaways"
    store = MemorySnapshotStore()
    first = Worker(store)
    first.keeper.assign(range(PARTITIONS))
    assert first.feed(flat(recs[:CUT])) == before       # the keeper changes nothing while it runs
    first.keeper.save_all()                              # a clean stop (SIGTERM): every partition saved

    second = Worker(store)
    second.keeper.assign(range(PARTITIONS))
    assert second.keeper.counts == {"restored": len(store.blobs), "cold": PARTITIONS - len(store.blobs)}
    assert second.feed(flat(recs[CUT:])) == after
    # the open episode goes on with its id (the policy's evidence keeps growing), the new runaway is found
    assert {d["id"].split(".")[0] for d in of(after, BEFORE)} == {of(before, BEFORE)[0]["id"]}

    # without the restore the same worker is blind to the runaway that starts after the restart
    cold = Worker(None).feed(flat(recs[CUT:]))
    assert not of(cold, AFTER) and not of(cold, BEFORE)


def test_partitions_moving_to_a_second_worker_in_a_rebalance_are_dropped_and_restored(recs, reference) -> None:
    _, after = reference
    store = MemorySnapshotStore()
    a, b = Worker(store), Worker(store)
    a.keeper.assign(range(PARTITIONS))
    a.feed(flat(recs[:CUT]))
    tracked = a.stage.pipeline.tracked_series()
    # the eager rebalance: everything revoked (saved), then half of it comes back
    a.keeper.revoke(range(PARTITIONS))
    a.keeper.assign(range(3))
    b.keeper.assign(range(3, PARTITIONS))
    assert 0 < a.stage.pipeline.tracked_series() < tracked, "A dropped the partitions B took"
    assert a.stage.pipeline.tracked_series() + b.stage.pipeline.tracked_series() == tracked
    found = []
    for second in recs[CUT:]:
        found += a.feed([r for r in second if r[0] < 3]) + b.feed([r for r in second if r[0] >= 3])
    key = lambda d: (d["ts"], d["id"])   # noqa: E731
    assert sorted(found, key=key) == sorted(after, key=key)


def test_snapshots_are_written_every_interval_of_sample_time(recs) -> None:
    store = MemorySnapshotStore()
    w = Worker(store, interval_s=30.0)
    w.keeper.assign(range(PARTITIONS))
    w.feed(flat(recs[:100]))
    saved = {p: decode_snapshot(b, TOPIC, p).sample_ts for p, b in store.blobs.items()}
    assert saved and set(saved) == {p for p, _, _ in flat(recs[:1])}
    # every partition in use was saved within the last interval of sample time (no save_all)
    assert all(T0 + 99 - 30 - 1 <= ts <= T0 + 100 for ts in saved.values()), saved
    assert w.keeper.counts["saved"] >= 3 * len(saved)


def test_idle_series_are_not_saved_and_an_oversized_snapshot_is_not_written(recs, caplog) -> None:
    now = [T0]
    st = DetectorStage(DetectorPipeline(DetectorConfig.from_dict({"idle_evict_s": 60}), clock=lambda: now[0]),
                       evict_every_s=10.0)
    store = MemorySnapshotStore()
    keeper = PartitionStateKeeper(st, store, TOPIC, interval_s=1e9)
    gone = Workload(principal="User:tenant-0", client_id="batch-job")
    stays = Workload(principal="User:tenant-0", client_id="service")
    key = stays.partition_key.encode()
    for t in range(200):
        now[0] = T0 + t
        for w in ([gone, stays] if t < 50 else [stays]):
            [b] = group_samples([Sample(T0 + t, w, Metric.PRODUCE_BYTE_RATE, 1e5)])
            keeper.before(0)
            st.process(b)
            keeper.after(0, key, w, T0 + t)
    keeper.save_all()
    tables = decode_snapshot(store.blobs[0], TOPIC, 0).state["pipeline"]["tables"]
    assert [row[0]["client_id"] for row in tables["produce_byte_rate"]] == ["service"]

    small = PartitionStateKeeper(st, MemorySnapshotStore(), TOPIC, max_bytes=100)
    small.assign([0])
    small.after(0, key, stays, T0 + 200)
    with caplog.at_level(logging.WARNING, logger="guardian.ingest.state"):
        assert small.save(0) is False
    assert small.store.blobs == {} and "above GUARDIAN_STATE__MAX_BYTES=100" in caplog.text


def _valid_blob(recs, partition: int) -> bytes:
    store = MemorySnapshotStore()
    w = Worker(store)
    w.keeper.assign(range(PARTITIONS))
    w.feed(flat(recs[:150]))
    w.keeper.save_all()
    return store.blobs[partition]


@pytest.fixture(scope="module")
def corrupt(recs) -> dict[str, tuple[bytes, str]]:
    p = flat(recs[:1])[0][0]
    good = _valid_blob(recs, p)
    header, _, body = good.partition(b"\n")
    snap = decode_snapshot(good, TOPIC, p)
    half = dict(snap.state, cluster_series=[{"workload": {"principal": "User:x"}}])   # pipeline fine, rounds not
    return {
        "garbage": (b"\x00\x01 not a snapshot", "not a guardian-detector-state snapshot"),
        "truncated": (good[: len(good) // 2], "corrupt snapshot"),
        "newer format": (f"{SNAPSHOT_FORMAT}/2\n".encode() + body, "format version 2, this guardian reads version 1"),
        "other partition": (encode_snapshot(Snapshot(TOPIC, p + 1, snap.sample_ts, snap.keys, snap.state)),
                            f"not {TOPIC}[{p}]"),
        "malformed state": (encode_snapshot(Snapshot(TOPIC, p, 0.0, snap.keys, {"pipeline": {"tables": {
            "produce_byte_rate": [["not a workload"]]}}, "cluster_series": [], "episodes": []})),
                            "malformed"),
        "half restorable": (encode_snapshot(Snapshot(TOPIC, p, snap.sample_ts, snap.keys, half)),
                            "malformed cluster-wide rounds"),
        "other detector configuration": (good, "evidence samples saved, this configuration keeps 4"),
    }


@pytest.mark.parametrize("case", ["garbage", "truncated", "newer format", "other partition", "malformed state",
                                  "half restorable", "other detector configuration"])
def test_a_corrupt_or_incompatible_snapshot_is_logged_and_the_partition_starts_cold(recs, corrupt, case,
                                                                                    caplog) -> None:
    blob, reason = corrupt[case]
    p = flat(recs[:1])[0][0]
    store = MemorySnapshotStore()
    store.blobs[p] = blob
    config = {"tiers": {"produce_byte_rate": {"evidence": 4}}} if case == "other detector configuration" else {}
    w = Worker(store, **config)
    with caplog.at_level(logging.WARNING, logger="guardian.ingest.state"):
        w.keeper.assign([p])
    assert w.keeper.counts == {"unreadable": 1}
    assert f"saved detector state of {TOPIC}[{p}]" in caplog.text and "starts cold" in caplog.text
    assert reason in caplog.text
    assert w.stage.pipeline.tracked_series() == 0 and len(w.stage.cluster_series) == 0, "nothing half-restored"
    # and the worker goes on: the partition's records are scored (cold) and saved again
    w.feed([r for r in flat(recs[150:160]) if r[0] == p])
    assert w.stage.pipeline.tracked_series() > 0


class _FailingStore(MemorySnapshotStore):
    def load(self, partitions):
        raise TemporaryError("Redis down")

    def save(self, partition, blob):
        raise TemporaryError("Redis down")


def test_a_store_that_fails_leaves_the_worker_running_cold_and_retries_the_save(recs, caplog) -> None:
    w = Worker(_FailingStore())
    with caplog.at_level(logging.WARNING, logger="guardian.ingest.state"):
        w.keeper.assign(range(PARTITIONS))
        w.feed(flat(recs[:40]))
    assert w.keeper.counts["load_failed"] == PARTITIONS and w.keeper.counts["save_failed"] >= 1
    assert "could not read detector state" in caplog.text and "could not save detector state" in caplog.text
    assert w.stage.pipeline.tracked_series() > 0
