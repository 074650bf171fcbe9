"""Scale benchmark: what 10,000 and 50,000 client-ids cost the guardian (issue 16).

    guardian-dev bench scale [--clients 10000,50000] [--no-view] [--json]     # or: python bench/bench_scale.py

For each client count N (one synthetic broker's worth of client sensors):

* ``scrape``: one broker's JMX-exporter text for N clients, in the exporter's format
  (``guardian/ingest/jmx_rules.yaml``, JMX exporter 1.0.1: families with HELP/TYPE, labels sorted,
  ``NaN`` for a sensor whose window holds no observation) through ``PrometheusSampler`` into
  samples, then into the records the collector publishes (``group_samples`` + ``pack_records``).
  At a 1 s scrape, seconds per scrape = the share of a core per broker.
* ``plugin``: the broker plugin's snapshot record for the same N clients through
  ``BrokerSnapshotDecoder``, then into records.
* ``detectors``: heap (tracemalloc) and RSS growth per client of the worker's state, the
  ``DetectorPipeline`` and the ``ClusterSeries`` that feed it, after a few scrapes.
* ``end_to_end``: the records of ``brokers`` brokers' scrapes through ``MetricsProcessor``
  (decode, validate) with the detector stage ``guardian run`` uses (``DetectorStage``: cluster-wide
  series, then ``DetectorPipeline``), on one core: per-broker samples per second.
* ``view``: the shared cluster view (``guardian.ingest.view``) with the N clients split by tenant over
  2 workers, each stage fed as above with the providers ``guardian run`` gives it (``ClusterPressure``,
  ``ClusterTraffic``, ``FollowedRates`` with 10 followed series of 120 points): a worker's
  ``ViewPublisher.publish`` and the JSON size of its view with 0, 1 and 10 tenants with an open episode
  and with every tenant (the worst case), and the engine's ``SharedClusterView`` reading both views
  (one MGET, decode, merge) for ``cluster_pressure``, ``cluster_traffic``, ``client_rates``. Real Redis,
  as below. ``capacity`` then counts the publication (every 1 s, 10 tenants open) in the worker's cost.

Once: ``ledger_api`` with ``quarantines`` active quarantines in a real Redis (``REDIS_URL``, else a
private ``redis-server`` in a temporary directory): ledger latency (create, get, open_counting,
the engine's tick) and the HTTP API's list (every page) and show calls, p50/p99.

A client here is what a real broker shows for a producer or a consumer: its own byte-rate
sensor (Produce for even clients, Fetch for odd ones) and throttle-time sensor, plus the
Request request-time and throttle-time sensors (4 lines; throttle times ``NaN`` unless
throttled, as on a real broker; 1 client in 100 is throttled here).

Figures go to docs/BENCHMARKS.md ("Scale"). Nothing is asserted on time.
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import statistics
import time
import tracemalloc
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

Say = Callable[[str], None]

TENANTS = 50          # principals the clients belong to
START_TS = 1_795_000_000.0


def _one_core() -> list[int] | None:
    """Pin this process to one CPU (the figures are per core); returns the affinity, None if unknown."""
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _client(i: int) -> tuple[str, str]:
    return f"tenant-{i % TENANTS}", f"client-{i:06d}"


def _rate(i: int, step: int) -> float:
    """A client's byte rate at scrape ``step``: its own level, a little noise, no runaway."""
    level = 1_000.0 * (1 + (i * 7919) % 997)
    return level * (1.0 + 0.05 * math.sin(i + step))


def exporter_text(clients: int, step: int = 0) -> str:
    """The quota-sensor part of one broker's JMX-exporter page for ``clients`` clients, as exporter 1.0.1
    serves it with our rules (one family per metric name, labels in alphabetical order)."""
    byte_rate, request_time, throttle = [], [], []
    for i in range(clients):
        user, cid = _client(i)
        request = "Produce" if i % 2 == 0 else "Fetch"
        byte_rate.append(f'kafka_server_quota_byte_rate{{client_id="{cid}",request="{request}",user="{user}"}} '
                         f'{_rate(i, step)!r}')
        request_time.append(f'kafka_server_quota_request_time{{client_id="{cid}",request="Request",user="{user}"}} '
                            f'{0.01 * (1 + i % 50)!r}')
        t = f"{float(i % 7)!r}" if i % 100 == 0 else "NaN"
        throttle.append(f'kafka_server_quota_throttle_time{{client_id="{cid}",request="{request}",user="{user}"}} {t}')
        throttle.append(f'kafka_server_quota_throttle_time{{client_id="{cid}",request="Request",user="{user}"}} {t}')
    head = "# HELP {0} Tracking {1} per user/client-id kafka.server:name=null,type=Produce,attribute={1}\n# TYPE {0} gauge\n"
    parts = ["# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
             "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1.795E9\n"]
    for name, attr, lines in (("kafka_server_quota_byte_rate", "byte-rate", byte_rate),
                              ("kafka_server_quota_request_time", "request-time", request_time),
                              ("kafka_server_quota_throttle_time", "throttle-time", throttle)):
        parts.append(head.format(name, attr) + "\n".join(lines) + "\n")
    return "".join(parts)


def plugin_snapshot(clients: int, step: int = 0, broker: str = "1") -> bytes:
    """The broker plugin's snapshot record (``broker-plugin/.../Snapshot.java``) with the same sensors."""
    import orjson

    metrics: list[list[Any]] = []
    for i in range(clients):
        user, cid = _client(i)
        request = "Produce" if i % 2 == 0 else "Fetch"
        tags = {"user": user, "client-id": cid}
        t = float(i % 7) if i % 100 == 0 else None
        metrics += [[request, "byte-rate", tags, _rate(i, step)], [request, "throttle-time", tags, t],
                    ["Request", "request-time", tags, 0.01 * (1 + i % 50)], ["Request", "throttle-time", tags, t]]
    return orjson.dumps({"v": 1, "kind": "broker_metrics", "ts": int((START_TS + step) * 1000), "broker": broker,
                         "metrics": metrics, "yammer": [], "plugin": {"send_errors": 0}})


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _records(samples: list[Any], pack: bool = True) -> list[tuple[bytes, bytes]]:
    """What the collector publishes for ``samples`` (``SamplePublisher.publish`` without Kafka): a
    tenant's batches packed, up to 1,000 samples a record (``pack=False``: one batch a record)."""
    from guardian.ingest.codec import group_samples
    from guardian.ingest.publisher import records_for

    return [(key, value) for key, value, _ in records_for(group_samples(samples), pack=pack)]


