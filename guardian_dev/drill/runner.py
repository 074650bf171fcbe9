"""Run a drill scenario against the broker: once with the guardian off, once with it on.

One run: create the clients' topics, (guardian on) start ``guardian run
--api`` as a subprocess with its own topics, Redis prefix and the
scenario's detector and policy settings, start the benign clients for the
whole run, and for each repeat start a fresh runaway client at its base
rate, let it run away ``client_age_s`` (default ``before_s``) later for ``during_s`` and stop it. With
the guardian on, the runaway's quarantine is released through the HTTP API
when the incident ends (a hook the demo replaces with an appeal and an SRE
approval). Afterwards the ledger and the detections topic say when the
guardian detected and acted; the recorders say what every client saw.

``DrillHooks`` is how the demo follows along live.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from guardian_dev.drill.load import (ChangedRate, ChildProducers, ConsumerClient, DeployClient, GroupClient,
                                 PerfClient, ProducerClient, ProvisionClient, Recorder, TopicStormClient,
                                 consumer_perf_cmd, perf_properties, producer_perf_cmd, sasl_conf)
from guardian_dev.drill.scenario import Client, Scenario
from guardian.errors import SetupError

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Incident:
    index: int
    onset: float
    end: float
    client_ids: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    signature_only: str | None = None    # partition storm, deploy: no narrower identity than its tenant
    tenant: str = ""
    pattern: str = ""
    role: str = "runaway"                # runaway (to be throttled) | surge (benign: a watch at most)

    def holds(self, quarantine: dict[str, Any]) -> bool:
        """Is this quarantine (a ledger record, or the API's detail with ``evidence``) about this incident?"""
        det = quarantine.get("detection") or quarantine.get("evidence") or {}
        return self.matches(quarantine["workload"], det.get("signature"))

    def matches(self, workload: dict[str, Any], signature: str | None = None) -> bool:
        if workload.get("client_id") in self.client_ids or workload.get("group") in self.groups:
            return True
        if self.signature_only is None or signature != self.signature_only:
            return False
        # a principal-wide workload is the incident's only if it is its tenant's: a benign tenant
        # throttled for the same signature is a false action, not part of the storm; and a broker's own
        # topic-creation series names no tenant (the benign tenants' deploys move it too: one fired
        # 1.8 s before a storm's onset and was reported as the storm's detection)
        return workload.get("principal") == f"User:{self.tenant}"


def _die_with_parent() -> None:
    """In the child: SIGTERM when the drill (its parent) dies, so no guardian outlives its drill (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class GuardianProc:
    """``guardian run --api`` in a subprocess, with the settings of one drill run.

    ``extra_worker``: ``guardian run --collectors ''`` instead, another worker of the same stream
    processors (its share of the metrics partitions) and a standby engine; it has no API."""

    env: dict[str, str]
    log_path: Path
    api_url: str
    metrics_url: str
    prefix: str
    detections_topic: str
    proc: subprocess.Popen | None = None
    extra_worker: bool = False
    _stopping: bool = False

    def start(self, timeout_s: float = 120.0) -> None:
        import httpx

        self.log_file = open(self.log_path, "ab")
        args = ["run", "--collectors", ""] if self.extra_worker else ["run", "--api"]
        self.proc = subprocess.Popen([sys.executable, "-m", "guardian.app.cli", *args], env=self.env,
                                     stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError(f"guardian run exited with {self.proc.returncode}; see {self.log_path}")
            try:
                # ready = the API answers and the stream processors have consumed samples (on a fresh
                # broker the group join and the transaction log take a while); an extra worker: its
                # /metrics answers (whether its partitions carry samples is the report's to say)
                if self.extra_worker:
                    httpx.get(self.metrics_url, timeout=2).raise_for_status()
                    return
                if (httpx.get(self.api_url + "/readyz", timeout=2).status_code == 200
                        and self.processed_records() > 0):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SetupError(f"guardian not processing samples after {timeout_s:.0f}s; see {self.log_path}")

    def check_alive(self) -> None:
        """``SetupError`` naming the exit and the log when the process ended by itself: a drill without
        its guardian measures nothing, and says so instead of failing later on an API that is gone."""
        if self.proc is None or self._stopping or (rc := self.proc.poll()) is None:
            return
        why = f" ({signal.Signals(-rc).name})" if rc < 0 and -rc in signal.valid_signals() else ""
        raise SetupError(f"guardian {'worker' if self.extra_worker else 'run --api'} exited with {rc}{why} during the "
                         f"run; see {self.log_path} (a crash in a C extension leaves its stack at the end, and "
                         f"a core file where the kernel's core_pattern says, if `ulimit -c` allows one)")

    def processed_records(self) -> float:
        import httpx

        text = httpx.get(self.metrics_url, timeout=2).text
        for line in text.splitlines():
            if line.startswith("guardian_ingest_records_total "):
                return float(line.split()[1])
        return 0.0

    def request_stop(self) -> None:
        """SIGTERM, without waiting (``stop`` waits)."""
        if self.proc is not None and self.proc.poll() is None and not self._stopping:
            self.proc.send_signal(signal.SIGTERM)
            self._stopping = True

    def stop(self, timeout_s: float = 40.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.request_stop()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("guardian run did not stop in %.0fs; killing it", timeout_s)
                self.proc.kill()
                self.proc.wait(10)
        self.log_file.close()
        return self.proc.returncode


@dataclass
class RunContext:
    scenario: Scenario
    mode: str                       # off | on
    run_id: str
    endpoints: Any
    out_dir: Path
    t0: float = 0.0
    recorders: list[Recorder] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    guardian: GuardianProc | None = None
    workers: list[GuardianProc] = field(default_factory=list)   # the extra ``guardian run`` processes
    sre_token: str = ""
    redis: Any = None
    topics: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        import httpx

        assert self.guardian is not None
        for attempt in range(6):
            r = httpx.request(method, self.guardian.api_url + path, timeout=15,
                              headers={"Authorization": f"Bearer {token or self.sre_token}"}, **kw)
            # 409: the engine changed the quarantine meanwhile (optimistic concurrency): read again, retry
            if r.status_code != 409 or attempt == 5:
                break
            time.sleep(0.5)
        r.raise_for_status()
        return r.json()


class DrillHooks:
    """What happens at the moments of a run; the demo overrides these to narrate."""

    def on_start(self, ctx: RunContext) -> None:
        pass

    def on_tick(self, ctx: RunContext, now: float) -> None:
        pass

    def on_onset(self, ctx: RunContext, incident: Incident) -> None:
        pass

    def on_incident_end(self, ctx: RunContext, incident: Incident) -> None:
        """The tenant fixed its client; the SRE releases what the guardian still holds on it."""
        if ctx.mode != "on":
            return
        for q in open_quarantines(ctx):
            if not incident.matches(q["workload"]):
                if incident.signature_only is None:
                    continue
                # a principal-wide quarantine (partition storm): its signature is in the detail
                q = ctx.api("GET", f"/v1/quarantines/{q['id']}")
                if not incident.holds(q):
                    continue
            try:
                ctx.api("POST", f"/v1/quarantines/{q['id']}/release", json={"reason": "drill incident over"})
            except Exception as exc:  # noqa: BLE001 - a failed release is a finding, not a crash
                ctx.notes.append(f"release of {q['id']} failed: {exc}")

    def on_cleanup(self, ctx: RunContext, incident: Incident) -> None:
        """Half-way through the next repeat's warm-up: release what still holds the incident's workloads.

        The broker's windowed rate keeps a stopped runaway "hot" for ~10 s, long enough for a
        re-emitted episode to quarantine it again (on probation) after the first release; an open
        quarantine would count against the next incident's share-of-traffic cap.
        """
        self.on_incident_end(ctx, incident)

    def on_finish(self, ctx: RunContext) -> None:
        """Leave no drill quota behind on the broker: release what is still open."""
        for inc in ctx.incidents:
            self.on_incident_end(ctx, inc)
        time.sleep(1.0 if ctx.mode == "on" else 0.0)


def open_quarantines(ctx: RunContext) -> list[dict[str, Any]]:
    page = ctx.api("GET", "/v1/quarantines", params=[("state", s) for s in
                                                     ("active", "appealed", "awaiting_approval", "proposed")])
    return page.get("items", [])


# ------------------------------------------------------------------------------- guardian settings

def policy_file_for(scenario: Scenario, path: Path, client_prefix: str | None = None) -> Path:
    """The default (or the scenario's) policy with the scenario's overrides, validated.

    ``client_prefix`` restricts every policy to the run's own client-ids, so drills sharing a
    broker never act on each other's clients (not for group or partition-storm runaways: their
    workloads have no client-id).
    """
    from guardian.policy.config import default_policy_path, load_policy

    g = scenario.guardian
    src = Path(g.policy_file) if g.policy_file else default_policy_path()
    data = yaml.safe_load(src.read_text())
    o = g.policy
    if o.max_throttled_traffic_share is not None:
        data["global"]["max_throttled_traffic_share"] = o.max_throttled_traffic_share
    if o.max_concurrent_quarantines is not None:
        data["global"]["max_concurrent_quarantines"] = o.max_concurrent_quarantines
    for pol in data.get("policies", []):
        if client_prefix:
            pol.setdefault("match", {})["client_ids"] = [f"{client_prefix}*"]
        first = pol["ladder"][0]
        for key in ("evidence_s", "multiple_of_baseline", "floor"):
            value = getattr(o, key)
            if value is not None and (key == "evidence_s" or first.get("action") == "throttle"):
                first[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_policy(path)   # fail here, with the file and key, not inside the subprocess
    return path


def guardian_env(ctx: RunContext, extra: dict[str, str] | None = None, isolate: bool = True) -> GuardianProc:
    sc, ep = ctx.scenario, ctx.endpoints
    run = f"drill-{ctx.run_id}"
    api_port, metrics_port = free_port(), free_port()
    det_file = ctx.out_dir / f"detectors-{ctx.mode}.yaml"
    det_file.write_text(yaml.safe_dump(sc.guardian.detectors or {}))
    # a group or a tenant's partition storm is a workload without a client-id: no prefix can match it
    no_client_id = any(c.kind in ("group", "admin") for t in sc.tenants for c in t.clients)
    pol_file = policy_file_for(sc, ctx.out_dir / f"policy-{ctx.mode}.yaml",
                               client_prefix=None if (no_client_id or not isolate) else f"drill-{ctx.run_id}-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
    env.update(ep.exports())
    env.update({
        "GUARDIAN_INGEST__APP_ID": run, "GUARDIAN_INGEST__METRICS_PORT": str(metrics_port),
        "GUARDIAN_INGEST__OWNER_PREFIXES": json.dumps([t.name for t in sc.tenants]),   # "<tenant>." names
        "GUARDIAN_API__HOST": "127.0.0.1", "GUARDIAN_API__PORT": str(api_port),
        "GUARDIAN_REDIS__PREFIX": f"{run}:",
        "GUARDIAN_TOPICS__METRICS": f"{run}.metrics", "GUARDIAN_TOPICS__METRICS_DLQ": f"{run}.metrics.dlq",
        "GUARDIAN_TOPICS__DETECTIONS": f"{run}.detections", "GUARDIAN_TOPICS__DECISIONS": f"{run}.decisions",
        "GUARDIAN_TOPICS__PARTITIONS": "2",
        "GUARDIAN_DETECTOR_FILE": str(det_file), "GUARDIAN_POLICY_FILE": str(pol_file),
    })
    for key, value in (("SCRAPE_INTERVAL_S", sc.guardian.scrape_interval_s),
                       ("ADMIN_INTERVAL_S", sc.guardian.admin_interval_s)):
        if value is not None:   # else the guardian's default, as shipped
            env[f"GUARDIAN_INGEST__{key}"] = str(value)
    env.update(extra or {})
    ctx.topics += [f"{run}.metrics", f"{run}.metrics.dlq", f"{run}.detections", f"{run}.decisions",
                   f"{run}-__assignor-__leader"]   # the last one is faust's
    return GuardianProc(env=env, log_path=ctx.out_dir / f"guardian-{ctx.mode}.log",
                        api_url=f"http://127.0.0.1:{api_port}", metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
                        prefix=f"{run}:", detections_topic=f"{run}.detections")


# ------------------------------------------------------------------------------- clients

def _bursty(c: Client) -> Callable[[float], float]:
    def factor(t: float) -> float:
        if c.pattern != "bursty":
            return 1.0
        return c.burst_factor if (t % c.burst_every_s) < c.burst_s else 1.0
    return factor


def _runaway_rate(c: Client, onset: float) -> ChangedRate:
    r = c.change
    assert r is not None
    return ChangedRate(base=c.rate, onset=onset, pattern=r.pattern, factor=r.factor, ramp_s=r.ramp_s)


def _restarted(rec: Recorder, conf: dict[str, Any], topic: str, c: Client, stop: threading.Event,
               start: float, end: float, down_at: float) -> list[threading.Thread]:
    """One pod of a rolling restart: its producer stops at ``down_at``, is gone ``down_s`` and a new
    one with the same client-id sends what piled up meanwhile at ``factor`` x the rate, then the rate."""
    r = c.change
    assert r is not None
    up_at = down_at + r.down_s
    catch_up_until = up_at + (r.down_s / (r.factor - 1.0) if r.factor > 1.0 else 0.0)
    rec.events.append((down_at, "restart"))
    fresh = c.payload == "random"
    return [ProducerClient(rec, conf, topic, lambda t: c.rate, c.size, stop, start, min(down_at, end),
                           fresh_payloads=fresh),
            ProducerClient(rec, conf, topic, lambda t: c.rate * (r.factor if t < catch_up_until else 1.0),
                           c.size, stop, min(up_at, end), end, fresh_payloads=fresh)]


def _during(onset: float, end: float, value: float) -> Callable[[float], float | None]:
    return lambda t: value if onset <= t < end else None


def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    if not topics:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futs = admin.create_topics([NewTopic(t, p, 1) for t, p in topics.items()], operation_timeout=30)
    for t, f in futs.items():
        try:
            f.result(timeout=60)
        except Exception as exc:  # noqa: BLE001 - an existing topic is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise SetupError(f"cannot create topic {t}: {exc}") from exc


def warm_broker(bootstrap: str, timeout_s: float = 60.0) -> None:
    """Make the broker create ``__consumer_offsets`` (50 partitions) now, not when the first run's
    first group commits: on a fresh broker that stalls every producer for seconds and would land
    in the first run's "before" latency."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    topic = f"drill-warmup-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, {topic: 1})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
                return
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise SetupError(f"the broker did not take a consumer-group commit in {timeout_s:.0f}s: {exc}")
                time.sleep(0.5)
    finally:
        c.close()
        delete_topics(bootstrap, [topic])


def probe_latency(bootstrap: str, messages: int = 100) -> float:
    """Median produce latency (s) of ``messages`` small records (acks=all, one at a time) to a scratch topic."""
    from confluent_kafka import Producer

    topic = f"drill-probe-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, {topic: 1})
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    lats: list[float] = []
    try:
        for _ in range(messages):
            p.produce(topic, b"probe", on_delivery=lambda err, msg: lats.append(msg.latency() or 0.0)
                      if err is None else None)
            p.flush(30)
    finally:
        delete_topics(bootstrap, [topic])
    if not lats:
        raise SetupError(f"the broker at {bootstrap} acknowledged none of {messages} probe records")
    return sorted(lats)[len(lats) // 2]


def settle_broker(bootstrap: str, normal_s: float, max_wait_s: float = 300.0, say: Say = print) -> float:
    """Wait until the broker's probe latency is back near ``normal_s`` (at most 2x, or 5 ms more) after a
    run; seconds waited. A storm's thousands of partitions are deleted after the run, and the broker works
    on them for minutes: the next run's *before* would otherwise be measured on a broker still busy with
    the last run (the partition storm's guardian-on run, 2026-12-06: benign p99 10-20x the off run's)."""
    began = time.monotonic()
    while True:
        now = probe_latency(bootstrap)
        waited = time.monotonic() - began
        if now <= max(2 * normal_s, normal_s + 0.005):
            return waited
        if waited >= max_wait_s:
            say(f"  the broker is still slow after {waited:.0f}s (probe {now * 1000:.1f} ms, normal "
                f"{normal_s * 1000:.1f} ms); going on")
            return waited
        say(f"  waiting for the broker to settle (probe {now * 1000:.1f} ms, normal {normal_s * 1000:.1f} ms)")
        time.sleep(10.0)


def leftover_quotas(bootstrap: str, tenants: list[str]) -> dict[str, dict[str, float]]:
    """Quotas already on the tenants' principals (user level): a run that died with a quarantine
    open leaves one, and it would throttle this drill's clients from their first second."""
    from guardian.clients.kafka_admin import ClientQuotaAdmin, QuotaEntity

    with ClientQuotaAdmin(bootstrap) as admin:
        found = {t: admin.describe(QuotaEntity.of(user=t)) for t in tenants}
    return {t: q for t, q in found.items() if q}


def delete_topics(bootstrap: str, topics: list[str], wait_s: float = 0.0) -> None:
    """Delete ``topics`` (best effort); with ``wait_s``, wait up to that long until metadata no longer
    lists them, so the next run does not start on a broker still busy removing thousands of partitions."""
    from confluent_kafka.admin import AdminClient

    if not topics:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.delete_topics(topics, operation_timeout=30).values():
        try:
            f.result(timeout=60)
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass
    deadline, gone = time.monotonic() + wait_s, set(topics)
    while wait_s > 0 and time.monotonic() < deadline:
        try:
            if not gone & set(admin.list_topics(timeout=5).topics):
                return
        except Exception:  # noqa: BLE001 - a busy broker: ask again until the deadline
            pass
        time.sleep(1.0)


def prefill(bootstrap: str, topic: str, megabytes: float, size: int = 10_000) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000,
                  "compression.type": "none", "client.id": "drill-prefill"})
    payload = os.urandom(size)
    for _ in range(int(megabytes * 1_000_000 / size)):
        while True:
            try:
                p.produce(topic, payload)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(120)


