"""Detector state survives a SIGKILLed worker: the next worker judges its workloads warm.

Real broker and Redis, real ``guardian run`` processes (stream processors with the detectors,
the engine in dry-run, no collectors). A tenant's two clients are fed past warm-up; the worker is
SIGKILLed while samples still flow, once it has saved the partition's state; a second worker
starts, restores it, and must find a 5x runaway that starts right after the restart within the
delay an uninterrupted pipeline needs, without flagging the benign client. A cold worker is
blind to that runaway (its series is still young), so this test fails without the restore
(run it with ``GUARDIAN_STATE__ENABLED=false`` to see).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from guardian.ingest.codec import encode_batch, group_samples
from guardian.ingest.processor import WORKER_HEADER
from guardian.ingest.state import RedisSnapshotStore, decode_snapshot
from guardian.ingest.stage import build_stage
from guardian.model.samples import Metric, Sample, Workload
from guardian.settings import GuardianSettings

from .conftest import IngestEnv, wait_for

pytestmark = pytest.mark.integration

RUNAWAY = Workload(principal="User:tenant-a", client_id="orders", broker="b1")
BENIGN = Workload(principal="User:tenant-a", client_id="billing", broker="b1")
WARM = 180        # seconds of samples produced at once (warm_n is 120)
KILL_AFTER = 200  # the worker is killed once a snapshot holds samples up to here ...
RUN = 240         # ... and before the runaway (5x) starts: it is produced only after the kill
END = 300
INTERVAL_S = 10   # GUARDIAN_STATE__INTERVAL_S: snapshots every 10 s of sample time


def samples(t0: float, t: int) -> list[Sample]:
    r = random.Random(t)
    return [Sample(t0 + t, RUNAWAY, Metric.PRODUCE_BYTE_RATE, 200_000 * (5 if t >= RUN else 1) * r.uniform(0.95, 1.05),
                   source="test"),
            Sample(t0 + t, BENIGN, Metric.PRODUCE_BYTE_RATE, 300_000 * r.uniform(0.95, 1.05), source="test")]


def reference_delay(t0: float) -> float:
    """Sample seconds from the runaway's start to its detection by one uninterrupted stage."""
    stage = build_stage(GuardianSettings())
    for t in range(END):
        for b in group_samples(samples(t0, t)):
            for d in stage.process(b):
                if d.workload.get("client_id") == RUNAWAY.client_id:
                    return d.ts - (t0 + RUN)
    raise AssertionError("the uninterrupted pipeline must find the runaway")


def start_guardian(env: IngestEnv, worker_id: str, extra: dict[str, str]) -> subprocess.Popen:
    log = open(env.tmp / f"{worker_id}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "guardian.app.cli", "run", "--collectors", "", "--worker-id", worker_id],
                            env={**env.env, **extra}, stdout=log, stderr=subprocess.STDOUT)
    env.procs.append(proc)
    return proc