def parse_cost(clients: int, repeats: int = 5) -> dict[str, Any]:
    """Seconds of one core per scrape of one broker (= per broker per second at a 1 s scrape)."""
    from guardian.ingest.broker_plugin import BrokerSnapshotDecoder
    from guardian.ingest.prometheus import PrometheusSampler

    text = exporter_text(clients)
    sampler = PrometheusSampler()
    step = [0]

    def scrape() -> list[Any]:
        step[0] += 1
        return sampler.samples_from_text(text, START_TS + step[0], "broker-1:9404")

    parse_s, samples = _timed(scrape, repeats)
    encode_s, records = _timed(lambda: _records(samples), repeats)

    snapshot = plugin_snapshot(clients)
    decoder = BrokerSnapshotDecoder()
    plugin_s, psamples = _timed(lambda: decoder.decode(snapshot), repeats)
    pencode_s, precords = _timed(lambda: _records(psamples), repeats)
    return {"scrape": {"bytes": len(text), "lines": text.count("\n"), "samples": len(samples),
                       "records": len(records), "record_bytes": sum(len(v) for _, v in records),
                       "parse_s": parse_s, "encode_s": encode_s, "core_share_per_broker": parse_s + encode_s},
            "plugin": {"bytes": len(snapshot), "samples": len(psamples), "records": len(precords),
                       "decode_s": plugin_s, "encode_s": pencode_s, "core_share_per_broker": plugin_s + pencode_s}}



# ---------------------------------------------------------------- worker: detectors and end to end

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _plugin_records(clients: int, brokers: int, step: int, pack: bool = True) -> list[tuple[bytes, bytes]]:
    """One scrape of every broker as the records the collectors publish (each client on every broker)."""
    from guardian.ingest.broker_plugin import BrokerSnapshotDecoder

    out: list[tuple[bytes, bytes]] = []
    for b in range(brokers):
        samples = BrokerSnapshotDecoder().decode(plugin_snapshot(clients, step, broker=str(b + 1)))
        out += _records(samples, pack)
    return out


def _stage() -> Any:
    from guardian.detectors.pipeline import DetectorPipeline
    from guardian.ingest.stage import DetectorStage

    return DetectorStage(DetectorPipeline(clock=lambda: START_TS))


def _chunked_s(rounds: list[list[tuple[bytes, bytes]]], warm: int, chunk: int) -> float:
    """Seconds a fresh stage takes for the rounds after ``warm``: decoded as the processor does, handed
    to it ``chunk`` records at a time (the worker's path without Kafka)."""
    stage = _stage()
    elapsed = 0.0
    for step, records in enumerate(rounds):
        t0 = time.perf_counter()
        for i in range(0, len(records), chunk):
            stage.process_many(_decode_all(records[i:i + chunk]))
        if step >= warm:
            elapsed += time.perf_counter() - t0
    return elapsed


def pack_ab(clients: int, brokers: int = 3, warm: int = 2, steps: int = 3, trials: int = 2,
            chunk: int = 1000) -> list[dict[str, Any]]:
    """The worker's chunked path over the same scrape rounds written one batch a record and packed,
    alternating, ``trials`` times each: what packing changes in the worker's own work."""
    out = []
    for trial in range(trials):
        for pack in (False, True):
            rounds = [_plugin_records(clients, brokers, step, pack) for step in range(warm + steps)]
            samples = sum(sum(map(len, _decode_all(records))) for records in rounds[warm:])
            elapsed = _chunked_s(rounds, warm, chunk)
            out.append({"trial": trial, "packed": pack, "records_per_round": len(rounds[0]),
                        "samples_per_s": round(samples / elapsed), "s_per_round": round(elapsed / steps, 3)})
    return out


def _decode_all(records: list[tuple[bytes, bytes]]) -> list[Any]:
    from guardian.ingest.codec import decode_record

    return [b for _, value in records for b in decode_record(value)[0]]


