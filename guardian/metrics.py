"""The guardian's own Prometheus metrics: every ``guardian_*`` series is defined here.

``GuardianMetrics(registry)`` registers everything on the registry it is given
(never the global one) and offers one verb per event, so callers never touch
label names::

    registry = CollectorRegistry()
    metrics = GuardianMetrics(registry, ledger=ledger)   # ledger: optional
    metrics.observe_detection(detection)
    metrics.observe_decision(decision)

Names follow ``guardian_<area>_<name>_<unit>`` (areas: ingest, detector,
engine, actuator, escalation, api, ledger, build). Label values are bounded:
each label either takes values from a fixed set (the signature, severity,
outcome, state and action enums; known sources, reasons, channels) with
anything else reported as ``"other"``, or, for ``tenant`` and API ``route``,
keeps the first ``max_tenants`` / ``max_routes`` distinct values a process
sees and reports later ones as ``"other"``. Nothing here can grow a series
per client-id, per quarantine or per request.

Values that are state rather than events (active quarantines by action,
quarantines and appeals by state, outbox backlog, pause switch) are computed
at scrape time from the ledger by one collector; a failing ledger read sets
``guardian_ledger_up`` to 0 instead of failing the scrape. Ingest lag is
computed at scrape time too (now minus the newest sample processed), so a
worker that stops processing shows a growing lag rather than a frozen one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from guardian.actuators.base import ActionPlan, Actuator
from guardian.model.detection import Severity, Signature
from guardian import errors as _errors
from guardian.policy.effect import RESULTS as _EFFECT_RESULTS
from guardian.model.quarantine import OPEN_STATES, Outcome, QState, StepStatus

if TYPE_CHECKING:  # pragma: no cover
    from wsgiref.simple_server import WSGIServer

    from guardian.model.quarantine import Decision, Quarantine
    from guardian.store.ledger import Ledger

log = logging.getLogger(__name__)

OTHER = "other"

# The fixed label domains. A value outside its domain is reported as OTHER.
SIGNATURES: tuple[str, ...] = tuple(s.value for s in Signature)
SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)
OPEN_QUARANTINE_STATES: tuple[str, ...] = tuple(s.value for s in OPEN_STATES)
ACTIONS: tuple[str, ...] = ("quota", "acl", "pod")
APPEAL_STATES: tuple[str, ...] = ("pending", "granted", "denied")
SOURCES: tuple[str, ...] = ("prometheus", "admin", "librdkafka", "telemetry", "plugin")
# guardian.ingest.codec's BatchDecodeError reasons plus the processor's own (key, invalid, stage).
DEAD_LETTER_REASONS: tuple[str, ...] = ("empty", "json", "metric", "shape", "size", "type", "value",
                                        "version", "workload", "key", "invalid", "stage")
ACTUATOR_OPERATIONS: tuple[str, ...] = ("observe", "apply", "verify", "revert")
CHANNELS: tuple[str, ...] = ("slack", "webhook", "pagerduty", "agent", "log")
RESULTS: tuple[str, ...] = ("ok", "failed")
EFFECT_RESULTS: tuple[str, ...] = _EFFECT_RESULTS   # effective, not_effective, unmeasured, skipped
COMPONENTS: tuple[str, ...] = ("api", "engine", "workers", "cli", "test")
METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
STATUS_CLASSES: tuple[str, ...] = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Error classes: the guardian's error tree, plus anything else as "unexpected".
ERROR_CLASSES: tuple[str, ...] = tuple(sorted(
    name for name, obj in vars(_errors).items()
    if isinstance(obj, type) and issubclass(obj, _errors.GuardianError))) + ("unexpected",)

# Time to sequester: first anomalous sample -> action verified on the cluster.
SEQUESTER_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9/][A-Za-z0-9._:@/{}-]{0,127}$")


def _text(value: Any) -> str:
    return value.value if isinstance(value, Enum) else str(value)


def bounded(value: Any, domain: Iterable[str]) -> str:
    """``value`` (an enum or a string) if it is in ``domain``, else ``"other"``."""
    v = _text(value)
    return v if v in domain else OTHER


def error_class(exc: BaseException | type[BaseException]) -> str:
    """The nearest class of the guardian's error tree, or ``"unexpected"``."""
    cls = exc if isinstance(exc, type) else type(exc)
    for klass in cls.__mro__:
        if klass.__module__ == _errors.__name__ and klass.__name__ in ERROR_CLASSES:
            return klass.__name__
    return "unexpected"