def build_clients(ctx: RunContext, stop: threading.Event) -> list[threading.Thread]:
    """Every client thread of the run, scheduled on ``ctx.t0``; fills ctx.recorders and ctx.incidents."""
    sc, ep = ctx.scenario, ctx.endpoints
    ph = sc.phases
    t0, t_end = ctx.t0, ctx.t0 + sc.duration_s
    threads: list[threading.Thread] = []
    topics: dict[str, int] = {}
    prefills: list[tuple[str, float]] = []
    run = ctx.run_id
    first = t0 + ph.warmup_s
    ctx.incidents = [Incident(index=k, onset=first + k * ph.window_s + ph.before_s,
                              end=first + k * ph.window_s + ph.before_s + ph.during_s) for k in range(sc.repeats)]

    for tenant in sc.tenants:
        conf = sasl_conf(ep.kafka_sasl_bootstrap_servers, tenant.name, ep.tenants[tenant.name])
        principal = f"User:{tenant.name}"
        for ci, c in enumerate(tenant.clients):
            topic = c.topic or f"{tenant.name}.drill-{run}-{ci}"
            if c.kind not in ("admin", "provision"):
                topics[topic] = c.partitions
            base = f"{tenant.name}-{c.client_id or c.kind}-{ci}"
            change = c.change
            if change is None:
                for j in range(c.count):
                    cid = f"drill-{run}-{base}" + ("" if c.shared_client_id else f"-{j}")
                    rec = Recorder(cid, tenant.name, "benign", c.kind, {"principal": principal, "client_id": cid})
                    threads += _client_threads(ctx, c, rec, conf, topic, cid, stop, t0 + c.start_s, t_end,
                                               None, _java, topics)
                    ctx.recorders.append(rec)
                continue
            if change.pattern == "rewind" and change.prefill_mb > 0:
                prefills.append((topic, change.prefill_mb))
            role = "runaway" if c.runaway else "surge"
            for inc in ctx.incidents:
                start = inc.onset - ph.age_s
                for j in range(c.count):
                    cid = f"drill-{run}-{base}-r{inc.index}" + ("" if c.shared_client_id else f"-{j}")
                    rec = Recorder(cid, tenant.name, role, c.kind, {"principal": principal, "client_id": cid})
                    inc.tenant, inc.pattern, inc.role = tenant.name, change.pattern, role
                    if c.kind == "group":
                        group = f"{tenant.name}.drill-{run}-{ci}-g{inc.index}"
                        inc.groups.add(group)
                        rec.workload = {"principal": principal, "group": group}
                    if change.pattern in ("partition_storm", "deploy"):   # the principal's creations
                        inc.signature_only = "partition_storm"
                    inc.client_ids.add(cid)
                    threads += _client_threads(ctx, c, rec, conf, f"{topic}" if c.kind != "admin"
                                               else f"{tenant.name}.storm-{run}-{inc.index}-{j}",
                                               cid, stop, start, inc.end, inc, _java, topics, member=j)
                    ctx.recorders.append(rec)
    create_topics(ep.kafka_bootstrap_servers, topics)
    ctx.topics += list(topics)
    for topic, mb in prefills:
        prefill(ep.kafka_bootstrap_servers, topic, mb)
    # the runaways' and surges' producers in a process of their own, not beside the benign clients
    # whose latency this process measures (``ChildProducers``)
    changing = [t for t in threads if isinstance(t, ProducerClient) and isinstance(t.rate_fn, ChangedRate)]
    if changing:
        threads = [t for t in threads if t not in changing]
        threads.append(ChildProducers(changing, stop, ctx.out_dir / f"changing-producers-{ctx.mode}.log"))
    return threads