def worker_cost(clients: int, brokers: int = 3, warm: int = 2, steps: int = 3, chunk: int = 1000,
                say: Say = print) -> dict[str, Any]:
    """Records of ``brokers`` brokers' scrapes through the processor with the real detector stage, one core.

    The first ``warm`` scrapes allocate every series (not timed); the next ``steps`` are timed. Then a
    fresh stage fed the same warm-up under tracemalloc gives the heap per client, split by file."""
    from guardian.ingest.processor import MetricsProcessor

    rounds = [_plugin_records(clients, brokers, step) for step in range(warm + steps)]
    say(f"  {clients:,} clients x {brokers} brokers: {len(rounds[0]):,} records per scrape round")
    gc.collect()
    rss0 = _rss_bytes()
    proc = MetricsProcessor(_stage())
    samples = 0
    elapsed = 0.0
    for step, records in enumerate(rounds):
        t0 = time.perf_counter()
        for offset, (key, value) in enumerate(records):
            out = proc.handle(value, key, "guardian.metrics", 0, offset)
            if step >= warm:
                samples += sum(map(len, out.batches))
        if step >= warm:
            elapsed += time.perf_counter() - t0
    gc.collect()
    rss = _rss_bytes() - rss0
    series = proc.stage.pipeline.tracked_series()
    del proc

    # the same rounds decoded as the processor does, then handed to the stage 1,000 records at a time
    chunked = _chunked_s(rounds, warm, chunk)

    tracemalloc.start(16)   # frames enough to find which of our files asked (numpy allocates the state arrays)
    gc.collect()
    before = tracemalloc.take_snapshot()
    proc = MetricsProcessor(_stage())
    for records in rounds[:warm]:
        for offset, (key, value) in enumerate(records):
            proc.handle(value, key, "guardian.metrics", 0, offset)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    by_part = {"pipeline": 0, "cluster_series": 0, "other": 0}
    for stat in after.compare_to(before, "traceback"):
        part = "other"
        for frame in reversed(stat.traceback):   # the innermost of our frames says whose it is
            name = frame.filename.replace(os.sep, "/")
            if "/detectors/" in name or name.endswith("cluster_series.py"):
                part = "pipeline" if "/detectors/" in name else "cluster_series"
                break
        by_part[part] += stat.size_diff
    total = sum(by_part.values())
    return {"brokers": brokers, "records_per_round": len(rounds[0]), "series": series,
            "samples_per_s": samples / elapsed, "records_per_s": len(rounds[0]) * steps / elapsed,
            "s_per_round": elapsed / steps,
            "chunked": {"records": chunk, "samples_per_s": samples / chunked, "s_per_round": chunked / steps},
            "heap_bytes_per_client": total / clients,
            "heap_bytes_per_client_by_part": {k: v / clients for k, v in by_part.items()},
            "rss_bytes_per_client": rss / clients}




def worker_through_kafka(clients: int, brokers: int = 3, rounds: int = 10, say: Say = print,
                         bootstrap: str | None = None, shared: bool = True,
                         redis_url: str | None = None) -> dict[str, Any]:
    """End to end: ``rounds`` scrapes of ``clients`` clients on ``brokers`` brokers, packed as the collectors
    publish them, through the local broker to one worker process with the detector stage (``--detectors``:
    as ``guardian run`` builds it), pinned to one core. The first round allocates every series and is
    timed with the rest; the broker runs on the machine's other core.

    With ``shared`` (as shipped) the worker also publishes its part of the shared view every second of
    sample time and saves its detector state every 30 s of it, in Redis (``redis_url``, else
    ``REDIS_URL``, else a private redis-server), under a prefix of its own that is deleted afterwards;
    without, neither (the two runs' difference is their cost). Rounds are 1 s of sample time apart: a
    state save within the timed span needs 31 rounds."""
    from bench.bench_ingest import worker_over_kafka

    extra_env = {"GUARDIAN_VIEW__ENABLED": str(shared).lower(), "GUARDIAN_STATE__ENABLED": str(shared).lower()}
    url, stop_redis = _redis(redis_url, say) if shared else ("", lambda: None)
    prefix = f"bench-scale-e2e-{uuid.uuid4().hex[:8]}:"
    if shared:
        extra_env |= {"GUARDIAN_REDIS__URL": url, "GUARDIAN_REDIS__PREFIX": prefix}
    all_rounds = [_plugin_records(clients, brokers, step) for step in range(rounds)]
    records = [r for one in all_rounds for r in one]
    samples = sum(map(len, _decode_all(records)))
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    core = cores[-1] if cores else None      # inside ``run`` the bench is pinned already: the same core
    say(f"  {clients:,} clients x {brokers} brokers x {rounds} rounds: {samples:,} samples in {len(records):,} records"
        f"{', shared view and state in Redis' if shared else ''}")
    snapshot_bytes = 0
    try:
        stats = worker_over_kafka(records, samples, say, worker_args=("--detectors",), core=core, bootstrap=bootstrap,
                                  extra_env=extra_env)
    finally:
        if shared:
            snapshot_bytes = _drop_prefix(url, prefix)
        stop_redis()
    saves = stats.get("state", {}).get("saved", 0)
    return {"clients": clients, "brokers": brokers, "rounds": rounds, "records": stats["records"],
            "produced_samples": samples, "samples": stats["samples"], "seconds": round(stats["seconds"], 3),
            "samples_per_s": round(stats["samples_per_s"]), "detections": stats["detections"],
            "dead_letters": stats["dead_letters"], "worker_core": core, "shared": shared,
            # saves of a partition's state: every 30 s of sample time, and each partition's at shutdown
            # (after the timed span); the bytes are the last snapshot of each partition
            "state_saves": saves, "state_snapshot_bytes": snapshot_bytes,
            # a client-broker part: one client's sensors on one broker in one scrape
            "client_broker_parts_per_s": round(stats["samples_per_s"] * clients * brokers * rounds / samples)}


