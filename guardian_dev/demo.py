"""`guardian-dev demo` (`make demo`): the main job end to end on the embedded default, narrated live.

1. Starts local Kafka and Redis (``guardian-dev up``), a local escalation
   receiver (a signed webhook on loopback), and ``guardian run --api`` as a
   subprocess: collectors scraping the broker every second, the stream
   processors with the detectors, the action engine and the HTTP API.
2. Drives the built-in scenario with real clients (``guardian_dev.drill``):
   tenant-b produces steadily (two confluent-kafka producers), tenant-c
   produces in bursts; then tenant-a's ``orders`` application (6 producers,
   one client-id) runs away in a tight loop (100x its rate offered) and tenant-c's ``replay`` consumer starts rewinding to the
   beginning of its topic every 5 s and re-reading it. The broker is the
   demo's own, small on purpose (one I/O and one network thread, see
   ``DEMO_BROKER``), so the runaway hurts the other tenants and is throttled.
3. Prints the timeline as it happens: onset, detection, throttle applied
   and verified, the escalation summary the receiver got, tenant-a's appeal
   through the API with a tenant token, the SRE's approval through the API,
   the release (the quota restored and verified).
4. Ends with a report (markdown + PNG chart of the runaways' and the benign
   tenants' throughput and latency), and the API and metrics URLs.

``--quick`` shortens the phases (the tests use it); ``--keep`` leaves the
guardian, Kafka and Redis running afterwards; Ctrl-C stops cleanly.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from guardian_dev.drill.runner import DrillHooks, Incident, RunContext, free_port, open_quarantines, run_once

Say = Callable[[str], None]


# One request-handler and one network thread, a 16-request queue, and gzip-9 recompression of every
# produced batch on that one I/O thread (configs/scenarios/drill-*.yaml; docs/demo.md). Its stated
# capacity: about 33 MB/s of incompressible produce traffic, what gzip-9 gets through on that one
# thread (measured on the project's 2-core machine, otherwise idle); beyond it requests queue.
DEMO_BROKER = {"io_threads": 1, "network_threads": 1, "queued_max_requests": 16, "compression_type": "gzip",
               "compression_gzip_level": 9}


# The demo's runaway: 6 instances of one application (one client-id), as drill-runaway-producer's loader:
# 480 KB/s, then as fast as they can (48 MB/s offered) in batches of up to 1 MB. Demand beyond the one I/O
# thread in large requests from several connections is what hurts; 19 MB/s in 5 ms batches left the
# broker's handlers 53-57 % idle (only a watch) while the runaway's own requests timed out. Random
# payloads, so the broker's gzip-9 works through every byte: with one payload repeated a 1 MB batch
# compresses 65:1 and on a quiet machine the broker took the 48 MB/s with its handler 72 % idle (benign
# p99 1.7x: a watch; it hurt only when other processes took the CPU). Random, it acknowledges ~33 MB/s
# with the handler 0-1 % idle and benign p99 from 8 ms to seconds. (The e2e test runs it too.)
RUNAWAY_LOADER = {"kind": "producer", "count": 6, "shared_client_id": True, "rate": 10, "size": 8000,
                  "partitions": 2, "linger_ms": 100, "batch_bytes": 1000000, "client_id": "orders",
                  "payload": "random", "runaway": {"pattern": "step", "factor": 100}}


def demo_stack(scenario: Any, run_dir: Path | None = None) -> Any:
    """The demo's own local broker and Redis, with ``scenario.broker``'s capacity (``<home>/run-demo``
    by default, on free ports: the dev broker others may use is never restarted)."""
    from guardian_dev.stack import DevStack
    from guardian.settings import DevSettings, GuardianSettings

    dev: DevSettings = GuardianSettings().dev
    b = scenario.broker
    dev = dev.model_copy(update={**b.dev_settings(), "kafka_port": 0, "kafka_sasl_port": 0,
                                 "kafka_controller_port": 0, "kafka_metrics_port": 0, "redis_port": 0})
    return DevStack(dev, run_dir=run_dir or dev.home / "run-demo", use_environment=False, use_docker=False)


def demo_scenario(quick: bool = False) -> Any:
    from guardian_dev.drill.scenario import parse_scenario

    phases = {"before_s": 30, "during_s": 40, "after_s": 3} if quick else \
        {"before_s": 40, "during_s": 60, "after_s": 10}
    return parse_scenario({
        "name": "demo",
        "description": "a runaway producer application and a rewinding consumer among steady and bursty tenants, on a small broker",
        "repeats": 1, "phases": phases,
        # The guardian throttles on harm, not on change: on a big idle broker these runaways would only
        # be watched. The demo's own broker is small enough (as the incident drills') that they hurt.
        "broker": DEMO_BROKER,
        "tenants": [
            {"name": "tenant-b", "role": "benign", "clients": [
                {"kind": "producer", "count": 2, "rate": 100, "size": 1000, "client_id": "checkout"}]},
            {"name": "tenant-c", "role": "runaway", "clients": [
                {"kind": "producer", "rate": 100, "size": 1000, "pattern": "bursty", "burst_factor": 3,
                 "burst_s": 2, "burst_every_s": 10, "client_id": "clicks"},
                {"kind": "consumer", "rate": 20, "size": 10000, "client_id": "replay",
                 "runaway": {"pattern": "rewind", "every_s": 5, "prefill_mb": 30}}]},
            {"name": "tenant-a", "role": "runaway", "clients": [RUNAWAY_LOADER]},
        ],
    })


class EscalationReceiver:
    """A local signed-webhook receiver: checks the signature and hands each record to ``on_record``."""

    def __init__(self, on_record: Callable[[dict[str, Any], bool], None]) -> None:
        self.secret = secrets.token_hex(16)
        self.port = free_port()
        self.records: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                from guardian.escalation.senders import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = verify_signature(receiver.secret, body, self.headers.get(TIMESTAMP_HEADER, ""),
                                      self.headers.get(SIGNATURE_HEADER, ""), time.time())
                self.send_response(204 if ok else 401)
                self.end_headers()
                try:
                    rec = json.loads(body)
                except ValueError:
                    return
                receiver.records.append(rec)
                on_record(rec, ok)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="escalation-receiver")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/escalations"

    def start(self) -> "EscalationReceiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class DemoHooks(DrillHooks):
    """Narrates the run and plays the tenant and the SRE through the HTTP API."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.t0 = 0.0
        self.onset: float | None = None
        self.seen_detections: set[str] = set()
        self.quarantines: dict[str, dict[str, Any]] = {}
        self.verified: dict[str, float] = {}
        self.principals: set[str] = set()
        self.appealed = False
        self.released: set[str] = set()
        self.tenant_tokens: dict[str, str] = {}
        self.timeline: list[tuple[float, str]] = []
        self._last_poll = 0.0
        self._lock = threading.Lock()
        self._watch: threading.Thread | None = None
        self._stop = threading.Event()

    def note(self, text: str) -> None:
        now = time.time()
        with self._lock:
            self.timeline.append((now, text))
        rel = f"+{now - self.onset:5.1f}s" if self.onset else f"{now - self.t0:6.1f}s"
        self.say(f"  {rel}  {text}")

    # -- the run ---------------------------------------------------------------------
    def on_start(self, ctx: RunContext) -> None:
        from guardian.api.auth import TokenStore

        self.t0 = ctx.t0
        self.principals = {f"User:{t.name}" for t in ctx.scenario.tenants}
        assert ctx.guardian is not None
        store = TokenStore(ctx.redis, ctx.guardian.prefix)
        for t in ctx.scenario.tenants:   # each tenant sees and appeals only its own quarantines
            self.tenant_tokens[f"User:{t.name}"], _ = store.create(
                "tenant", principals=[f"User:{t.name}"], name=f"{t.name} on-call", created_by="demo", now=time.time())
        self.say(f"  API      {ctx.guardian.api_url}/v1/docs")
        self.say(f"  metrics  {ctx.guardian.metrics_url}")
        self.say("  benign: tenant-b checkout x2 (100 msg/s each), tenant-c clicks (bursty 100-300 msg/s); "
                 "tenant-a orders x6 at 480 KB/s, tenant-c replay tailing its topic")
        self.say(f"  warming up {ctx.scenario.phases.before_s:.0f}s so the detectors learn each client's normal ...")
        self._watch = threading.Thread(target=self._watch_detections, args=(ctx,), daemon=True)
        self._watch.start()

    def on_onset(self, ctx: RunContext, incident: Incident) -> None:
        self.onset = incident.onset
        self.note("ONSET  tenant-a 'orders' (6 producers) runs away in a tight loop (100x: 48 MB/s offered); "
                  "tenant-c 'replay' rewinds to offset 0 every 5 s and re-reads 30 MB")

    def on_tick(self, ctx: RunContext, now: float) -> None:
        if self.onset is None or now - self._last_poll < 1.0:
            return
        self._last_poll = now
        try:
            self._poll(ctx, now)
        except Exception as exc:  # noqa: BLE001 - the narrator never stops the demo
            self.note(f"(API poll failed: {exc})")

    def on_incident_end(self, ctx: RunContext, incident: Incident) -> None:
        for q in open_quarantines(ctx):
            if q["id"] in self.released:
                continue
            ctx.api("POST", f"/v1/quarantines/{q['id']}/release",
                    json={"reason": "replay job finished; releasing"})
            self.released.add(q["id"])
            self.note(f"SRE    releases {q['id']} ({_who(q['workload'])}) through the API")
        time.sleep(1.0)
        self._report_reverts(ctx)

    def on_cleanup(self, ctx: RunContext, incident: Incident) -> None:
        pass

    def on_finish(self, ctx: RunContext) -> None:
        self._stop.set()
        self._report_reverts(ctx)

    # -- helpers ---------------------------------------------------------------------
    def _watch_detections(self, ctx: RunContext) -> None:
        from confluent_kafka import Consumer

        assert ctx.guardian is not None
        c = Consumer({"bootstrap.servers": ctx.endpoints.kafka_bootstrap_servers, "group.id": f"demo-{ctx.run_id}",
                      "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
        c.subscribe([ctx.guardian.detections_topic])
        try:
            while not self._stop.is_set():
                for m in c.consume(100, timeout=0.5):
                    if m.error():
                        continue
                    d = json.loads(m.value())
                    w = d.get("workload", {})
                    key = f"{w.get('client_id') or w.get('group')}|{d['signature']}"
                    # what the policy reacts to (high and up) on the scenario's tenants; the rest is in the topic
                    if (w.get("principal") not in self.principals or d["severity"] not in ("high", "critical")
                            or key in self.seen_detections):
                        continue
                    self.seen_detections.add(key)
                    self.note(f"DETECT {d['signature']} ({d['severity']}) {_who(w)}: {d['metric']} "
                              f"{_num(d['observed'])} vs baseline {_num(d['baseline'])} ({d['ratio']:.1f}x) "
                              f"for {d['duration_s']:.0f}s")
        finally:
            c.close()

    def _poll(self, ctx: RunContext, now: float) -> None:
        page = ctx.api("GET", "/v1/quarantines")
        for q in page.get("items", []):
            qid = q["id"]
            if qid not in self.quarantines:
                self.quarantines[qid] = q
                self.note(f"ACT    quarantine {qid} for {_who(q['workload'])} ({q['state']})")
            if qid not in self.verified:
                detail = ctx.api("GET", f"/v1/quarantines/{qid}")
                for a in detail.get("actions", []):
                    if a.get("status") == "verified":
                        self.verified[qid] = time.time()
                        self.note(f"VERIFY throttle applied and read back from the broker: "
                                  f"{a.get('kind')} {a.get('params') or a.get('target')}")
        # the first throttled tenant fixes its client and appeals with its own token; the SRE approves
        if self.appealed or not self.verified:
            return
        qid = min(self.verified, key=self.verified.get)
        if now - self.verified[qid] < 6:
            return
        self.appealed = True
        q = self.quarantines[qid]
        principal = q["workload"].get("principal", "")
        tenant = principal.split(":", 1)[-1]
        for t in ctx.threads:   # the tenant rolls back the bad deploy: its runaway client stops
            rec = getattr(t, "rec", None)
            if rec is not None and rec.role == "runaway" and rec.tenant == tenant \
                    and rec.workload.get("client_id") == q["workload"].get("client_id"):
                t.end_at = time.time()
        self.note(f"TENANT {tenant} rolls back the deploy behind {_who(q['workload'])}")
        a = ctx.api("POST", f"/v1/quarantines/{qid}/appeal", token=self.tenant_tokens[principal],
                    json={"justification": "bad deploy rolled back; the client is back to normal, please lift"})
        self.note(f"APPEAL {tenant} (tenant token) appeals {qid}: appeal {a.get('id')} is {a.get('state')}")
        time.sleep(2.0)
        r = ctx.api("POST", f"/v1/quarantines/{qid}/approve", json={"reason": "rollback confirmed on the dashboards"})
        self.released.add(qid)
        self.note(f"SRE    approves the appeal through the API: {qid} is {r.get('state')}")
        time.sleep(1.0)
        self._report_reverts(ctx)

    def _report_reverts(self, ctx: RunContext) -> None:
        for qid in list(self.released):
            if qid + ":reverted" in self.seen_detections:
                continue
            detail = ctx.api("GET", f"/v1/quarantines/{qid}")
            acts = detail.get("actions", [])
            if acts and all(a.get("status") == "reverted" for a in acts):
                self.seen_detections.add(qid + ":reverted")
                self.note(f"RELEASE {qid}: quota restored to what it was before, read back from the broker")

    def on_escalation(self, rec: dict[str, Any], ok: bool) -> None:
        summary = rec.get("summary", {})
        event = rec.get("event", "?")
        sig = "signature ok" if ok else "BAD SIGNATURE"
        if event in ("quarantined", "created"):
            self.note(f"ESCALATE webhook received ({sig}), {event}:")
            for line in str(summary.get("text", "")).splitlines():
                self.say(f"             | {line}")
        else:
            self.note(f"ESCALATE webhook ({sig}), {event}: {summary.get('headline', '')}")


def _who(w: dict[str, Any]) -> str:
    p = w.get("principal", "?")
    cid = w.get("client_id") or w.get("group") or ""
    short = cid.split("-", 3)[-1] if cid.startswith("drill-") else cid
    return f"{p} {short}".strip()


def _num(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.1f}"


def run_demo(say: Say = print, quick: bool = False, keep: bool = False, out_dir: Path | None = None,
             stack: Any | None = None) -> dict[str, Any]:
    """The whole demo; returns the report summary (and where the files are). ``stack``: a ``DevStack``
    with the demo's small broker (default: ``demo_stack``)."""
    from guardian_dev.drill.cli import machine
    from guardian_dev.drill.report import markdown, summarize, write_report

    out_dir = out_dir or Path.cwd() / "demo-report"
    scenario = demo_scenario(quick)
    stack = stack or demo_stack(scenario)
    was_running = all(v.get("running") for v in stack.status().values())
    say("1/4 local Kafka (small on purpose: 1 I/O thread, 1 network thread) + Redis ...")
    ep = stack.up(progress=lambda m: say(f"  {m}"))
    hooks = DemoHooks(say)
    receiver = EscalationReceiver(hooks.on_escalation).start()
    say("2/4 guardian run --api (collectors at 1 s, stream processors + detectors, action engine, API) ...")
    ctx = None
    try:
        # the demo's guardian watches the whole cluster, like a real one (isolate=False)
        ctx = run_once(scenario, ep, "on", out_dir, say=lambda m: None, hooks=hooks, keep_guardian=keep, isolate=False,
                       guardian_extra_env={"GUARDIAN_ESCALATION__WEBHOOK_URL": receiver.url,
                                           "GUARDIAN_ESCALATION__WEBHOOK_SECRET": receiver.secret})
    finally:
        receiver.stop()
        if ctx is None and not keep and not was_running:
            stack.down(progress=lambda m: None)
    say("3/4 report ...")
    if keep:
        from guardian_dev.drill.runner import collect_guardian_record

        collect_guardian_record(ctx)
    res = summarize(None, ctx, machine("guardian-dev demo" + (" --quick" if quick else "")))
    files = write_report(res, {"on": ctx}, out_dir)
    timeline = "\n".join(f"- +{t - (hooks.onset or ctx.t0):.1f}s {text}" for t, text in hooks.timeline)
    report = out_dir / "demo.md"
    report.write_text("# guardian-dev demo\n\n## Timeline (seconds after onset)\n\n" + timeline + "\n\n"
                      + markdown(res).split("\n", 1)[1] + ("\n![timeline](timeline-on.png)\n" if "plot_on" in files else ""))
    res["report"], res["chart"] = str(report), str(files.get("plot_on", ""))
    res["timeline"] = [text for _, text in hooks.timeline]
    say(f"  report   {report}")
    say(f"  chart    {files.get('plot_on', '(matplotlib not installed)')}")
    say(f"  onset -> detection {res.get('onset_to_detection_p50_s')} s, -> verified throttle "
        f"{res.get('onset_to_verified_action_p50_s')} s; benign p99 during/before {res.get('benign_p99_ratio_on')}; "
        f"actions on benign workloads: {res.get('false_actions')}")
    say("4/4 " + ("everything keeps running:" if keep else "done."))
    assert ctx.guardian is not None
    if keep:
        say(f"  API      {ctx.guardian.api_url}/v1/docs   (guardian pid {ctx.guardian.proc.pid})")
        say(f"  metrics  {ctx.guardian.metrics_url}")
        say("  stop with: kill <guardian pid>; guardian-dev down")
    else:
        if not was_running:
            stack.down(progress=lambda m: None)
            say("  stopped the guardian, Kafka and Redis")
        else:
            say("  stopped the guardian; Kafka and Redis were already running and keep running (`guardian-dev down`)")
    return res