def _java() -> tuple[str, Path]:
    from guardian_dev.kafka import check_java, ensure_jars
    from guardian.settings import DevSettings

    s = DevSettings()
    lib, _ = ensure_jars(s.home, s.kafka_version)
    return check_java(), lib


def _client_threads(ctx: RunContext, c: Client, rec: Recorder, conf: dict[str, Any], topic: str, cid: str,
                    stop: threading.Event, start: float, end: float, inc: Incident | None,
                    java: Callable[[], tuple[str, Path]], topics: dict[str, int],
                    member: int = 0) -> list[threading.Thread]:
    ep = ctx.endpoints
    cconf = {**conf, "client.id": cid}
    out: list[threading.Thread] = []
    r = c.change
    if c.kind in ("consumer", "perf-consumer", "group"):
        # a consumer reads what a feeder of its own tenant writes at the client's rate
        feeder = Recorder(f"{cid}-feeder", rec.tenant, "feeder", "producer",
                          {"principal": rec.workload["principal"], "client_id": f"{cid}-feeder"})
        ctx.recorders.append(feeder)
        out.append(ProducerClient(feeder, {**conf, "client.id": f"{cid}-feeder"}, topic, lambda t: c.rate, c.size,
                                  stop, start, end))
    if c.kind == "producer" and r is not None and inc is not None and r.pattern == "rolling_restart":
        # the member-th client goes down every_s after the one before it, comes back with the same client-id
        return out + _restarted(rec, cconf, topic, c, stop, start, end, inc.onset + member * r.every_s)
    if c.kind == "producer":
        rate = _runaway_rate(c, inc.onset) if (r and inc) else (lambda t, b=_bursty(c): c.rate * b(t))
        extra = {"batch.size": c.batch_bytes} if c.batch_bytes else None
        if r is not None and r.pattern == "retry_storm" and inc is not None:
            # each resend its own request: the retry loop of a client that never backs off
            extra = {"batch.size": max(1, c.size + 100)}
        linger = 0 if (r and r.pattern == "retry_storm") else (5 if c.linger_ms is None else c.linger_ms)
        # a runaway stopped at its incident's end drops its backlog (up to 64 MB queued while it was
        # throttled): sent in the 15 s a benign client may take, it hurt the *after* phase as the incident did
        drain = 1.0 if (r is not None and c.runaway is not None) else 15.0
        out.append(ProducerClient(rec, cconf, topic, rate, c.size, stop, start, end, linger_ms=linger, extra=extra,
                                  fresh_payloads=c.payload == "random", drain_s=drain))
    elif c.kind == "consumer":
        rewind = _during(inc.onset, inc.end, r.every_s) if (r and inc and r.pattern == "rewind") else None
        group = f"{rec.tenant}.{cid}"
        out.append(ConsumerClient(rec, cconf, topic, group, stop, start, end, rewind_every=rewind))
    elif c.kind == "group":
        assert inc is not None and r is not None
        group = next(iter(g for g in inc.groups if g.endswith(f"-g{inc.index}")))
        out.append(GroupClient(rec, cconf, topic, group, c.members, stop, start, end,
                               churn_every=_during(inc.onset, inc.end, r.every_s)))
    elif c.kind == "admin" and r is not None and r.pattern == "deploy":
        assert inc is not None
        times = [inc.onset + k * r.every_s for k in range(math.ceil((inc.end - inc.onset) / r.every_s))]
        out.append(DeployClient(rec, cconf, topic, r.topics, r.partitions, times, stop, start, end, r.spread_s))
        rec.events.append((inc.onset, f"deploys {topic}"))
    elif c.kind == "admin":
        assert inc is not None and r is not None
        out.append(TopicStormClient(rec, cconf, topic, r.partitions,
                                    lambda t: r.rate if inc.onset <= t < inc.end else 0.0, stop, start, end))
        rec.events.append((inc.onset, f"storm prefix {topic}"))
    elif c.kind == "provision":
        out.append(ProvisionClient(rec, cconf, f"{rec.tenant}.prov-{cid}", c.rate,
                                   stop, start, end))
    elif c.kind in ("perf-producer", "perf-consumer"):
        jv, lib = java()
        props = perf_properties(ctx.out_dir / f"{cid}.properties", conf, cid)
        if c.kind == "perf-producer":
            cmd = producer_perf_cmd(jv, lib, ep.kafka_sasl_bootstrap_servers, topic, props, c.rate, c.size,
                                    end - start)
        else:
            cmd = consumer_perf_cmd(jv, lib, ep.kafka_sasl_bootstrap_servers, topic, props, f"{rec.tenant}.{cid}")
        out.append(PerfClient(rec, cmd, stop, start, end))
    return out