def tenant_of(workload: dict[str, str] | None) -> str | None:
    """The tenant of a workload: its principal without the ``User:`` prefix."""
    principal = (workload or {}).get("principal")
    if not principal:
        return None
    return principal.split(":", 1)[1] if ":" in principal else principal


class FirstSeen:
    """A label domain of the first ``limit`` distinct, well-formed values seen; later ones are ``"other"``."""

    def __init__(self, limit: int, empty: str = "none") -> None:
        self.limit = limit
        self.empty = empty
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        if value is None or value == "":
            return self.empty
        v = _text(value)
        if not _SAFE_VALUE.match(v):
            return OTHER
        with self._lock:
            if v in self._seen:
                return v
            if len(self._seen) < self.limit:
                self._seen.add(v)
                return v
        return OTHER

    def __len__(self) -> int:
        return len(self._seen)


class LedgerCollector(Collector):
    """State read from the ledger at scrape time (one Redis pass per scrape)."""

    def __init__(self, ledger: "Ledger", clock: Callable[[], float], tenants: FirstSeen,
                 limit: int = 2000) -> None:
        self.ledger = ledger
        self.clock = clock
        self.tenants = tenants
        self.limit = limit
        self._was_up = True

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Describing without reading keeps registration free of I/O.
        yield from self._families()

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("guardian_ledger_up", "1 if the last scrape could read the ledger, else 0"),
            GaugeMetricFamily("guardian_ledger_active_quarantines",
                              "Enforcing quarantines (active or appealed, not dry-run) holding an action of this kind",
                              labels=["action"]),
            GaugeMetricFamily("guardian_ledger_quarantines", "Open quarantines by lifecycle state (dry-run included)",
                              labels=["state"]),
            GaugeMetricFamily("guardian_ledger_tenant_quarantines",
                              "Open quarantines by tenant and lifecycle state (dry-run included)",
                              labels=["tenant", "state"]),
            GaugeMetricFamily("guardian_ledger_appeals",
                              "Appeals on the newest quarantines by state (pending = awaiting an SRE)",
                              labels=["state"]),
            GaugeMetricFamily("guardian_ledger_oldest_pending_appeal_age_seconds",
                              "Age of the oldest appeal still awaiting a decision (0 when none)"),
            GaugeMetricFamily("guardian_ledger_outbox_records", "Audit records not yet published to Kafka"),
            GaugeMetricFamily("guardian_ledger_paused", "1 while the global pause switch is on"),
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        (up, active, states, tenant_states, appeals, oldest, outbox, paused) = self._families()
        try:
            quarantines = self.ledger.list(limit=self.limit)
            outbox_len = self.ledger.outbox_len()
            pause = self.ledger.pause_state()
        except _errors.GuardianError as exc:
            # Loud once when it breaks, quiet on every following scrape.
            (log.warning if self._was_up else log.debug)("metrics: ledger unreadable at scrape time: %s", exc)
            self._was_up = False
            up.add_metric([], 0.0)
            yield up
            return
        if not self._was_up:
            log.info("metrics: ledger readable again")
        self._was_up = True
        now = self.clock()
        by_action = dict.fromkeys(ACTIONS, 0)
        by_action[OTHER] = 0
        by_state = dict.fromkeys(OPEN_QUARANTINE_STATES, 0)
        by_tenant: dict[tuple[str, str], int] = {}
        by_appeal = dict.fromkeys(APPEAL_STATES, 0)
        oldest_pending: float | None = None
        for q in quarantines:
            if q.state in OPEN_STATES:
                by_state[q.state.value] += 1
                key = (self.tenants(q.tenant), q.state.value)
                by_tenant[key] = by_tenant.get(key, 0) + 1
            if q.state.enforcing and not q.dry_run:
                for kind in {bounded(p.get("kind", ""), ACTIONS) for p in q.desired}:
                    by_action[kind] += 1
            if q.appeal:
                decision = q.appeal.get("decision")
                appeal_state = "pending" if decision is None else bounded(decision, APPEAL_STATES)
                if appeal_state == "pending" and q.state is not QState.APPEALED:
                    continue  # a stale pending appeal on a finished quarantine is not a backlog
                by_appeal[appeal_state] = by_appeal.get(appeal_state, 0) + 1
                if appeal_state == "pending":
                    ts = float(q.appeal.get("ts", now))
                    oldest_pending = ts if oldest_pending is None else min(oldest_pending, ts)
        up.add_metric([], 1.0)
        for kind, n in by_action.items():
            if kind != OTHER or n:
                active.add_metric([kind], float(n))
        for state, n in by_state.items():
            states.add_metric([state], float(n))
        for (tenant, state), n in sorted(by_tenant.items()):
            tenant_states.add_metric([tenant, state], float(n))
        for state, n in by_appeal.items():
            appeals.add_metric([state], float(n))
        oldest.add_metric([], max(0.0, now - oldest_pending) if oldest_pending is not None else 0.0)
        outbox.add_metric([], float(outbox_len))
        paused.add_metric([], 1.0 if pause else 0.0)
        yield from (up, active, states, tenant_states, appeals, oldest, outbox, paused)


