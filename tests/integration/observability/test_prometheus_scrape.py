"""A real Prometheus scrapes the guardian during a scenario; every dashboard query and every alert returns data.

What runs (all real, in this process unless said otherwise):

* Prometheus (Debian's ``prometheus`` binary, its own process) on a free
  loopback port, 1 s scrape interval, the guardian's alert rule file loaded;
* four ``GuardianMetrics`` registries served over HTTP, as the chart's pods
  would: ``engine``, two ``workers`` (``w-1`` current, ``w-2`` replaying an
  old backlog and receiving garbage records) and an ``api`` replica whose Redis
  URL points at a closed port (ledger unreachable);
* workers: sample batches encoded with ``guardian.ingest.codec`` go through
  the real ``MetricsProcessor`` with its ``LimitStage``; bad records become
  dead letters with the processor's reasons;
* engine: the real ``ActionEngine`` with the Redis ledger, the Redis lease,
  the quota actuator on the admin listener (throttles really applied to the
  broker and reverted) and an ACL actuator holding a tenant's credentials, which
  the broker refuses (real actuator errors); its ``on_event`` hook feeds
  ``GuardianMetrics.on_engine_event`` and posts escalations to two local
  HTTP receivers (contract stand-ins for Slack and a webhook; "slack" answers 500);
* tenant-a produces and consumes over SASL, so the broker's per-client quota
  sensors exist and the JMX exporter (scraped too) serves them.

The scenario quarantines tenant-a and tenant-b, fails on tenant-c's ACL, hits
the cap, appeals (pending, denied, granted), loses the lease to another
owner and pauses, so the expressions of every alert rule hold at the end.
Then each PromQL expression of each rendered dashboard (template variables
substituted) is run through Prometheus' HTTP API: range queries for time
series and annotations, instant queries for instant targets and alert rules.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from dashboards import render
from guardian.model.detection import Detection
from guardian.engine.engine import ActionEngine
from guardian.engine.lease import RedisLease
from guardian.model.quarantine import Decision, Outcome, Quarantine
from guardian.ingest.codec import encode_batch
from guardian.model.samples import SampleBatch
from guardian.ingest.processor import LimitStage, MetricsProcessor
from guardian.store.ledger import Ledger
from guardian.metrics import GuardianMetrics, serve_metrics
from guardian.policy.config import parse_policy
from guardian.testing import without_harm_test
from guardian.model.samples import Metric, Workload

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "helm" / "guardian" / "files" / "alerts" / "guardian-alerts.yaml"
PROMETHEUS = shutil.which("prometheus")
NAMESPACE = "guardian-obs"
TENANT = "tenant-a"
LIMIT = 1_000_000.0          # LimitStage ceiling on produce bytes/s
# Grafana's built-in variables, as Grafana would resolve them over a short range at a 1 s scrape.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "10s", "$__range": "10m", "$tenant": TENANT}

pytestmark = [pytest.mark.integration, pytest.mark.prometheus,
              pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian package 'prometheus')")]

POLICY = """
global:
  max_concurrent_quarantines: 3
  probation: {duration_s: 600}
