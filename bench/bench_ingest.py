"""Ingestion benchmark: decode + route throughput in process and through the local broker.

    python bench/bench_ingest.py [--batch 500] [--samples 300000] [--pack] [--json]
    guardian-dev bench ingest --json [--batch 2 --samples 40000 --pack]

* in process: ``MetricsProcessor.handle`` (decode, validate, key check, hand to
  a detector stage that does nothing, processor metrics) over pre-encoded
  records of ``batch`` samples from 1,000 workloads, one thread (one core);
  with ``--pack`` a tenant's batches share records of up to 1,000 samples, as
  the collectors write them (``codec.pack_records``);
* through Kafka: the same records pre-produced to a fresh metrics topic, then
  one ``python -m guardian.ingest.worker`` (faust, exactly-once) consuming them;
  samples / (last chunk handled - first record) as the worker timed them.

Results and the profile go to docs/BENCHMARKS.md ("Ingestion").
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

from prometheus_client import CollectorRegistry

from guardian.ingest.codec import encode_batch, pack_records

from guardian.model.samples import SampleBatch
from guardian.ingest.processor import MetricsProcessor, NullStage, ProcessorMetrics
from guardian.model.samples import Metric, Workload

METRICS = (Metric.PRODUCE_BYTE_RATE, Metric.FETCH_BYTE_RATE, Metric.REQUEST_RATE, Metric.REQUEST_TIME_SHARE,
           Metric.THROTTLE_TIME, Metric.ERROR_RATE)


def make_records(n_batches: int, batch: int, workloads: int = 1000, pack: bool = False) -> list[tuple[bytes, bytes]]:
    batches = []
    t0 = 1_795_000_000.0
    for i in range(n_batches):
        w = Workload(principal=f"User:tenant-{i % 7}", client_id=f"client-{i % workloads}", broker="b1:9092")
        batches.append(SampleBatch(w, tuple(METRICS[j % len(METRICS)] for j in range(batch)),
                                   tuple(t0 + i + j * 0.01 for j in range(batch)),
                                   tuple(1234.5 + (i * 31 + j * 17) % 997 for j in range(batch)), source="bench"))
    if pack:
        return [(key, value) for key, value, _ in pack_records(batches)]
    return [(b.workload.key.encode(), encode_batch(b)) for b in batches]


def bench_in_process(batch: int, seconds: float = 3.0, pack: bool = False) -> dict:
    records = make_records(max(200, 200_000 // batch), batch, pack=pack)
    proc = MetricsProcessor(NullStage(), ProcessorMetrics(CollectorRegistry()))
    n = samples = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for key, value in records:
            out = proc.handle(value, key, "guardian.metrics", 0, n)
            samples += sum(map(len, out.batches))
            n += 1
    elapsed = time.perf_counter() - t0
    prof = cProfile.Profile()
    prof.enable()
    for key, value in records:
        proc.handle(value, key, "guardian.metrics", 0, 0)
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(8)
    return {"samples_per_s": samples / elapsed, "records_per_s": n / elapsed,
            "bytes_per_record": sum(len(v) for _, v in records) / len(records), "profile": s.getvalue()}


def _bootstrap() -> str:
    from guardian.settings import GuardianSettings

    settings = GuardianSettings()
    if settings.kafka.bootstrap_servers:
        return settings.kafka.bootstrap_servers
    from guardian_dev.stack import DevStack

    return DevStack(settings.dev).up(progress=lambda m: None).kafka_bootstrap_servers


def worker_over_kafka(records: list[tuple[bytes, bytes]], samples: int, say: Callable[[str], None],
                      worker_args: tuple[str, ...] = (), partitions: int = 4,
                      core: int | None = None, bootstrap: str | None = None,
                      extra_env: dict[str, str] | None = None) -> dict:
    """``records`` pre-produced to a fresh metrics topic, then one ``python -m guardian.ingest.worker``
    (faust, exactly-once; ``worker_args`` added, e.g. ``--detectors``; ``extra_env`` over the bench's;
    pinned to ``core`` if given) consuming them until it has ``samples``. Returns the worker's report
    (``WorkerStats``); a worker that wrote none raises, with the end of its log."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from guardian.settings import TopicSettings
    from guardian.clients.topics import ensure_topics

    bootstrap = bootstrap or _bootstrap()
    u = uuid.uuid4().hex[:8]
    topics = TopicSettings(metrics=f"bench-{u}.metrics", metrics_dlq=f"bench-{u}.dlq",
                           detections=f"bench-{u}.detections", partitions=partitions)
    mine = [topics.metrics, topics.metrics_dlq, topics.detections]
    ensure_topics({"bootstrap.servers": bootstrap}, topics, only=mine)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
                  "message.max.bytes": 1_000_000})
    for key, value in records:
        while True:
            try:
                p.produce(topics.metrics, value, key=key)
                break
            except BufferError:
                p.poll(0.1)
    if p.flush(120):
        raise RuntimeError(f"records not delivered to {topics.metrics}")
    say(f"produced {samples:,} samples in {len(records):,} records to {topics.metrics}")
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, GUARDIAN_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
               GUARDIAN_TOPICS__METRICS=topics.metrics, GUARDIAN_TOPICS__METRICS_DLQ=topics.metrics_dlq,
               GUARDIAN_TOPICS__DETECTIONS=topics.detections, GUARDIAN_TOPICS__PARTITIONS=str(partitions),
               GUARDIAN_INGEST__APP_ID=f"bench-{u}")
    env.update(extra_env or {})
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        report, log_path = Path(tmp) / "report.json", Path(tmp) / "worker.log"
        with log_path.open("wb") as log_file:
            subprocess.run([sys.executable, "-m", "guardian.ingest.worker", "--worker-id", "bench",
                            "--stop-after-samples", str(samples), "--report", str(report), *worker_args],
                           env=env, timeout=900, check=False, stdout=subprocess.DEVNULL, stderr=log_file,
                           preexec_fn=pin)
        if not report.exists():
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the bench worker wrote no report; the end of its log:\n{tail}")
        stats = json.loads(report.read_text())
    AdminClient({"bootstrap.servers": bootstrap}).delete_topics(mine, operation_timeout=30)
    # from the first record's arrival to the last chunk handled: a few large records are timed whole
    span = (stats["last_done_at"] or 0) - (stats["first_record_at"] or 0)
    return {**stats, "seconds": span, "samples_per_s": stats["samples"] / span if span > 0 else 0.0}