def _drop_prefix(url: str, prefix: str) -> int:
    """Delete the bench worker's keys (its view, its state snapshots); the snapshots' bytes, counted first."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        size = sum(client.strlen(k) for k in keys if b"detector-state:" in k)
        if keys:
            client.delete(*keys)
        return size
    finally:
        client.close()


def detector_calls(clients: int, steps: int = 4) -> dict[str, Any]:
    """The detectors alone on cluster-wide batches: one ``process_batches`` call per workload record (what
    the worker does now) against one call per scrape round (the same samples, vectorised across workloads)."""
    from guardian.detectors.pipeline import DetectorPipeline
    from guardian.model.samples import SampleBatch
    from guardian.model.samples import Metric, Workload

    wls = [Workload(principal=f"User:{u}", client_id=c) for u, c in map(_client, range(clients))]
    metrics = [(Metric.PRODUCE_BYTE_RATE if i % 2 == 0 else Metric.FETCH_BYTE_RATE, Metric.REQUEST_TIME_SHARE)
               for i in range(clients)]
    rounds = [[SampleBatch(w, metrics[i], (START_TS + step,) * 2, (_rate(i, step), 0.01 * (1 + i % 50)))
               for i, w in enumerate(wls)] for step in range(steps)]
    out = {}
    for mode in ("per_record", "per_round"):
        pipe = DetectorPipeline(clock=lambda: START_TS)
        elapsed = 0.0
        for step, batches in enumerate(rounds):
            t0 = time.perf_counter()
            if mode == "per_record":
                for b in batches:
                    pipe.process_batches([b])
            else:
                pipe.process_batches(batches)
            if step:   # the first round allocates
                elapsed += time.perf_counter() - t0
        out[f"{mode}_samples_per_s"] = 2 * clients * (steps - 1) / elapsed
    return out

# ---------------------------------------------------------------- engine and API: many quarantines

def _pcts(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)

    def at(p: float) -> float:
        return xs[max(0, min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1))]

    return {"p50_ms": 1000 * at(50), "p99_ms": 1000 * at(99), "n": len(xs)}


def _quarantine(i: int, now: float) -> tuple[Any, Any]:
    """An active quarantine as the engine leaves it after a verified throttle, and its action record."""
    from guardian.actuators.base import ActionPlan
    from guardian.model.detection import Detection, Severity, Signature
    from guardian.model.quarantine import ActionRecord, QState, Quarantine, StepStatus, workload_key

    user, cid = _client(i)
    wl = {"principal": f"User:{user}", "client_id": cid}
    det = Detection(id=f"det-{i:06d}", ts=now, signature=Signature.RUNAWAY_PRODUCER, severity=Severity.HIGH,
                    confidence=0.9, workload=wl, metric="produce_byte_rate", baseline=1e5, observed=2e6, ratio=20.0,
                    duration_s=30.0, evidence=[(now - 30 + k, 1e5 if k < 20 else 2e6) for k in range(30)],
                    detector="bench")
    qid = f"q-{i:06d}"
    plan = ActionPlan("quota", {"principal": wl["principal"], "user": user, "client_id": cid},
                      {"scope": "client", "producer_byte_rate": 2e5}, qid)
    q = Quarantine(id=qid, workload=wl, workload_key=workload_key(wl), policy="default", state=QState.ACTIVE,
                   rung=0, dry_run=False, created_at=now + i * 1e-3, updated_at=now, rung_at=now,
                   expires_at=now + 3600, desired=[{**plan.to_dict(), "rung": 0}], traffic=2e6, throttles=True,
                   detection=det.to_dict(),
                   history=[{"ts": now, "from": None, "to": "proposed", "by": "bench", "reason": "runaway"},
                            {"ts": now, "from": "proposed", "to": "active", "by": "bench", "reason": "harm"}])
    rec = ActionRecord(key=plan.idempotency_key, quarantine_id=qid, rung=0, plan=plan.to_dict(),
                       status=StepStatus.VERIFIED, before={"quotas": {}}, attempts=1,
                       history=[{"ts": now, "status": s} for s in ("planned", "applied", "verified")])
    return q, rec


def _redis(url: str | None, say: Say) -> tuple[str, Callable[[], None]]:
    """``url`` or REDIS_URL, else a private redis-server in a temporary directory (stopped by the callable)."""
    url = url or os.environ.get("REDIS_URL")
    if url:
        return url, lambda: None
    import shutil
    import tempfile
    from pathlib import Path

    from guardian_dev.redis import LocalRedis

    tmp = tempfile.mkdtemp(prefix="guardian-bench-scale-")
    local = LocalRedis(Path(tmp))
    url = local.start(say).url

    def stop() -> None:
        local.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    return url, stop


def ledger_api(quarantines: int = 1000, repeats: int = 3, redis_url: str | None = None,
               say: Say = print) -> dict[str, Any]:
    """Ledger latency and API list/show latency with ``quarantines`` active quarantines (real Redis)."""
    import uuid

    import redis
    from fastapi.testclient import TestClient

    from guardian.api.app import build_engine, create_app
    from guardian.api.auth import Role, TokenStore
    from guardian.store.ledger import Ledger
    from guardian.settings import GuardianSettings

    url, stop = _redis(redis_url, say)
    prefix = f"bench-scale-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(url)
    try:
        settings = GuardianSettings(redis={"url": url, "prefix": prefix},
                                    api={"rate_per_s": 1e6, "burst": 1_000_000})
        ledger = Ledger(client, prefix)
        now = time.time()
        create, put = [], []
        for i in range(quarantines):
            q, rec = _quarantine(i, now)
            t0 = time.perf_counter()
            ledger.create_quarantine(q, max_open=quarantines + 1)
            t1 = time.perf_counter()
            ledger.put_action(rec)
            put.append(time.perf_counter() - t1)
            create.append(t1 - t0)
            if (i + 1) % 250 == 0:
                say(f"  {i + 1} quarantines in the ledger")
        engine = build_engine(settings, client, time.time)
        probe = _quarantine(quarantines + 1, now)[0]
        from guardian.model.detection import Detection

        det = Detection.from_dict(probe.detection)
        get_t, counting_t, list_t, view_t = [], [], [], []
        for r in range(repeats * 20):
            qid = f"q-{(r * 37) % quarantines:06d}"
            get_t.append(_timed(lambda: ledger.get(qid), 1)[0])
            counting_t.append(_timed(ledger.open_counting, 1)[0])
            if r % 10 == 0:
                list_t.append(_timed(ledger.unfinished, 1)[0])   # what each engine tick reads
            view_t.append(_timed(lambda: engine.view_for(det, time.time()), 1)[0])

        app = create_app(settings, engine=engine, redis_client=client)
        tokens = TokenStore(client, prefix)
        sre, _ = tokens.create(Role.SRE, name="bench", created_by="bench", now=now)
        tenant, _ = tokens.create(Role.TENANT, ["User:tenant-1"], name="bench-tenant", created_by="bench", now=now)
        http = TestClient(app)
        pages: dict[str, list[float]] = {}
        seen: dict[str, int] = {}
        for label, token, limit in (("sre_limit_50", sre, 50), ("sre_limit_200", sre, 200),
                                    ("tenant_limit_50", tenant, 50)):
            times: list[float] = []
            for _ in range(repeats):
                cursor, n = None, 0
                while True:
                    params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
                    t0 = time.perf_counter()
                    resp = http.get("/v1/quarantines", params=params, headers={"Authorization": f"Bearer {token}"})
                    times.append(time.perf_counter() - t0)
                    resp.raise_for_status()
                    body = resp.json()
                    n += len(body["items"])
                    cursor = body.get("next_cursor")
                    if not cursor:
                        break
                seen[label] = n
            pages[label] = times
            say(f"  API list {label}: {len(times) // repeats} pages, {seen[label]} quarantines")
        show: list[float] = []
        for r in range(repeats * 50):
            qid = f"q-{(r * 53) % quarantines:06d}"
            t0 = time.perf_counter()
            http.get(f"/v1/quarantines/{qid}", headers={"Authorization": f"Bearer {sre}"}).raise_for_status()
            show.append(time.perf_counter() - t0)
        return {"quarantines": quarantines, "redis": url.split("@")[-1],
               "ledger": {"create_quarantine": _pcts(create), "put_action": _pcts(put), "get": _pcts(get_t),
                          "open_counting": _pcts(counting_t), "unfinished": _pcts(list_t)},
               "api": {**{f"list_{k}": {**_pcts(v), "items": seen[k]} for k, v in pages.items()},
                       "show": _pcts(show)},
                "engine": {"view_for": _pcts(view_t)}}
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()
        stop()



# ---------------------------------------------------------------- the shared cluster view

@dataclass
class ViewWorker:
    """One worker's providers, as ``guardian run`` builds them for its stage and its ``ViewPublisher``."""

    pressure: Any            # guardian.policy.pressure.ClusterPressure
    traffic: Any             # guardian.ingest.stage.ClusterTraffic
    rates: Any               # guardian.policy.effect.FollowedRates
    tenants: list[str]       # the principals whose records this worker's partitions carry
    parts: int = 0           # client-broker parts it was fed per round