class _IngestLagCollector(Collector):
    """``now - newest sample timestamp processed``, at scrape time; absent before the first sample."""

    def __init__(self, metrics: "GuardianMetrics") -> None:
        self._m = metrics

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("guardian_ingest_lag_seconds",
                                "Seconds between now and the newest sample this process has processed")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fam = GaugeMetricFamily("guardian_ingest_lag_seconds",
                                "Seconds between now and the newest sample this process has processed")
        newest = self._m._newest_sample_ts
        if newest is not None:
            fam.add_metric([], max(0.0, self._m.clock() - newest))
        yield fam


class GuardianMetrics:
    """Every guardian metric on ``registry``; one verb per event.

    ``ledger`` (optional) adds the scrape-time ledger collector; ``clock`` gives
    unix seconds (ingest lag, appeal age). ``max_tenants`` and ``max_routes``
    bound the two open-ended labels per process.
    """

    def __init__(self, registry: CollectorRegistry, *, ledger: "Ledger | None" = None,
                 clock: Callable[[], float] = time.time, component: str = "engine",
                 version: str | None = None, max_tenants: int = 100, max_routes: int = 64) -> None:
        self.registry = registry
        self.clock = clock
        self.tenants = FirstSeen(max_tenants)
        self.routes = FirstSeen(max_routes, empty="unmatched")
        self._newest_sample_ts: float | None = None
        self._lease_held: bool | None = None
        r = registry

        self.build_info = Gauge("guardian_build_info", "Always 1; labels say what runs",
                                ["version", "component"], registry=r)
        self.build_info.labels(version or _version(), bounded(component, COMPONENTS)).set(1)

        # ingest
        self.samples = Counter("guardian_ingest_samples_total",
                               "Samples decoded and handed to the detectors", ["source"], registry=r)
        self.records = Counter("guardian_ingest_records_total", "Records read from the metrics topic", registry=r)
        self.consumer_lag = Gauge("guardian_ingest_consumer_lag_messages",
                                  "Messages between this worker's position and the end of its partition",
                                  ["topic", "partition"], registry=r)
        self._topics = FirstSeen(8)
        self.dead_letters = Counter("guardian_ingest_dead_letters_total",
                                    "Records sent to the dead-letter topic, by decode failure reason",
                                    ["reason"], registry=r)
        r.register(_IngestLagCollector(self))

        # detectors
        self.detections = Counter("guardian_detector_detections_total",
                                  "Detections emitted, by signature, severity and tenant",
                                  ["signature", "severity", "tenant"], registry=r)
        self.tracked_workloads = Gauge("guardian_detector_tracked_workloads",
                                       "Workloads whose normal this process is tracking", registry=r)

        # engine
        self.decisions = Counter("guardian_engine_decisions_total",
                                 "Decisions about detections, by outcome and tenant", ["outcome", "tenant"],
                                 registry=r)
        self.time_to_sequester = Histogram("guardian_engine_time_to_sequester_seconds",
                                           "From the first anomalous sample to the action verified on the cluster",
                                           ["action"], buckets=SEQUESTER_BUCKETS, registry=r)
        self.lease_held = Gauge("guardian_engine_lease_held", "1 while this engine holds the action lease",
                                registry=r)
        self.lease_losses = Counter("guardian_engine_lease_losses_total",
                                    "Times this engine lost the action lease it held", registry=r)
        self.local_detections_dropped = Counter(
            "guardian_engine_local_detections_dropped_total",
            "This worker's detections its own engine did not take in time (queue full); they come through "
            "Kafka instead, later", registry=r)
        self.throttle_effects = Counter("guardian_engine_throttle_effect_total",
                                        "Verified throttles judged on the client's cluster-wide rate, by result "
                                        "(effective, not_effective, unmeasured, skipped)", ["result"], registry=r)
        self.quarantine_cap = Gauge("guardian_engine_max_open_quarantines",
                                    "The configured cap on concurrently open (non-dry-run) quarantines", registry=r)

        # actuators
        self.actuator_errors = Counter("guardian_actuator_errors_total",
                                       "Actuator operations that raised, by actuator and error class",
                                       ["actuator", "error"], registry=r)
        self.actuator_duration = Histogram("guardian_actuator_operation_duration_seconds",
                                           "Duration of actuator operations (failed ones included)",
                                           ["actuator", "operation"], buckets=LATENCY_BUCKETS, registry=r)

        # escalation
        self.notifications = Counter("guardian_escalation_notifications_total",
                                     "Escalation notifications by channel and result", ["channel", "result"],
                                     registry=r)

        # API
        self.requests = Histogram("guardian_api_request_duration_seconds",
                                  "API requests by route template, method and status class",
                                  ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.appeal_events = Counter("guardian_api_appeals_total",
                                     "Appeals filed (pending) and decided (granted, denied)", ["state"], registry=r)

        self.ledger: "Ledger | None" = None
        self.ledger_collector: LedgerCollector | None = None
        if ledger is not None:
            self.attach_ledger(ledger)

    # ---------------------------------------------------------------- wiring
    def attach_ledger(self, ledger: "Ledger", limit: int = 2000) -> None:
        """Add the scrape-time ledger collector (once)."""
        if self.ledger_collector is not None:
            raise _errors.ConfigError("a ledger is already attached to these metrics")
        self.ledger = ledger
        self.ledger_collector = LedgerCollector(ledger, self.clock, self.tenants, limit)
        self.registry.register(self.ledger_collector)

    def instrument(self, actuator: Actuator) -> "InstrumentedActuator":
        """Wrap an actuator so every operation is timed and every exception counted."""
        return InstrumentedActuator(actuator, self)

    def on_engine_event(self, event: str, q: "Quarantine", decision: "Decision | None") -> None:
        """An ``ActionEngine`` ``on_event`` hook: appeal events and time to sequester.

        The engine emits after converging, so a verified action is already in the
        ledger; time to sequester needs an attached ledger to read it. Decisions
        are counted by whoever calls ``engine.handle`` (``observe_decision``):
        the hook only sees decisions that touch a quarantine.
        """
        if event == "appealed":
            self.observe_appeal("pending")
        elif event == "appeal_denied":
            self.observe_appeal("denied")
        elif event == "released" and (q.appeal or {}).get("decision") == "granted":
            self.observe_appeal("granted")
        if event in ("quarantined", "escalated", "approved", "escalation_approved") and self.ledger is not None:
            start = first_anomalous_ts(q.detection)
            for rec in self.ledger.actions(q):
                if rec.rung != q.rung or rec.status is not StepStatus.VERIFIED:
                    continue
                verified = [h["ts"] for h in rec.history if h.get("status") == StepStatus.VERIFIED.value]
                if verified and start is not None:
                    self.observe_sequestered(rec.plan.get("kind", ""), float(verified[0]) - start)

    # ---------------------------------------------------------------- ingest
    def observe_samples(self, count: int, source: str = "prometheus", newest_ts: float | None = None) -> None:
        """``count`` samples decoded; ``newest_ts`` is the newest sample's timestamp (ingest lag)."""
        if count > 0:
            self.samples.labels(bounded(source, SOURCES)).inc(count)
        if newest_ts is not None and (self._newest_sample_ts is None or newest_ts > self._newest_sample_ts):
            self._newest_sample_ts = float(newest_ts)

    def observe_records(self, count: int = 1) -> None:
        self.records.inc(count)

    def set_consumer_lag(self, topic: str, partition: int, messages: int) -> None:
        part = str(int(partition)) if 0 <= int(partition) < 1024 else OTHER
        self.consumer_lag.labels(self._topics(topic), part).set(max(0, messages))

    def observe_dead_letter(self, reason: str, count: int = 1) -> None:
        self.dead_letters.labels(bounded(reason, DEAD_LETTER_REASONS)).inc(count)

    # ---------------------------------------------------------------- detectors
    def observe_detection(self, detection: Any) -> None:
        """A ``guardian.model.detection.Detection`` (or anything with signature, severity, workload)."""
        self.detections.labels(bounded(detection.signature, SIGNATURES), bounded(detection.severity, SEVERITIES),
                               self.tenants(tenant_of(detection.workload))).inc()

    def set_tracked_workloads(self, count: int) -> None:
        self.tracked_workloads.set(count)

    # ---------------------------------------------------------------- engine
    def observe_decision(self, decision: Any) -> None:
        """A ``guardian.model.quarantine.Decision`` (or anything with outcome, workload)."""
        self.decisions.labels(bounded(decision.outcome, OUTCOMES),
                              self.tenants(tenant_of(getattr(decision, "workload", None)))).inc()

    def observe_sequestered(self, action: str, seconds: float) -> None:
        """An action was verified ``seconds`` after the first anomalous sample."""
        self.time_to_sequester.labels(bounded(action, ACTIONS)).observe(max(0.0, seconds))

    def observe_throttle_effect(self, result: str, count: int = 1) -> None:
        """The engine recorded ``count`` throttle effects with this result (guardian.policy.effect)."""
        self.throttle_effects.labels(bounded(result, EFFECT_RESULTS)).inc(count)

    def set_lease_held(self, held: bool) -> None:
        """Call after every take/renew attempt; a held -> not held change counts as a loss."""
        if self._lease_held and not held:
            self.lease_losses.inc()
        self._lease_held = held
        self.lease_held.set(1 if held else 0)

    def set_quarantine_cap(self, cap: int) -> None:
        self.quarantine_cap.set(cap)

    # ---------------------------------------------------------------- actuators
    def observe_actuator_error(self, actuator: str, exc: BaseException | type[BaseException]) -> None:
        self.actuator_errors.labels(bounded(actuator, ACTIONS), error_class(exc)).inc()

    @contextmanager
    def time_actuator(self, actuator: str, operation: str) -> Iterator[None]:
        """Time one actuator operation; an exception is counted as an error and re-raised."""
        start = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self.observe_actuator_error(actuator, exc)
            raise
        finally:
            self.actuator_duration.labels(bounded(actuator, ACTIONS), bounded(operation, ACTUATOR_OPERATIONS)
                                          ).observe(time.perf_counter() - start)

    # ---------------------------------------------------------------- escalation
    def observe_notification(self, channel: str, ok: bool) -> None:
        self.notifications.labels(bounded(channel, CHANNELS), "ok" if ok else "failed").inc()

    # ---------------------------------------------------------------- API
    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """``route`` is the route *template* (``/v1/quarantines/{id}``), never the raw path."""
        status_class = f"{int(status) // 100}xx"
        self.requests.labels(self.routes(route), bounded(method.upper(), METHODS),
                             bounded(status_class, STATUS_CLASSES)).observe(max(0.0, seconds))

    def observe_appeal(self, state: str) -> None:
        """An appeal was filed (``pending``) or decided (``granted`` / ``denied``)."""
        self.appeal_events.labels(bounded(state, APPEAL_STATES)).inc()


def first_anomalous_ts(detection: dict[str, Any] | None) -> float | None:
    """When the runaway began: the first evidence sample, else the detection time minus its duration."""
    if not detection:
        return None
    evidence = detection.get("evidence") or []
    if evidence:
        return float(min(p[0] for p in evidence))
    if "ts" in detection:
        return float(detection["ts"]) - float(detection.get("duration_s", 0.0))
    return None


class InstrumentedActuator(Actuator):
    """Delegates to a real actuator; times each operation and counts its exceptions by error class."""

    def __init__(self, inner: Actuator, metrics: GuardianMetrics) -> None:
        self.inner = inner
        self.kind = inner.kind  # type: ignore[misc]
        self._m = metrics

    def plan(self, target: dict[str, str], params: dict[str, Any], quarantine_id: str = "") -> ActionPlan:
        return self.inner.plan(target, params, quarantine_id)   # pure: refusals are decisions, not errors

    def observe(self, plan: ActionPlan) -> dict[str, Any]:
        with self._m.time_actuator(self.kind, "observe"):
            return self.inner.observe(plan)

    def apply(self, plan: ActionPlan) -> None:
        with self._m.time_actuator(self.kind, "apply"):
            self.inner.apply(plan)

    def verify(self, plan: ActionPlan) -> bool:
        with self._m.time_actuator(self.kind, "verify"):
            return self.inner.verify(plan)

    def revert(self, plan: ActionPlan, before: dict[str, Any]) -> None:
        with self._m.time_actuator(self.kind, "revert"):
            self.inner.revert(plan, before)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kafka-workload-guardian")
    except PackageNotFoundError:
        return "unknown"


def serve_metrics(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> "WSGIServer":
    """Serve ``registry`` on ``http://addr:port/metrics`` from a daemon thread (workers, engine).

    The API mounts the same registry on its own ``/metrics`` route instead.
    Returns the server; ``shutdown()`` then ``server_close()`` stop it.
    """
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