def bench_through_kafka(batch: int, total_samples: int, say: Callable[[str], None], pack: bool = False) -> dict:
    n_batches = max(1, total_samples // batch)
    records = make_records(n_batches, batch, pack=pack)
    return worker_over_kafka(records, n_batches * batch, say)


def run_all(batch: int = 500, kafka_samples: int = 1_000_000, say: Callable[[str], None] = print,
            pack: bool = False) -> dict:
    inproc = bench_in_process(batch, pack=pack)
    say(f"in process: {inproc['samples_per_s']:,.0f} samples/s ({inproc['records_per_s']:,.0f} records/s, "
        f"{inproc['bytes_per_record']:,.0f} B/record)")
    say(inproc["profile"])
    kafka = bench_through_kafka(batch, kafka_samples, say, pack=pack)
    say(f"through Kafka: {kafka['samples_per_s']:,.0f} samples/s ({kafka['samples']} samples in {kafka['seconds']:.2f}s)")
    return {"in_process_samples_per_s": round(inproc["samples_per_s"]),
            "through_kafka_samples_per_s": round(kafka["samples_per_s"]),
            "batch_samples": batch, "packed": pack, "bytes_per_record": round(inproc["bytes_per_record"]),
            "through_kafka_records_per_s": round(kafka["records"] / kafka["seconds"]) if kafka["seconds"] else 0,
            "through_kafka_samples": kafka["samples"], "cores": os.cpu_count()}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--pack", action="store_true", help="pack a tenant's batches into records as the collectors do")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    result = run_all(a.batch, a.samples, say=(lambda m: None) if a.json else print, pack=a.pack)
    print(json.dumps(result))