# ------------------------------------------------------------------------------- one run

def _processed(w: GuardianProc) -> str:
    import httpx

    if w.proc is None or w.proc.poll() is not None:
        return f"exited ({None if w.proc is None else w.proc.returncode}); see {w.log_path}"
    try:
        return f"{w.processed_records():.0f} metrics records processed"
    except httpx.HTTPError as exc:
        return f"/metrics did not answer ({exc})"


def extra_worker(main: GuardianProc, index: int) -> GuardianProc:
    """Worker ``index`` (2, 3, ...) beside ``main``: the same app id, topics, ledger and policy, its own
    /metrics port, no collectors and no API."""
    metrics_port = free_port()
    env = {**main.env, "GUARDIAN_INGEST__METRICS_PORT": str(metrics_port), "GUARDIAN_API__PORT": str(free_port())}
    return GuardianProc(env=env, log_path=main.log_path.with_name(f"{main.log_path.stem}-worker{index}.log"),
                        api_url="", metrics_url=f"http://127.0.0.1:{metrics_port}/metrics", prefix=main.prefix,
                        detections_topic=main.detections_topic, extra_worker=True)


def run_once(scenario: Scenario, endpoints: Any, mode: str, out_dir: Path, say: Say = print,
             hooks: DrillHooks | None = None, guardian_extra_env: dict[str, str] | None = None,
             keep_guardian: bool = False, isolate: bool = True, workers: int = 1) -> RunContext:
    """One run of the scenario (``mode`` off or on, with ``workers`` guardian processes); returns
    everything it recorded."""
    import redis

    hooks = hooks or DrillHooks()
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(scenario=scenario, mode=mode, run_id=uuid.uuid4().hex[:6], endpoints=endpoints, out_dir=out_dir)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        if mode == "on":
            from guardian.api.auth import TokenStore

            ctx.guardian = guardian_env(ctx, guardian_extra_env, isolate)
            say(f"[{mode}] starting guardian run --api (log {ctx.guardian.log_path})")
            ctx.guardian.start()
            for i in range(2, workers + 1):   # after the first, which therefore takes the engine's lease
                w = extra_worker(ctx.guardian, i)
                ctx.workers.append(w)
                say(f"[{mode}] starting worker {i} (log {w.log_path})")
                w.start()
            ctx.redis = redis.Redis.from_url(endpoints.redis_url)
            ctx.sre_token, _ = TokenStore(ctx.redis, ctx.guardian.prefix).create("sre", name="drill-sre",
                                                                                 created_by="drill", now=time.time())
        ctx.t0 = time.time() + 15.0   # clients are scheduled after topics exist (and JVMs start)
        threads = build_clients(ctx, stop)
        if time.time() > ctx.t0 - 2:
            ctx.t0 = time.time() + 3.0   # setup took long: shift every start and incident alike
            ctx.recorders, ctx.incidents = [], []
            stop.set()
            stop = threading.Event()
            threads = build_clients(ctx, stop)
        ctx.threads = threads
        for t in threads:
            t.start()
        hooks.on_start(ctx)
        say(f"[{mode}] {len(threads)} clients; {scenario.repeats} incident(s) of {scenario.phases.during_s:.0f}s, "
            f"run ends in {ctx.t0 + scenario.duration_s - time.time():.0f}s")
        pending_onsets = list(ctx.incidents)
        pending_ends = list(ctx.incidents)
        ph = scenario.phases
        pending_cleanups = [(inc.end + ph.after_s + ph.before_s / 2, inc) for inc in ctx.incidents[:-1]]
        t_end = ctx.t0 + scenario.duration_s
        while time.time() < t_end:
            for w in (ctx.guardian, *ctx.workers):   # before the hooks, which call its API
                if w is not None:
                    w.check_alive()
            now = time.time()
            while pending_onsets and now >= pending_onsets[0].onset:
                inc = pending_onsets.pop(0)
                say(f"[{mode}] incident {inc.index + 1}/{scenario.repeats}: {inc.tenant} {inc.pattern} starts")
                hooks.on_onset(ctx, inc)
            while pending_ends and now >= pending_ends[0].end:
                inc = pending_ends.pop(0)
                hooks.on_incident_end(ctx, inc)
            while pending_cleanups and now >= pending_cleanups[0][0]:
                hooks.on_cleanup(ctx, pending_cleanups.pop(0)[1])
            hooks.on_tick(ctx, now)
            time.sleep(max(0.0, min(0.5, t_end - time.time())))
        hooks.on_finish(ctx)
    finally:
        stop.set()
        for t in threads:
            if isinstance(t, PerfClient):
                t.terminate()
        for t in threads:
            t.join(timeout=30)
        if ctx.guardian is not None and not keep_guardian:
            try:
                if ctx.redis is not None:
                    collect_guardian_record(ctx)
            finally:
                for i, w in enumerate([ctx.guardian, *ctx.workers], start=1):
                    if ctx.workers:   # evidence that the workers split the partitions
                        ctx.notes.append(f"worker {i}: {_processed(w)}")
                # every process at once: one stopping while another still runs starts a rebalance, and a
                # faust worker stopping in the middle of one hung past the 40 s grace (killed, exit -9)
                for w in [ctx.guardian, *ctx.workers]:
                    w.request_stop()
                for i, w in enumerate(ctx.workers, start=2):
                    say(f"[{mode}] worker {i} stopped (exit {w.stop()})")
                rc = ctx.guardian.stop()
                say(f"[{mode}] guardian stopped (exit {rc})")
                _remove_left_quotas(ctx, say)
                if ctx.redis is not None:   # the run's ledger, tokens and lease: the report has what matters
                    for key in ctx.redis.scan_iter(match=ctx.guardian.prefix + "*", count=500):
                        ctx.redis.delete(key)
        # the guardian's own topics go too (the ledger's content is in the report); with --keep they stay
        delete_topics(endpoints.kafka_bootstrap_servers,
                      [t for t in ctx.topics if not (keep_guardian and t.startswith(f"drill-{ctx.run_id}."))])
        for t in threads:
            if isinstance(t, (TopicStormClient, ProvisionClient, DeployClient)):
                delete_topics(endpoints.kafka_bootstrap_servers, t.created, wait_s=120.0)
    return ctx