@dataclass
class ViewState:
    workers: list[ViewWorker]
    followed: list[tuple[str, str, str]]   # the (principal, client_id, metric) series the engine follows
    now: float                             # just after the last round: the clock of publisher and reader


def _broker_samples(brokers: int, step: int, byte_rates: dict[str, float]) -> list[Any]:
    """The brokers' own samples (record key ``cluster``): the pressure signals and the byte rates in and out."""
    from guardian.model.samples import Metric, Sample, Workload

    out = []
    for b in range(brokers):
        w, ts = Workload(broker=str(b + 1)), START_TS + step
        out += [Sample(ts, w, Metric.REQUEST_HANDLER_IDLE, 0.6, "plugin"),
                Sample(ts, w, Metric.NETWORK_PROCESSOR_IDLE, 0.7, "plugin"),
                Sample(ts, w, Metric.UNDER_REPLICATED_PARTITIONS, 0.0, "plugin"),
                Sample(ts, w, Metric.PRODUCE_BYTE_RATE, byte_rates["produce_byte_rate"], "plugin"),
                Sample(ts, w, Metric.FETCH_BYTE_RATE, byte_rates["fetch_byte_rate"], "plugin")]
        for request in ("Produce", "Fetch"):
            out += [Sample(ts, w, Metric.REQUEST_QUEUE_TIME_P99, 2.0, "plugin", labels={"request": request}),
                    Sample(ts, w, Metric.REQUEST_TOTAL_TIME_P99, 8.0, "plugin", labels={"request": request}),
                    Sample(ts, w, Metric.PURGATORY_SIZE, 10.0, "plugin", labels={"operation": request})]
    return out


def view_state(clients: int, brokers: int = 3, workers: int = 2, followed: int = 10, warm: int = 2,
               chunk: int = 1000) -> ViewState:
    """``workers`` detector stages fed ``warm`` rounds of ``brokers`` brokers' records for ``clients`` clients
    the way ``worker_cost``'s chunked path feeds one, each with the providers ``guardian run`` gives it.

    Tenants are split over the workers (tenant i on worker i % workers, as the metrics topic's records are
    keyed by principal); the brokers' own samples go to worker 0. The engine follows ``followed`` series
    (the first clients, one per tenant, as after as many verified throttles), each with ``keep_s`` (120 s)
    of points as after two minutes of 1 s scrapes: the older ones handed to ``FollowedRates`` directly,
    the last ``warm`` through the stage."""
    from guardian.detectors.pipeline import DetectorPipeline
    from guardian.ingest.stage import ClusterTraffic, DetectorStage
    from guardian.policy.effect import FollowedRates
    from guardian.policy.pressure import ClusterPressure

    now = START_TS + warm
    clock = lambda: now  # noqa: E731
    tenant_of = lambda principal: int(principal.rsplit("-", 1)[1])  # noqa: E731  "User:tenant-7" -> 7
    keys = [(f"User:{_client(i)[0]}", _client(i)[1], "produce_byte_rate" if i % 2 == 0 else "fetch_byte_rate")
            for i in range(min(followed, clients, TENANTS))]
    out, stages = [], []
    for w in range(workers):
        vw = ViewWorker(ClusterPressure(stale_after_s=30.0, clock=clock),
                        ClusterTraffic(stale_after_s=30.0, clock=clock), FollowedRates(clock=clock),
                        [f"User:tenant-{t}" for t in range(TENANTS) if t % workers == w and t < clients])
        mine = [k for k in keys if tenant_of(k[0]) % workers == w]
        vw.rates.follow(mine)
        older = int(vw.rates.keep_s) - warm
        for k in range(older):   # the older points, in time order before the rounds below
            for principal, cid, metric in mine:
                v = _rate(int(cid.split("-")[1]), k - older)
                vw.rates.observe(principal, cid, {metric: brokers * v}, START_TS - older + k,
                                 lambda m, v=v: {str(b + 1): v for b in range(brokers)})
        out.append(vw)
        stages.append(DetectorStage(DetectorPipeline(clock=lambda: START_TS), traffic=vw.traffic,
                                    pressure=vw.pressure, rates=vw.rates))
    seen: list[set[tuple[Any, ...]]] = [set() for _ in range(workers)]   # client-broker parts by worker
    for step in range(warm):
        produce = sum(_rate(i, step) for i in range(0, clients, 2))
        fetch = sum(_rate(i, step) for i in range(1, clients, 2))
        records = _plugin_records(clients, brokers, step)
        records += _records(_broker_samples(brokers, step, {"produce_byte_rate": produce, "fetch_byte_rate": fetch}))
        routed: list[list[Any]] = [[] for _ in range(workers)]
        for batch in _decode_all(records):
            p = batch.workload.principal
            w = 0 if p is None else tenant_of(p) % workers
            routed[w].append(batch)
            if p is not None:
                seen[w].add((p, batch.workload.client_id, batch.workload.broker))
        for stage, batches in zip(stages, routed):
            for i in range(0, len(batches), chunk):
                stage.process_many(batches[i:i + chunk])
    for vw, parts in zip(out, seen):
        vw.parts = len(parts)   # not the records: a throttled client has more than one per broker
    return ViewState(out, keys, now)