policies:
  - name: acl-tenant-c
    match: {principals: ["User:tenant-c"]}
    min_severity: medium
    ladder:
      - {action: deny_acl, side: produce, evidence_s: 0, cooldown_s: 600, ttl_s: 600, requires_approval: false}
  - name: tenants
    match: {principals: ["User:*"]}
    min_severity: medium
    ladder:
      - {action: throttle, multiple_of_baseline: 2, floor: 1024, evidence_s: 0, cooldown_s: 600, ttl_s: 600}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A local HTTP endpoint standing in for a chat/webhook service; answers ``status`` to every POST."""

    def __init__(self, status: int) -> None:
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Prometheus:
    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process, self.url = process, url
        self.http = httpx.Client(base_url=url, timeout=10)

    def query(self, expr: str, at: float) -> list[dict]:
        return self._get("/api/v1/query", {"query": expr, "time": at})

    def query_range(self, expr: str, start: float, end: float, step: float = 2) -> list[dict]:
        return self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})

    def _get(self, path: str, params: dict) -> list[dict]:
        body = self.http.get(path, params=params).json()
        assert body["status"] == "success", f"{params['query']}: {body}"
        return body["data"]["result"]

    def targets(self) -> list[dict]:
        return self.http.get("/api/v1/targets").json()["data"]["activeTargets"]


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, list[str]], str], Prometheus]]:
    procs: list[subprocess.Popen] = []

    def start(jobs: dict[str, list[str]], broker_metrics_url: str) -> Prometheus:
        broker = httpx.URL(broker_metrics_url)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets, "labels": {"namespace": NAMESPACE}}]}
                for job, targets in jobs.items()
            ] + [{"job_name": "kafka", "scrape_interval": "5s", "scrape_timeout": "5s",   # JMX is slow on 2 cores
                  "metrics_path": broker.path or "/metrics",
                  "static_configs": [{"targets": [f"{broker.host}:{broker.port}"]}]}],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = open(tmp_path / "prometheus.log", "w")
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'data'}", "--storage.tsdb.retention.time=1h",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    return Prometheus(proc, url)
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus did not become ready: " + (tmp_path / "prometheus.log").read_text())

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def batch(principal: str, client_id: str, values: list[float], ts: list[float], topic: str | None = None,
          source: str = "prometheus") -> bytes:
    wl = Workload(principal=principal, client_id=client_id, topic=topic)
    return encode_batch(SampleBatch(workload=wl, metrics=tuple(Metric.PRODUCE_BYTE_RATE for _ in values),
                                    ts=tuple(ts), values=tuple(values), source=source))


BAD_RECORDS = [b"not json", b'{"v": 99}', b'{"v": 1, "src": "x", "cl": "c", "w": {}, "m": ["nope"], "t": [1], "x": [1]}']


def substitute(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in re.sub(r"\{\{.*?\}\}", "", expr), f"unsubstituted variable in {expr}"
    return expr


def test_every_dashboard_query_and_alert_returns_data(
        start_prometheus, endpoints, bootstrap: str, tenant_conf, redis_client, make_topic, unique: str) -> None:
    from confluent_kafka import Consumer, Producer

    from guardian.actuators.acl import AclActuator
    from guardian.actuators.quota import QuotaActuator
    from guardian.clients.kafka_admin import ClientQuotaAdmin, QuotaEntity

    clock = time.time
    prefix = f"obs-{unique}:"
    ledger = Ledger(redis_client, prefix=prefix)
    servers: list[Any] = []
    receivers = {"slack": Receiver(500), "webhook": Receiver(204)}
    quota_admin = ClientQuotaAdmin(bootstrap)
    cids = {name: f"{name}-{unique}" for name in ("a1", "a2", "b1", "b2", "c1")}
    try:
        # ---------------------------------------------------------------- processes and their metrics
        engine_m = GuardianMetrics(CollectorRegistry(), ledger=ledger, component="engine", clock=clock)
        w1_m = GuardianMetrics(CollectorRegistry(), component="workers", clock=clock)
        w2_m = GuardianMetrics(CollectorRegistry(), component="workers", clock=clock)
        dead_ledger = Ledger.from_url(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix)
        api_m = GuardianMetrics(CollectorRegistry(), ledger=dead_ledger, component="api", clock=clock)
        ports = {name: free_port() for name in ("engine", "w1", "w2", "api")}
        for name, m in (("w1", w1_m), ("w2", w2_m), ("api", api_m)):
            servers.append(serve_metrics(m.registry, ports[name], addr="127.0.0.1"))
        prom = start_prometheus(
            {"guardian-engine": [f"127.0.0.1:{ports['engine']}"],
             "guardian-workers": [f"127.0.0.1:{ports['w1']}", f"127.0.0.1:{ports['w2']}"],
             "guardian-api": [f"127.0.0.1:{ports['api']}"]},
            endpoints.kafka_metrics_url)
        t0 = time.time()

        # ---------------------------------------------------------------- the engine, wired for real
        def on_event(event: str, q: Quarantine, decision: Decision | None) -> None:
            engine_m.on_engine_event(event, q, decision)
            note = {"event": event, "quarantine": q.id, "principal": q.workload.get("principal")}
            for channel, receiver in receivers.items():
                try:
                    ok = httpx.post(receiver.url, json=note, timeout=2).status_code < 300
                except httpx.HTTPError:
                    ok = False
                engine_m.observe_notification(channel, ok)

        lease = RedisLease(redis_client, f"{prefix}lease", "engine-1", ttl_s=30)
        actuators = {"quota": engine_m.instrument(QuotaActuator(quota_admin)),
                     # tenant credentials: the broker refuses ACL changes (a real misconfiguration)
                     "acl": engine_m.instrument(AclActuator.from_config(tenant_conf("tenant-c"), timeout_s=5))}
        policies = without_harm_test(parse_policy(POLICY, "obs-test.yaml"))   # a detection alone acts here
        engine = ActionEngine(ledger, policies, actuators, lease=lease, on_event=on_event, clock=clock,
                              name="engine-1")
        engine_m.set_quarantine_cap(policies.global_.max_concurrent_quarantines)

        w1 = MetricsProcessor(LimitStage({Metric.PRODUCE_BYTE_RATE: LIMIT}))
        w2 = MetricsProcessor(LimitStage({Metric.PRODUCE_BYTE_RATE: LIMIT}))
        offsets = {"w1": 0, "w2": 0}

        def work(worker: str, record: bytes) -> list[Detection]:
            """One record through a worker: what the stream loop does with the processor's outcome."""
            proc, m = (w1, w1_m) if worker == "w1" else (w2, w2_m)
            offsets[worker] += 1
            m.observe_records()
            out = proc.handle(record, None, "guardian.metrics", 0, offsets[worker])
            for dl in out.dead_letters:
                m.observe_dead_letter(dl.reason)
            for batch in out.batches:
                m.observe_samples(len(batch), batch.source, newest_ts=max(batch.ts))
            for det in out.detections:
                m.observe_detection(det)
            return out.detections

        decisions: list[Decision] = []

        def handle(dets: list[Detection]) -> None:
            engine_m.set_lease_held(engine.is_leader())
            for det in dets:
                d = engine.handle(det)
                engine_m.observe_decision(d)
                decisions.append(d)

        def tick(n: int = 1) -> None:
            """One second of background life: normal traffic on w-1, backlog and garbage on w-2, engine tick."""
            for _ in range(n):
                now = time.time()
                work("w1", batch("User:tenant-b", f"steady-{unique}", [LIMIT / 10] * 3, [now - 2, now - 1, now]))
                work("w2", batch("User:tenant-b", f"replay-{unique}", [LIMIT / 10], [now - 120], source="admin"))
                work("w2", BAD_RECORDS[int(now) % len(BAD_RECORDS)])
                engine_m.set_lease_held(engine.is_leader())
                engine.tick()
                time.sleep(1)

        def runaway(cid: str, principal: str, topic: str | None = None) -> list[Detection]:
            now = time.time()
            return work("w1", batch(principal, cid, [LIMIT * 12, LIMIT * 15], [now - 3, now], topic=topic))

        # ---------------------------------------------------------------- tenant-a traffic on the broker
        topic = make_topic("tenant-a")
        producer = Producer(tenant_conf("tenant-a", **{"client.id": cids["a1"]}))
        for i in range(200):
            producer.produce(topic, value=b"x" * 1000, key=str(i).encode())
        producer.flush(30)
        consumer = Consumer(tenant_conf("tenant-a", **{"client.id": cids["a1"], "group.id": f"tenant-a.obs-{unique}",
                                                       "auto.offset.reset": "earliest"}))
        consumer.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 20
        while got < 50 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            got += msg is not None and not msg.error()
        consumer.close()
        assert got >= 50, "tenant-a could not read back what it produced"

        # ---------------------------------------------------------------- scenario
        handle(runaway(cids["a1"], "User:tenant-a"))          # quarantined before the engine is first scraped,
        servers.append(serve_metrics(engine_m.registry, ports["engine"], addr="127.0.0.1"))  # so the outbox is never seen empty
        tick(3)
        handle(runaway(cids["c1"], "User:tenant-c", topic="tenant-c.obs"))  # ACL actuator refused by the broker
        tick(2)
        handle(runaway(cids["b1"], "User:tenant-b"))
        tick(2)
        handle(runaway(cids["a2"], "User:tenant-a"))          # cap of 3 holds
        tick(2)
        handle(runaway(cids["b2"], "User:tenant-b"))          # and again
        tick(2)
        by_cid = {q.workload.get("client_id"): q for q in ledger.list()}
        assert {cids["a1"], cids["b1"], cids["c1"]} <= set(by_cid), f"decisions: {[d.outcome for d in decisions]}"
        assert quota_admin.describe(QuotaEntity.of(user="tenant-a", client_id=cids["a1"])), "throttle not applied"
        engine.appeal(by_cid[cids["b1"]].id, by="tenant-b", reason="month-end batch")
        tick(2)
        engine.deny(by_cid[cids["b1"]].id, by="sre", note="not a known batch")
        tick(2)
        engine.appeal(by_cid[cids["a1"]].id, by="tenant-a", reason="load test, please lift")
        engine.appeal(by_cid[cids["b1"]].id, by="tenant-b", reason="really month-end")
        tick(2)
        engine.release(by_cid[cids["b1"]].id, by="sre", reason="confirmed batch")
        assert not quota_admin.describe(QuotaEntity.of(user="tenant-b", client_id=cids["b1"])), "not reverted"
        tick(2)
        lease.release()                                       # another replica takes over ...
        assert RedisLease(redis_client, f"{prefix}lease", "engine-2", ttl_s=30).ensure()
        tick(2)                                               # ... and this engine sees it lost the lease
        engine.pause(by="sre", reason="observability test")
        tick(4)
        end = time.time()

        outcomes = {d.outcome for d in decisions}
        assert {Outcome.QUARANTINED, Outcome.CAPPED} <= outcomes, outcomes
        assert receivers["slack"].received and receivers["webhook"].received
        down = [t for t in prom.targets() if t["health"] != "up" and t["labels"]["job"].startswith("guardian")]
        assert not down, f"targets not up: {[(t['scrapeUrl'], t.get('lastError')) for t in down]}"

        # ---------------------------------------------------------------- every query returns data
        empty: list[str] = []
        checked = 0
        for name, build in render.DASHBOARDS.items():
            doc = render.render(build)
            targets = {t["expr"]: t for p in doc["panels"] for t in p.get("targets") or []}
            for where, expr in render.prometheus_queries(doc):
                q = substitute(expr)
                instant = targets.get(expr, {}).get("instant", False)
                result = prom.query(q, end) if instant else prom.query_range(q, t0, end)
                checked += 1
                if not result:
                    empty.append(f"{name} {where}: {q}")
        rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r]
        for rule in rules:
            checked += 1
            if not prom.query(rule["expr"], end):
                empty.append(f"alert {rule['alert']}: {rule['expr']}")
        assert checked >= 40
        kafka = [(t["health"], t.get("lastError")) for t in prom.targets() if t["labels"]["job"] == "kafka"]
        users = prom.query("count by (user, request) (kafka_server_quota_byte_rate)", end)
        assert not empty, ("queries without data:\n" + "\n".join(empty)
                           + f"\nkafka target: {kafka}; quota sensors: {[r['metric'] for r in users]}")

        # Prometheus itself loaded the rules and evaluates them without error.
        groups = prom.http.get("/api/v1/rules").json()["data"]["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        assert {r["alert"] for r in rules} <= set(loaded)
        assert all(r["health"] == "ok" for r in loaded.values()), [r for r in loaded.values() if r["health"] != "ok"]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
        for r in receivers.values():
            r.close()
        for cid in cids.values():
            for user in ("tenant-a", "tenant-b", "tenant-c"):
                quota_admin.restore(QuotaEntity.of(user=user, client_id=cid), {})
        quota_admin.close()
        for key in redis_client.scan_iter(match=prefix + "*"):
            redis_client.delete(key)