def consumed_all(env: IngestEnv) -> bool:
    """The processors' group committed every record of the metrics topic."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": env.bootstrap})
    topic, parts = env.topics.metrics, env.topics.partitions
    c = Consumer({"bootstrap.servers": env.bootstrap, "group.id": "t-watermarks"})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(parts)}
    finally:
        c.close()
    req = ConsumerGroupTopicPartitions(env.settings.ingest.app_id, [TopicPartition(topic, p) for p in range(parts)])
    try:
        res = admin.list_consumer_group_offsets([req])[env.settings.ingest.app_id].result(timeout=10)
    except Exception:  # noqa: BLE001 - the group has not committed yet
        return False
    done = {tp.partition: tp.offset for tp in res.topic_partitions}
    return all(done.get(p, -1) >= end for p, end in ends.items() if end > 0)


def test_a_killed_workers_workloads_are_judged_warm_by_the_next_worker(ingest_env: IngestEnv, redis_url: str,
                                                                         redis_client, unique: str,
                                                                         tmp_path: Path) -> None:
    env = ingest_env
    policy = tmp_path / "policy.yaml"
    default = (Path(__file__).resolve().parents[3] / "configs" / "policies" / "default.yaml").read_text()
    policy.write_text(default.replace("dry_run: false", "dry_run: true", 1))   # the engine changes nothing
    prefix = f"t-{unique}:"
    extra = {"GUARDIAN_REDIS__URL": redis_url, "GUARDIAN_REDIS__PREFIX": prefix,
             "GUARDIAN_STATE__INTERVAL_S": str(INTERVAL_S), "GUARDIAN_POLICY_FILE": str(policy),
             "GUARDIAN_TOPICS__DECISIONS": f"t-{unique}.decisions"}
    t0 = time.time() - 3600   # sample time near now: the pipeline's idle eviction runs on the wall clock
    expected_delay = reference_delay(t0)

    first = start_guardian(env, "state-w1", extra)
    env.wait_assigned(1, timeout=120)
    p = Producer({"bootstrap.servers": env.bootstrap, "linger.ms": 5, "enable.idempotence": True})
    killed = threading.Event()

    def produce(ts: range) -> None:
        for t in ts:
            for b in group_samples(samples(t0, t)):
                p.produce(env.topics.metrics, encode_batch(b), key=b.workload.partition_key.encode())
            p.poll(0)
            if t >= WARM:
                time.sleep(0.2)           # samples keep flowing while the worker is killed
        p.flush(30)

    def feeder() -> None:
        produce(range(0, RUN))
        killed.wait(300)
        produce(range(RUN, END))

    feed = threading.Thread(target=feeder, daemon=True)
    feed.start()

    store = RedisSnapshotStore(redis_client, prefix, env.settings.ingest.app_id, env.topics.metrics, ttl_s=60)

    def saved_up_to() -> float:
        loaded = store.load(list(range(env.topics.partitions)))
        snaps = [decode_snapshot(b, env.topics.metrics, part) for part, b in loaded.items()]
        return max((s.sample_ts - t0 for s in snaps), default=-1.0)

    wait_for(lambda: first.poll() is not None or saved_up_to() >= KILL_AFTER, 180,
             f"a snapshot with samples up to {KILL_AFTER}")
    assert first.poll() is None, env.log_of("state-w1")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    saved = saved_up_to()
    assert KILL_AFTER <= saved < RUN, saved
    killed.set()

    second = start_guardian(env, "state-w2", extra)
    feed.join(timeout=300)
    wait_for(lambda: second.poll() is not None or consumed_all(env), 240, "the second worker to process every record")
    assert second.poll() is None, env.log_of("state-w2")

    dets = [(orjson.loads(m.value()), dict(m.headers() or [])) for m in
            env.consume(env.topics.detections, want=10**6, timeout=10)]
    runaway = [(d, h) for d, h in dets if d["workload"].get("client_id") == RUNAWAY.client_id]
    benign = [d for d, _ in dets if d["workload"].get("client_id") == BENIGN.client_id]
    why = f"detections {[(d['workload'], round(d['ts'] - t0), d['ratio']) for d, _ in dets]}\n{env.log_of('state-w2')}"
    assert not benign, why
    assert runaway, f"the runaway after the restart was not detected (judged cold?); {why}"
    onset = min(runaway, key=lambda x: x[0]["ts"])
    assert onset[1][WORKER_HEADER].decode() == "state-w2"
    # as fast as a worker that never stopped, give or take two samples (the samples learned by
    # the killed worker after its last snapshot are missing from the restored state)
    assert onset[0]["ts"] - (t0 + RUN) <= expected_delay + 2, (onset[0]["ts"] - t0, expected_delay)
    assert "restored detector state" in (env.tmp / "state-w2.log").read_text(errors="replace")


def test_a_clean_stop_saves_every_partition_it_owns(ingest_env: IngestEnv, redis_url: str, redis_client,
                                                    unique: str, tmp_path: Path) -> None:
    # no periodic save (interval far beyond the samples): what is in Redis was saved at shutdown
    env = ingest_env
    prefix = f"t-{unique}:"
    extra = {"GUARDIAN_REDIS__URL": redis_url, "GUARDIAN_REDIS__PREFIX": prefix, "GUARDIAN_STATE__INTERVAL_S": "1e9",
             "GUARDIAN_TOPICS__DECISIONS": f"t-{unique}.decisions"}
    worker = start_guardian(env, "state-stop", extra)
    env.wait_assigned(1, timeout=120)
    t0 = time.time() - 3600
    p = Producer({"bootstrap.servers": env.bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for t in range(30):
        for b in group_samples(samples(t0, t)):
            p.produce(env.topics.metrics, encode_batch(b), key=b.workload.partition_key.encode())
    assert p.flush(30) == 0
    wait_for(lambda: worker.poll() is not None or consumed_all(env), 120, "the worker to process every record")
    store = RedisSnapshotStore(redis_client, prefix, env.settings.ingest.app_id, env.topics.metrics, ttl_s=60)
    assert store.load(list(range(env.topics.partitions))) == {}
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, env.log_of("state-stop")
    [(partition, blob)] = store.load(list(range(env.topics.partitions))).items()
    snap = decode_snapshot(blob, env.topics.metrics, partition)
    assert snap.sample_ts == t0 + 29 and snap.keys == {RUNAWAY.partition_key}
    rows = snap.state["pipeline"]["tables"]["produce_byte_rate"]
    assert sorted(w["client_id"] for w, _ in rows) == ["billing", "orders"]