def _timed_cpu(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median wall and CPU (this process) seconds of ``repeats`` calls, and the last result."""
    wall, cpu, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return statistics.median(wall), statistics.median(cpu), out


def view_cost(clients: int, brokers: int = 3, workers: int = 2, open_tenants: Iterable[int] = (0, 1, 10),
              followed: int = 10, repeats: int = 5, interval_s: float = 1.0, redis_url: str | None = None,
              say: Say = print) -> dict[str, Any]:
    """The shared cluster view at ``clients`` clients x ``brokers`` brokers over ``workers`` workers (real Redis).

    For each count of tenants with an open episode (``open_tenants``, then every tenant: the worst case),
    each worker passing those it carries: worker 0's ``ViewPublisher.publish`` (follow what the engine
    follows, build, serialize, write) and its view's JSON size; then, every worker having published,
    the engine's ``SharedClusterView`` (one pipeline and one MGET of every worker's view, decode, merge)
    for ``cluster_pressure``, ``cluster_traffic`` and ``client_rates`` and for a pressure read with one open
    principal's loads on every broker (what the harm test reads for a detection), rereading each call
    (``cache_s`` 0), and once more from its cache (the merge alone: what each further call within
    ``cache_s`` costs). Per call: median wall and CPU seconds; ``core_ms_per_s``: wall ms per
    ``interval_s`` (one publication, or one call, per interval)."""
    import uuid

    import orjson

    from guardian.ingest.view import SharedClusterView, ViewPublisher, view_client

    state = view_state(clients, brokers, workers, followed)
    url, stop = _redis(redis_url, say)
    prefix = f"bench-scale-view-{uuid.uuid4().hex[:8]}:"
    # guardian run's client (no retries), with a longer timeout: a slow worst case is measured, not failed
    client = view_client(url, timeout_s=10.0)
    clock = lambda: state.now  # noqa: E731
    pubs = [ViewPublisher(client, prefix, f"worker-{w}", pressure=vw.pressure, traffic=vw.traffic, rates=vw.rates,
                          interval_s=interval_s, clock=clock) for w, vw in enumerate(state.workers)]
    shared = SharedClusterView(client, prefix, pressure_stale_after_s=30.0, traffic_stale_after_s=30.0,
                               cache_s=0.0, clock=clock)
    per_s = lambda s: 1000 * s / interval_s  # noqa: E731
    try:
        for key in state.followed:   # the engine reads them: the hash every publication reads names them
            shared.client_rates(*key)
        publish: dict[str, Any] = {}
        engine: dict[str, Any] = {}
        for n in [*open_tenants, TENANTS]:
            label = "all" if n >= TENANTS else str(n)
            open_ = {f"User:tenant-{t}" for t in range(n)}
            passed = [[p for p in vw.tenants if p in open_] for vw in state.workers]
            pub = pubs[0]
            build_s, build_cpu, view = _timed_cpu(lambda: pub.view(passed[0]), repeats)
            ser_s, ser_cpu, blob = _timed_cpu(lambda: orjson.dumps(view.to_dict()), repeats)
            pub_s, pub_cpu, ok = _timed_cpu(lambda: pub.publish(passed[0]), repeats)
            if not ok:
                raise RuntimeError(f"worker 0's view not published to {url} (see the warning above)")
            publish[label] = {"principals": len(passed[0]),
                              "client_entries": sum(len(p.clients) for p in view.pressure.values()),
                              "bytes": len(blob), "build_s": build_s, "serialize_s": ser_s, "publish_s": pub_s,
                              "publish_cpu_s": pub_cpu, "core_ms_per_s": per_s(pub_s)}
            for p, principals in zip(pubs[1:], passed[1:]):
                p.publish(principals)
            shared.cache_s = 0.0
            figs: dict[str, Any] = {"bytes_read": sum(len(b or b"") for b in client.mget(
                [shared.keys.worker(p.worker) for p in pubs]))}
            asked = min(open_) if open_ else None   # what the harm test asks of a detection: its principal's loads

            def pressure_and_a_load() -> Any:
                pressure = shared.cluster_pressure()
                return [b.load_of(asked) for b in pressure.brokers.values()] if asked else pressure

            calls = {"cluster_pressure": shared.cluster_pressure, "cluster_traffic": shared.cluster_traffic,
                     "client_rates": lambda: shared.client_rates(*state.followed[0]) if state.followed else [],
                     "pressure_and_a_load": pressure_and_a_load}
            results: dict[str, Any] = {}
            for name, call in calls.items():
                wall, cpu, results[name] = _timed_cpu(call, repeats)
                figs[name] = {"s": wall, "cpu_s": cpu, "core_ms_per_s": per_s(wall)}
            shared.cache_s = 3600.0   # what a further call within cache_s costs: the merge alone
            shared.views()
            figs["cached_s"] = {name: _timed_cpu(call, repeats)[0] for name, call in calls.items()}
            figs["client_entries"] = sum(len(b.clients) for b in results["cluster_pressure"].brokers.values())
            figs["traffic_known"] = results["cluster_traffic"] is not None
            figs["rate_points"] = len(results["client_rates"])
            engine[label] = figs
        return {"clients": clients, "brokers": brokers, "workers": workers, "interval_s": interval_s,
                "client_parts_by_worker": [vw.parts for vw in state.workers], "followed_series": len(state.followed),
                "redis": url.split("@")[-1], "publish": publish, "engine": engine}
    finally:
        for p in pubs:
            p.close()
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()
        stop()


# ---------------------------------------------------------------- a real broker's exporter

def real_scrape(clients: int, repeats: int = 3, say: Say = print) -> dict[str, Any]:
    """A private local broker (``DevStack`` in a temporary directory, stopped after) given ``clients``
    client sensors by as many short producer connections with distinct client-ids; then its JMX
    exporter is scraped ``repeats`` times: the exporter's time, the page, and our parse of it."""
    import shutil
    import tempfile
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import httpx
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from guardian_dev.security import tenant_config
    from guardian_dev.stack import DevStack
    from guardian.ingest.prometheus import PrometheusSampler
    from guardian.settings import DevSettings

    if hasattr(os, "sched_setaffinity"):   # the broker (a child process) gets every core, as in production
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    tmp = Path(tempfile.mkdtemp(prefix="guardian-bench-scale-broker-"))
    stack = DevStack(DevSettings(tenants=["tenant-a"]), run_dir=tmp, use_environment=False, use_docker=False)
    try:
        ep = stack.up(progress=say)
        topic = "tenant-a.bench-scale"
        admin = AdminClient({"bootstrap.servers": ep.kafka_bootstrap_servers})   # kept until the topic exists
        for fut in admin.create_topics([NewTopic(topic, 3, 1)]).values():
            fut.result(30)

        def connect(i: int) -> None:
            p = Producer(tenant_config(ep.kafka_sasl_bootstrap_servers, "tenant-a", ep.tenants["tenant-a"],
                                       **{"client.id": f"client-{i:06d}", "linger.ms": 0}))
            p.produce(topic, b"x" * 100, partition=i % 3)
            p.flush(30)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            for done, _ in enumerate(pool.map(connect, range(clients)), 1):
                if done % 2000 == 0:
                    say(f"  {done:,} client sensors created")
        say(f"  {clients:,} client connections in {time.perf_counter() - t0:.0f} s")
        sampler = PrometheusSampler()
        scrape_s, parse_s, text = [], [], ""
        with httpx.Client(timeout=120) as http:
            for r in range(repeats):
                t0 = time.perf_counter()
                text = http.get(ep.kafka_metrics_url).text
                scrape_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                samples = sampler.samples_from_text(text, START_TS + r, "broker-1")
                parse_s.append(time.perf_counter() - t0)
        return {"clients": clients, "scrape_s_median": statistics.median(scrape_s), "scrape_s": scrape_s,
                "parse_s_median": statistics.median(parse_s), "bytes": len(text), "lines": text.count("\n"),
                "client_lines": text.count('client_id="client-'), "samples": len(samples)}
    finally:
        stack.down(progress=say, purge=True)
        shutil.rmtree(tmp, ignore_errors=True)