def _remove_left_quotas(ctx: RunContext, say: Say) -> None:
    """A tenant-level quota the guardian set in the run's last seconds (after the finish's release, e.g. a
    storm re-quarantined on probation) outlives the stopped guardian and would throttle the next drill's
    clients: remove it, and say so in the report."""
    from guardian.clients.kafka_admin import ClientQuotaAdmin, QuotaEntity

    tenants = [t.name for t in ctx.scenario.tenants]
    left = leftover_quotas(ctx.endpoints.kafka_bootstrap_servers, tenants)
    if not left:
        return
    with ClientQuotaAdmin(ctx.endpoints.kafka_bootstrap_servers) as admin:
        for tenant, quotas in left.items():
            admin.alter(QuotaEntity.of(user=tenant), None, list(quotas))
    ctx.notes.append(f"quotas the guardian left on stopping, removed by the drill: {left}")
    say(f"[{ctx.mode}] removed quotas left by the guardian's last quarantine: {left}")


def collect_guardian_record(ctx: RunContext) -> None:
    """Quarantines, their action steps and every detection, for the report (guardian on)."""
    from guardian.store.ledger import Ledger

    assert ctx.guardian is not None
    if getattr(ctx, "_collected", False):
        return
    ctx._collected = True  # type: ignore[attr-defined]
    ledger = Ledger(ctx.redis, ctx.guardian.prefix)
    quarantines = []
    for q in ledger.list(limit=10_000):
        actions = [{"kind": a.plan.get("kind"), "status": a.status.value, "history": a.history,
                    "params": a.plan.get("params")} for a in ledger.actions(q)]
        quarantines.append({**q.to_dict(), "actions": actions})
    ctx.quarantines = quarantines  # type: ignore[attr-defined]
    ctx.detections = read_detections(ctx.endpoints.kafka_bootstrap_servers, ctx.guardian.detections_topic)  # type: ignore[attr-defined]
    # the engine's decisions (audit trail), for reports and for saying why nothing was done
    ctx.decisions = [r["decision"] for r in read_detections(  # type: ignore[attr-defined]
        ctx.endpoints.kafka_bootstrap_servers, ctx.guardian.detections_topic.rsplit(".", 1)[0] + ".decisions")
        if isinstance(r.get("decision"), dict)]


def read_detections(bootstrap: str, topic: str, idle_s: float = 3.0) -> list[dict[str, Any]]:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"drill-read-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.subscribe([topic])
    out: list[dict[str, Any]] = []
    last = time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() - last < idle_s and time.monotonic() < deadline:
        for m in c.consume(500, timeout=0.5):
            if m.error():
                continue
            last = time.monotonic()
            d = json.loads(m.value())
            d["published_at"] = m.timestamp()[1] / 1000.0
            out.append(d)
    c.close()
    return out