def scrape_cycle(urls: list[str], rounds: int = 20, interval_s: float = 1.0) -> dict[str, Any]:
    """One scrape cycle of every broker's exporter (fetch and parse), ``rounds`` times each way,
    alternating: every page at once (``PrometheusScraper``, as the collector does) and one after another
    (a scraper per URL, in turn: what the collector did before). ``interval_s`` apart, as at the 1 s
    scrape: an exporter asked back to back serves a different page."""
    from guardian.ingest.prometheus import PrometheusScraper

    together = PrometheusScraper(urls)
    alone = [PrometheusScraper([u]) for u in urls]
    times: dict[str, list[float]] = {"at_once": [], "one_after_another": []}
    try:
        for _ in range(rounds):
            for name, scrapers in (("at_once", [together]), ("one_after_another", alone)):
                t0 = time.perf_counter()
                for scraper in scrapers:
                    scraper.scrape()
                times[name].append(time.perf_counter() - t0)
                time.sleep(max(0.0, interval_s - times[name][-1]))
    finally:
        for scraper in [together, *alone]:
            scraper.close()
    return {"brokers": len(urls), "rounds": rounds, "load_average": os.getloadavg(),
            **{name: {"mean_ms": round(1000 * statistics.fmean(ts), 1),
                      "p50_ms": round(1000 * statistics.median(ts), 1),
                      "p90_ms": round(1000 * statistics.quantiles(ts, n=10, method="inclusive")[-1], 1),
                      "max_ms": round(1000 * max(ts), 1)} for name, ts in times.items()}}


# ---------------------------------------------------------------- the whole benchmark

def capacity(parse: dict[str, Any], worker: dict[str, Any], view: dict[str, Any] | None = None,
             view_open: str = "10") -> dict[str, Any]:
    """The largest cluster one core watches at a 1 s scrape: client-broker parts per second it can
    scrape (collector) and detect (worker), each alone and both on the same core.

    With ``view`` (``view_cost``), the worker also publishes its part of the shared cluster view every
    interval: worker 0's ``publish`` with ``view_open`` tenants open, per client-broker part it carries
    (the publication walks every client load it keeps, so its cost grows with the parts; its Redis round
    trips are a constant in it), added as ``*_with_view``."""
    per_part_scrape = parse["scrape"]["core_share_per_broker"] / parse["clients"]
    per_part_plugin = parse["plugin"]["core_share_per_broker"] / parse["clients"]
    parts = parse["clients"] * worker["brokers"]
    per_part_worker = worker["s_per_round"] / parts
    per_part_chunked = worker["chunked"]["s_per_round"] / parts
    out = {"worker_parts_per_s": 1 / per_part_worker, "worker_chunked_parts_per_s": 1 / per_part_chunked,
           "scrape_parts_per_s": 1 / per_part_scrape, "plugin_parts_per_s": 1 / per_part_plugin,
           "scrape_and_worker_parts_per_s": 1 / (per_part_scrape + per_part_worker),
           "scrape_and_chunked_worker_parts_per_s": 1 / (per_part_scrape + per_part_chunked)}
    if view is not None:
        fig = view["publish"][view_open if view_open in view["publish"] else "all"]
        per_part_view = fig["publish_s"] / view["interval_s"] / max(1, view["client_parts_by_worker"][0])
        out.update(view_share_of_chunked_worker=per_part_view / per_part_chunked,
                   worker_chunked_with_view_parts_per_s=1 / (per_part_chunked + per_part_view),
                   scrape_and_chunked_worker_with_view_parts_per_s=1 / (per_part_scrape + per_part_chunked
                                                                        + per_part_view))
    return out


def run(clients: Iterable[int] = (10_000, 50_000), brokers: int = 3, quarantines: int = 1000,
        real_broker_clients: int = 0, view: bool = True, through_kafka: int = 0,
        say: Say = print) -> dict[str, Any]:
    affinity = _one_core()
    out: dict[str, Any] = {"cpu_affinity": affinity, "brokers": brokers, "load_average_start": os.getloadavg(),
                           "by_clients": {}}
    url, stop = _redis(None, say) if (view or quarantines) else ("", lambda: None)
    try:
        for n in clients:
            say(f"{n:,} clients: parse one broker's exporter page and plugin snapshot ...")
            parse = {"clients": n, **parse_cost(n)}
            say(f"  scrape {parse['scrape']['parse_s']:.3f} s + encode {parse['scrape']['encode_s']:.3f} s; "
                f"plugin {parse['plugin']['decode_s']:.3f} s + {parse['plugin']['encode_s']:.3f} s")
            say(f"{n:,} clients: worker (decode, cluster-wide series, detectors) on one core ...")
            worker = {**worker_cost(n, brokers, say=say), "detectors_alone": detector_calls(n)}
            say(f"  {worker['samples_per_s']:,.0f} samples/s ({worker['chunked']['samples_per_s']:,.0f} in chunks of "
                f"{worker['chunked']['records']}), {worker['s_per_round']:.2f} s per 1 s round, "
                f"{worker['heap_bytes_per_client']:,.0f} B heap per client; detectors alone "
                f"{worker['detectors_alone']['per_record_samples_per_s']:,.0f} samples/s called per record, "
                f"{worker['detectors_alone']['per_round_samples_per_s']:,.0f} called per round")
            fig: dict[str, Any] = {"parse": parse, "worker": worker}
            if view:
                say(f"{n:,} clients: shared cluster view, 2 workers (real Redis) ...")
                fig["view"] = v = view_cost(n, brokers, redis_url=url, say=say)
                say("  " + _view_summary(v))
            fig.update(capacity=capacity(parse, worker, fig.get("view")), load_average=os.getloadavg())
            out["by_clients"][str(n)] = fig
        if quarantines:
            say(f"ledger and API with {quarantines:,} active quarantines (real Redis) ...")
            out["ledger_api"] = ledger_api(quarantines, redis_url=url, say=say)
    finally:
        stop()
    if real_broker_clients:
        say(f"a real local broker with {real_broker_clients:,} client sensors ...")
        out["real_broker"] = real_scrape(real_broker_clients, say=say)
    if through_kafka:
        # 40 rounds: 40 s of sample time, so each partition's state is saved once within the timed span
        out["through_kafka"] = {}
        for shared in (True, False):
            say(f"{through_kafka:,} clients end to end: the local broker and one worker with its detectors, "
                f"{'with' if shared else 'without'} the shared view and state snapshots ...")
            out["through_kafka"]["shared" if shared else "alone"] = k = worker_through_kafka(
                through_kafka, brokers, rounds=40, say=say, shared=shared)
            say(f"  {k['samples_per_s']:,.0f} samples/s ({k['client_broker_parts_per_s']:,} client-broker parts/s), "
                f"{k['detections']} detections, {k['dead_letters']} dead letters, {k['state_saves']} state saves")
    out["load_average_end"] = os.getloadavg()
    return out


def _view_summary(v: dict[str, Any]) -> str:
    """Two lines: worker 0's publication and the engine's read, for each count of tenants open."""
    pub, eng = v["publish"], v["engine"]
    ms = lambda figs: " / ".join(f"{1000 * x:.1f}" for x in figs)  # noqa: E731
    kb = " / ".join(f"{f['bytes'] / 1000:,.0f}" for f in pub.values())
    reads = "; ".join(f"{name} {ms(eng[k][name]['s'] for k in eng)} ms"
                      for name in ("cluster_pressure", "cluster_traffic", "client_rates"))
    return (f"publish, worker 0 ({v['client_parts_by_worker'][0]:,} client-broker parts), {' / '.join(pub)} "
            f"tenants open: {ms(f['publish_s'] for f in pub.values())} ms a call (every {v['interval_s']:g} s), "
            f"{kb} kB\n  engine reading {v['workers']} views, each call: {reads}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="10000,50000")
    ap.add_argument("--quarantines", type=int, default=1000)
    ap.add_argument("--real-broker", type=int, default=0, help="also scrape a private local broker with this many clients")
    ap.add_argument("--no-view", dest="view", action="store_false", help="skip the shared cluster view (Redis)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    result = run([int(x) for x in a.clients.split(",")], quarantines=a.quarantines,
                 real_broker_clients=a.real_broker, view=a.view, say=(lambda m: None) if a.json else print)
    print(json.dumps(result, indent=None if a.json else 1))
