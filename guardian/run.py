"""`guardian run`: the wiring of one guardian process.

In order: create the guardian topics when missing, serve ``/metrics`` (when
``GUARDIAN_INGEST__METRICS_PORT`` is set), start the configured collectors
in threads, start the action engine in a thread (it consumes
``guardian.detections`` while it holds the Redis lease), optionally the HTTP
API in a thread (``--api``; it shares the engine, so an SRE's release is
converged at once), then run a stream-processor worker in the foreground
until SIGTERM/SIGINT, and stop the rest. If the engine thread dies, the
process stops too and exits 1 (``EngineDeath``), so Kubernetes restarts it
rather than leaving a worker that ingests with nobody acting.

The detector stage (``build_stage``) is ``DetectorStage``: the detectors
package's ``DetectorPipeline`` behind the ingest ``SampleStage`` interface.
The pipeline reports a runaway once, at its onset; the policy wants
evidence that lasts (``evidence_s``). ``DetectorStage`` therefore re-emits
an ongoing episode (same detection id, growing ``duration_s``) every few
seconds while the pipeline still has it in alarm, so the engine acts once
the evidence suffices and climbs the ladder if the runaway continues.

The stage also feeds ``ClusterTraffic`` (bytes/s in and out of every
broker, from the broker-level samples it sees), the engine's
``cluster_traffic`` provider for the share-of-traffic cap, and
``ClusterPressure`` (broker pressure signals and each client's load), the
engine's ``cluster_pressure`` provider for the harm test. In one process
that is the whole cluster; with several workers the engine's process knows
it only when its worker owns the partition of the broker-level samples, and
the policy's ``on_unknown_traffic`` decides otherwise.

It feeds ``FollowedRates`` too (``guardian.engine.effect``): the cluster-wide
rate of each client the engine follows after a throttle is verified, with its
per-broker parts, which is how the engine judges the throttle's effect
without scraping anything itself. With several workers the engine's process
sees only its own worker's clients; a throttle on another's is recorded as
``unmeasured``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import typer

from guardian.engine.effect import FollowedRates
from guardian.engine.pressure import ClusterPressure
from guardian.ingest.cluster_series import ClusterSeries
from guardian.ingest.processor import SampleStage
from guardian.settings import GuardianSettings

log = logging.getLogger(__name__)

_BYTE_RATES = ("produce_byte_rate", "fetch_byte_rate")
# decisions not worth a log line (the audit trail has them all)
_QUIET_OUTCOMES = frozenset({"no_policy", "not_reacting", "insufficient_evidence", "cooling_down", "under_review",
                             "top_rung", "protected"})


# ------------------------------------------------------------------------------- the stage

class ClusterTraffic:
    """Bytes/s through the cluster: produce + fetch of every broker, averaged over ``window_s``.

    Fed with broker-level samples (a workload with only ``broker`` set). The
    average keeps a bursty moment (a rewinding consumer reads in bursts) from
    making the cluster look idle next to the detection's smoothed rate. A
    broker not heard from for ``stale_after_s`` no longer counts. Called with
    no argument it is the engine's ``cluster_traffic`` provider (``None`` =
    unknown).
    """

    def __init__(self, stale_after_s: float = 60.0, window_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.stale_after_s = stale_after_s
        self.window_s = window_s
        self.clock = clock
        self._series: dict[tuple[str, str], list[tuple[float, float]]] = {}

    def observe(self, batch: Any) -> None:
        w = batch.workload
        if w.broker is None or any(getattr(w, k) is not None for k in ("principal", "client_id", "group",
                                                                        "topic", "pod")):
            return
        for metric, ts, value in zip(batch.metrics, batch.ts, batch.values):
            if metric.value in _BYTE_RATES:
                series = self._series.setdefault((w.broker, metric.value), [])
                series.append((ts, value))
                newest = max(t for t, _ in series)
                self._series[(w.broker, metric.value)] = [(t, v) for t, v in series if newest - t <= self.window_s]

    def __call__(self) -> float | None:
        now = self.clock()
        total, known = 0.0, False
        for series in list(self._series.values()):
            points = list(series)
            if not points or now - max(t for t, _ in points) > self.stale_after_s:
                continue
            known = True
            total += sum(v for _, v in points) / len(points)
        return total if known else None


@dataclass
class _Episode:
    first: Any            # the Detection the pipeline emitted at onset
    onset: float          # when the evidence started
    last_emit: float      # sample time of the last (re-)emission


@dataclass
class DetectorStage:
    """``DetectorPipeline`` as the processors' ``SampleStage``, with re-emission of ongoing episodes.

    ``reemit_s``: how often an ongoing episode is re-emitted during its first
    ``fast_phase_s`` (while the policy may still be waiting for evidence);
    ``slow_reemit_s`` after that (enough for the ladder's cool-downs).
    """

    pipeline: Any
    traffic: ClusterTraffic | None = None
    metrics: Any | None = None
    pressure: Any | None = None      # guardian.engine.pressure.ClusterPressure
    rates: Any | None = None         # guardian.engine.effect.FollowedRates
    reemit_s: float = 2.0
    fast_phase_s: float = 60.0
    slow_reemit_s: float = 30.0
    evict_every_s: float = 60.0      # how often (sample time) series unseen for idle_evict_s are forgotten
    cluster_series: ClusterSeries = field(default_factory=ClusterSeries)
    _episodes: dict[tuple[Any, str], _Episode] = field(default_factory=dict)
    _batches: int = 0
    _last_evict: float | None = None
    evicted: int = 0                 # series forgotten so far (bounded memory: every client-id ever seen is not kept)

    def process(self, batch: Any) -> list[Any]:
        return self.process_many([batch])[0]

    def process_many(self, batches: list[Any]) -> list[list[Any]]:
        """``process`` for several records at once; per input batch, the detections to emit with it.

        The detectors are vectorised across workloads and cost ~0.3 ms a call whatever its size, so
        one call per record held a worker core to a few thousand samples/s; here the cluster-wide
        batches of every record go to the detectors in one call (docs/BENCHMARKS.md, "Scale").
        A workload's detections go with the last of its records in ``batches``."""
        wholes: list[tuple[int, Any]] = []
        for i, batch in enumerate(batches):
            # per-broker batches feed the pressure and traffic views as they are (harm is per broker) ...
            if self.traffic is not None:
                self.traffic.observe(batch)
            if self.pressure is not None:
                self.pressure.observe(batch)
            # ... and reach the detectors as cluster-wide series (guardian.ingest.cluster_series)
            for whole in self.cluster_series.combine(batch):
                if self.rates is not None:
                    self._follow(whole)
                wholes.append((i, whole))
        found: dict[Any, list[Any]] = {}
        for d in self.pipeline.process_batches([whole for _, whole in wholes]):
            found.setdefault(_workload(d.workload), []).append(d)
        last: dict[Any, tuple[int, float]] = {}   # workload -> (its last record's index, newest sample time)
        for i, whole in wholes:
            newest = max(whole.ts) if len(whole) else time.time()
            last[whole.workload] = (i, max(newest, last.get(whole.workload, (i, newest))[1]))
        out: list[list[Any]] = [[] for _ in batches]
        for workload, (i, newest) in last.items():
            out[i].extend(self._episodes_of(workload, found.get(workload, []), newest))
        before, self._batches = self._batches, self._batches + len(batches)
        self._evict(max((max(b.ts) for b in batches if len(b)), default=time.time()))
        # samples and detections are counted by the processor (guardian.ingest.processor)
        if self.metrics is not None and before // 200 != self._batches // 200:
            self.metrics.set_tracked_workloads(self.pipeline.tracked_series())
        return out

    def _episodes_of(self, workload: Any, detections: list[Any], newest: float) -> list[Any]:
        """The pipeline's new detections of ``workload`` open episodes; ongoing ones are re-emitted."""
        fresh = set()
        for d in detections:
            key = (workload, d.signature.value)
            self._episodes[key] = _Episode(first=d, onset=d.ts - d.duration_s, last_emit=d.ts)
            fresh.add(key)
        return [self._with_brokers(d, workload) for d in detections + self._continuing(workload, newest, fresh)]

    def _follow(self, whole: Any) -> None:
        """Hand a cluster-wide sample to the engine's followed rates (each scrape in the batch)."""
        w = whole.workload
        detail = lambda metric: self.cluster_series.detail(w, _metric(metric))  # noqa: E731
        for ts in sorted(set(whole.ts)):
            values = {m.value: v for m, t, v in zip(whole.metrics, whole.ts, whole.values) if t == ts}
            self.rates.observe(w.principal, w.client_id, values, ts, detail)

    def _with_brokers(self, d: Any, workload: Any) -> Any:
        """The detection with its metric's per-broker values (``extra["brokers"]``), when it has parts on brokers."""
        try:
            detail = self.cluster_series.detail(workload, _metric(d.metric))
        except ValueError:
            return d
        if not detail:
            return d
        return dataclasses.replace(d, extra={**d.extra, "brokers": {b: round(v, 3) for b, v in sorted(detail.items())}})

    def _evict(self, now: float) -> None:
        """Every ``evict_every_s``: the pipeline forgets series unseen for its ``idle_evict_s``, and an
        episode whose workload went silent (it never recovers in the pipeline) is forgotten as well."""
        if self._last_evict is None:
            self._last_evict = now
        if now - self._last_evict < self.evict_every_s:
            return
        self._last_evict = now
        self.evicted += self.pipeline.evict_idle(now)
        idle_s = self.pipeline.config.idle_evict_s
        self.cluster_series.forget_idle(now, idle_s)
        for key in [k for k, ep in self._episodes.items() if now - ep.last_emit > idle_s]:
            del self._episodes[key]

    # -- state (saved and restored per stream partition by guardian.ingest.state) -------
    def snapshot(self, select: Callable[[Any], bool]) -> dict[str, Any]:
        """Everything this stage knows about the workloads ``select`` accepts, as plain data: the
        pipeline's series, the open cluster-wide rounds and the episodes being re-emitted."""
        episodes = [[w.as_dict(), sig, ep.first.to_dict(), ep.onset, ep.last_emit]
                    for (w, sig), ep in self._episodes.items() if select(w)]
        return {"pipeline": self.pipeline.snapshot_workloads(select),
                "cluster_series": self.cluster_series.snapshot(select), "episodes": episodes}

    def restore(self, state: dict[str, Any]) -> None:
        """Put back what ``snapshot`` saved. ``SnapshotError`` if it does not fit; the caller then
        ``forget``s the partition, so a half-restored one starts cold rather than inconsistent."""
        from detectors.detection import Detection
        from guardian.errors import SnapshotError
        from guardian.samples import Workload

        try:
            episodes = {(Workload(**wd), str(sig)): _Episode(first=Detection.from_dict(first), onset=float(onset),
                                                              last_emit=float(last))
                        for wd, sig, first, onset, last in state["episodes"]}
            rounds = state["cluster_series"]
            pipeline = state["pipeline"]
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"malformed stage state: {type(exc).__name__}: {exc}") from exc
        self.pipeline.restore_workloads(pipeline)
        try:
            self.cluster_series.restore(rounds)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SnapshotError(f"malformed cluster-wide rounds: {type(exc).__name__}: {exc}") from exc
        self._episodes.update(episodes)

    def forget(self, select: Callable[[Any], bool]) -> int:
        """Drop the workloads ``select`` accepts (their partition moved away); returns the series dropped."""
        dropped = self.pipeline.forget_workloads(select)
        self.cluster_series.forget(select)
        for key in [k for k in self._episodes if select(k[0])]:
            del self._episodes[key]
        return dropped

    def _continuing(self, workload: Any, now: float, fresh: set) -> list[Any]:
        mine = [k for k in self._episodes if k[0] == workload and k not in fresh]
        if not mine:
            return []
        snap = self.pipeline.snapshot_workload(workload)
        out = []
        for key in mine:
            ep = self._episodes[key]
            if key[1] not in snap.get("active", {}):
                del self._episodes[key]        # recovered: the next onset is a new episode
                continue
            age = now - ep.onset
            every = self.reemit_s if age < self.fast_phase_s else self.slow_reemit_s
            if now - ep.last_emit < every:
                continue
            ep.last_emit = now
            d = ep.first
            series = snap.get("series", {}).get(d.metric, {})
            fast, base = series.get("fast"), series.get("base")
            changes: dict[str, Any] = {"ts": now, "duration_s": max(0.0, now - ep.onset)}
            if age >= self.fast_phase_s:
                # a fresh id per slow period: if an SRE released the workload and it still runs
                # away, the engine may open a new quarantine (the old id is taken)
                changes["id"] = f"{d.id}.{int(age // self.slow_reemit_s)}"
            if isinstance(fast, (int, float)) and isinstance(base, (int, float)) and base == base and fast == fast:
                from detectors.pipeline import severity_of

                floor = self.pipeline.config.tiers[_metric(d.metric)].floor
                ratio = (float(fast) + floor) / (max(float(base), 0.0) + floor)
                # a runaway found early (the broker's windowed rate still climbing) grows more severe
                severity = max(d.severity, severity_of(ratio), key=lambda s: s.rank)
                changes.update(observed=float(fast), baseline=float(base), ratio=ratio, severity=severity)
            out.append(dataclasses.replace(d, **changes))
        return out


def _metric(name: str) -> Any:
    from guardian.samples import Metric

    return Metric(name)


def _workload(identity: dict[str, str]) -> Any:
    from guardian.samples import Workload

    return Workload(**identity)


def detector_config(settings: GuardianSettings) -> Any:
    from detectors.config import DetectorConfig

    if settings.detector_file is None:
        return DetectorConfig()
    import yaml

    from guardian.errors import ConfigError

    try:
        data = yaml.safe_load(settings.detector_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{settings.detector_file}: {exc}") from exc
    return DetectorConfig.from_dict(data)


def build_stage(settings: GuardianSettings, traffic: ClusterTraffic | None = None,
                metrics: Any | None = None, pressure: Any | None = None, rates: Any | None = None) -> SampleStage:
    """The detector stage the processors hand each workload's batch to."""
    from detectors.pipeline import DetectorPipeline

    return DetectorStage(DetectorPipeline(detector_config(settings)), traffic=traffic, metrics=metrics,
                         pressure=pressure, rates=rates)


def build_state_keeper(settings: GuardianSettings, stage: Any) -> tuple[Any, Callable[[], None]]:
    """(keeper, close) saving ``stage``'s detector state per metrics partition in the ledger's Redis;
    (None, no-op) when ``GUARDIAN_STATE__ENABLED`` is false or the stage keeps no state."""
    from guardian.ingest.state import PartitionStateKeeper, RedisSnapshotStore, StatefulStage

    if not settings.state.enabled or not isinstance(stage, StatefulStage):
        return None, lambda: None
    import redis

    from guardian.api.app import redis_url_for

    client = redis.Redis.from_url(redis_url_for(settings), socket_timeout=5, socket_connect_timeout=5)
    st = settings.state
    store = RedisSnapshotStore(client, settings.redis.prefix, settings.ingest.app_id, settings.topics.metrics,
                               ttl_s=st.ttl_s)
    keeper = PartitionStateKeeper(stage, store, settings.topics.metrics, interval_s=st.interval_s,
                                  max_bytes=st.max_bytes)
    return keeper, client.close


# ------------------------------------------------------------------------------- the engine

def _kafka_python_config(settings: GuardianSettings) -> dict[str, Any]:
    k = settings.kafka
    conf: dict[str, Any] = {"security_protocol": k.security_protocol}
    if k.sasl_mechanism:
        conf.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username or "",
                    sasl_plain_password=k.sasl_password.get_secret_value())
    if k.ssl_ca_location:
        conf["ssl_cafile"] = k.ssl_ca_location
    return conf


def _escalation(settings: GuardianSettings, metrics: Any) -> tuple[Any, Any] | None:
    """(dispatcher, engine hook) for the configured channels, or None when none is configured."""
    from guardian.escalation import Links
    from guardian.escalation_dispatch import EngineEscalationHook, EscalationDispatcher
    from guardian.escalation_senders import channels_from_settings

    e = settings.escalation
    channels = channels_from_settings(e)   # ConfigError naming the GUARDIAN_ESCALATION__* at fault
    if not channels:
        return None
    base = e.api_base_url or f"http://{settings.api.host}:{settings.api.port}"
    dispatcher = EscalationDispatcher(
        channels, on_outcome=lambda ch, outcome: metrics.observe_notification(ch, outcome == "sent")
        if outcome in ("sent", "failed") else None).start()
    return dispatcher, EngineEscalationHook(dispatcher, Links(api_base_url=base, dashboard_url=e.dashboard_url),
                                            events=e.events)


def pod_resolver_for(pod: Any, namespaces: list[str]) -> Callable[[dict[str, str]], tuple[str, str] | None] | None:
    """Find the pod running a workload by its client-id/principal annotations (the first match).

    Only a client names a pod: a principal-wide or group workload (a partition or rebalance
    storm) resolves to none, never to whichever of the principal's pods sorts first."""
    if not namespaces:
        return None

    def resolve(workload: dict[str, str]) -> tuple[str, str] | None:
        if not workload.get("client_id"):
            return None
        refs = pod.find_pods(namespaces, client_id=workload.get("client_id"), principal=workload.get("principal"))
        return (refs[0].namespace, refs[0].pod) if refs else None

    return resolve


def _pod_actuator() -> Any | None:
    """The pod actuator when Kubernetes credentials exist (in a pod, $KUBECONFIG or ~/.kube/config)."""
    from pathlib import Path

    if not (os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("KUBECONFIG")
            or (Path.home() / ".kube" / "config").exists()):
        return None
    from actions.pod import PodActuator
    from guardian.errors import PermanentError

    try:
        return PodActuator.from_kubeconfig()
    except PermanentError as exc:
        log.warning("pod isolation unavailable: %s", exc)
        return None


class _MeteredLease:
    """The Redis lease, reporting every take/renew to the metrics."""

    def __init__(self, lease: Any, metrics: Any) -> None:
        self._lease, self._metrics = lease, metrics
        self.renew_every_s = lease.renew_every_s

    def ensure(self) -> bool:
        held = self._lease.ensure()
        self._metrics.set_lease_held(held)
        return held

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lease, name)


@dataclass
class EngineHandle:
    """What ``start_action_engine`` started; ``close`` after the threads stopped."""

    engine: Any
    threads: list[threading.Thread]
    closers: list[Callable[[], None]]

    def close(self) -> None:
        for c in reversed(self.closers):
            try:
                c()
            except Exception:  # noqa: BLE001 - best effort at shutdown, say what failed
                log.exception("closing %s failed", getattr(c, "__qualname__", c))


def build_engine(settings: GuardianSettings, metrics: Any, traffic: Callable[[], float | None] | None,
                 owner: str, extra_hooks: list[Callable[..., None]] | None = None,
                 pressure: Callable[[], Any] | None = None,
                 rates: Any | None = None) -> tuple[Any, list[Callable]]:
    """The acting engine: ledger, policies, instrumented actuators, audit sink, lease, escalation."""
    import redis

    from actions.acl import AclActuator
    from actions.quota import QuotaActuator
    from guardian.api.app import redis_url_for
    from guardian.audit import KafkaAuditSink
    from guardian.engine.engine import ActionEngine
    from guardian.engine.lease import RedisLease
    from guardian.kafka_admin import ClientQuotaAdmin, GroupMembers
    from guardian.ledger import Ledger
    from guardian.policy import default_policy_path, load_policy

    closers: list[Callable[[], None]] = []
    client = redis.Redis.from_url(redis_url_for(settings), socket_timeout=5, socket_connect_timeout=5)
    closers.append(client.close)
    ledger = Ledger(client, prefix=settings.redis.prefix)
    policies = load_policy(settings.policy_file or default_policy_path())
    metrics.attach_ledger(ledger)
    metrics.set_quarantine_cap(policies.global_.max_concurrent_quarantines)
    conf = settings.kafka.client_config()
    quota = QuotaActuator(ClientQuotaAdmin(settings.kafka.bootstrap_servers, **_kafka_python_config(settings)))
    closers.append(quota.close)
    actuators: dict[str, Any] = {"quota": quota, "acl": AclActuator.from_config(conf)}
    pod = _pod_actuator()
    pod_resolver = None
    if pod is not None:
        actuators["pod"] = pod
        closers.append(pod.close)
        pod_resolver = pod_resolver_for(pod, settings.kubernetes.namespaces)
    sink = KafkaAuditSink(conf, settings.topics.decisions)
    closers.append(sink.close)
    lease = RedisLease(client, ledger.k("lease"), owner, ttl_s=10.0)
    closers.append(lease.release)
    hooks: list[Callable[..., None]] = [metrics.on_engine_event]
    esc = _escalation(settings, metrics)
    if esc is not None:
        dispatcher, hook = esc
        hooks.append(hook)
        closers.append(dispatcher.stop)
    hooks += extra_hooks or []

    def on_event(event: str, q: Any, d: Any) -> None:
        for h in hooks:
            try:
                h(event, q, d)
            except Exception:  # noqa: BLE001 - one failing hook never starves the others
                log.exception("engine event hook %r failed", h)

    engine_cls = _metered_engine_class()
    engine = engine_cls(ledger, policies, {k: metrics.instrument(a) for k, a in actuators.items()},
                        audit_sink=sink, lease=_MeteredLease(lease, metrics), cluster_traffic=traffic,
                        cluster_pressure=pressure,
                        on_event=on_event, name=owner, pod_resolver=pod_resolver,
                        group_members=GroupMembers(conf), client_rates=rates.read if rates is not None else None)
    engine.metrics = metrics
    return engine, closers


def _metered_engine_class() -> type:
    from guardian.engine.effect import RESULTS as EFFECT_RESULTS
    from guardian.engine.engine import ActionEngine

    class MeteredEngine(ActionEngine):
        """Counts every decision (``run_forever`` drops ``handle``'s return value) and every throttle
        effect ``tick`` recorded."""

        metrics: Any = None

        def tick(self, now: float | None = None) -> dict[str, int]:
            counts = super().tick(now)
            if self.metrics is not None:
                for result in EFFECT_RESULTS:
                    if counts.get(result):
                        self.metrics.observe_throttle_effect(result, counts[result])
            return counts

        def handle(self, detection: Any) -> Any:
            d = super().handle(detection)
            if self.metrics is not None:
                self.metrics.observe_decision(d)
            if d.outcome.value not in _QUIET_OUTCOMES:
                log.warning("decision %s for %s: %s", d.outcome.value, detection.workload, d.reason)
            return d

    return MeteredEngine


def run_engine(engine: Any, source: Any, stop: threading.Event, on_death: Callable[[BaseException], None],
               poll_s: float = 0.2, tick_s: float = 1.0) -> None:
    """The engine thread: ``run_forever`` until ``stop``, then close ``source``.

    ``run_forever`` retries every ``GuardianError`` itself, so anything escaping it is a bug or a
    dead dependency: the engine is gone and nobody acts on detections any more. ``stop`` is set
    (the collectors and the API stop with it) and ``on_death(exc)`` decides what the process does.
    """
    try:
        engine.run_forever(source, stop, poll_s=poll_s, tick_s=tick_s)
    except BaseException as exc:  # noqa: BLE001 - handed to on_death, never swallowed
        stop.set()
        on_death(exc)
    finally:
        source.close()


class EngineDeath:
    """``run()``'s ``on_death``: one clear line, then SIGTERM to this process, which stops the faust
    worker the way Kubernetes does; ``run()`` then exits non-zero so the pod is restarted instead of
    ingesting with no engine acting."""

    exit_code = 1

    def __init__(self) -> None:
        self.exc: BaseException | None = None

    def __call__(self, exc: BaseException) -> None:
        self.exc = exc
        log.critical("action engine died (%s: %s); stopping guardian run (exit %d) so it is restarted",
                     type(exc).__name__, exc, self.exit_code, exc_info=exc)
        os.kill(os.getpid(), signal.SIGTERM)


def start_action_engine(settings: GuardianSettings, stop: threading.Event, metrics: Any,
                        traffic: Callable[[], float | None] | None = None,
                        owner: str | None = None, pressure: Callable[[], Any] | None = None,
                        on_death: Callable[[BaseException], None] | None = None,
                        rates: Any | None = None) -> EngineHandle:
    """Start the engine over ``guardian.detections`` in a thread; it acts only while it holds the lease.

    ``on_death`` is called if the engine thread dies (default: ``EngineDeath``, which stops the process)."""
    from guardian.engine.source import KafkaDetectionSource

    owner = owner or f"guardian-{socket.gethostname()}-{os.getpid()}"
    engine, closers = build_engine(settings, metrics, traffic, owner, pressure=pressure, rates=rates)
    source = KafkaDetectionSource(settings.kafka.client_config(), settings.topics.detections,
                                  group_id=f"{settings.ingest.app_id}-engine")
    t = threading.Thread(target=run_engine, args=(engine, source, stop, on_death or EngineDeath()),
                         name="action-engine", daemon=True)
    t.start()
    return EngineHandle(engine, [t], closers)


# ------------------------------------------------------------------------------- /metrics and the API

def start_api(settings: GuardianSettings, engine: Any) -> tuple[Any, threading.Thread]:
    import uvicorn

    from guardian.api.app import create_app

    app = create_app(settings, engine=engine)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.api.host, port=settings.api.port,
                                           log_level="warning", lifespan="off"))
    t = threading.Thread(target=server.run, name="api", daemon=True)
    t.start()
    return server, t


# ------------------------------------------------------------------------------- the process

def run(settings: GuardianSettings | None = None, worker_id: str | None = None,
        collectors: list[str] | None = None,
        stage_factory: Callable[..., SampleStage] = build_stage,
        loglevel: str = "warning", api: bool = False) -> None:
    from prometheus_client import CollectorRegistry

    from guardian.escalation_senders import channels_from_settings
    from guardian.ingest.collect import start_collectors
    from guardian.ingest.worker import create_app, run_worker
    from guardian.metrics import GuardianMetrics, serve_metrics
    from guardian.topics import ensure_topics

    settings = settings or GuardianSettings()
    channels_from_settings(settings.escalation)   # a channel's ConfigError stops us before anything starts
    worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
    created = ensure_topics(settings.kafka.client_config(), settings.topics)
    if created:
        log.warning("created topics: %s", ", ".join(created))
    registry = CollectorRegistry()
    metrics = GuardianMetrics(registry, component="engine")   # one registry: every guardian_* metric once
    traffic = ClusterTraffic(stale_after_s=max(30.0, 6 * settings.ingest.scrape_interval_s))
    pressure = ClusterPressure(stale_after_s=max(30.0, 6 * settings.ingest.scrape_interval_s))
    rates = FollowedRates()
    server = None
    if settings.ingest.metrics_port:
        server = serve_metrics(registry, settings.ingest.metrics_port)
    stop = threading.Event()
    threads = start_collectors(settings, stop, collectors)
    death = EngineDeath()
    handle = start_action_engine(settings, stop, metrics, traffic, owner=f"guardian-{worker_id}",
                                 pressure=pressure, on_death=death, rates=rates)
    threads += handle.threads
    api_server = None
    if api:
        api_server, t = start_api(settings, handle.engine)
        threads.append(t)
        log.warning("API on http://%s:%d (docs /v1/docs)", settings.api.host, settings.api.port)
    stage = stage_factory(settings, traffic, metrics, pressure, rates)
    state, close_state = build_state_keeper(settings, stage)
    app, _stats = create_app(settings, stage, registry, worker_id, metrics=metrics, state=state)
    try:
        run_worker(app, loglevel)
    finally:
        close_state()
        stop.set()
        if api_server is not None:
            api_server.should_exit = True
        for t in threads:
            t.join(timeout=30)
        handle.close()
        if server is not None:
            server.shutdown()
    if death.exc is not None:
        raise SystemExit(death.exit_code)


def run_command(
    worker_id: str = typer.Option(None, help="Name of this worker (default host-pid)."),
    collectors: str = typer.Option(None, help="Comma-separated collectors (default from settings); '' for none."),
    loglevel: str = typer.Option("warning", help="faust/worker log level."),
    api: bool = typer.Option(False, "--api", help="Serve the HTTP API from this process too "
                                                  "(GUARDIAN_API__HOST/PORT)."),
) -> None:
    """Run the collectors, the stream processors, the action engine (and the API) until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "faust", "aiokafka", "mode", "httpx", "uvicorn.access", "guardian.ingest.collect"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    names = None if collectors is None else [c for c in collectors.split(",") if c]
    run(worker_id=worker_id, collectors=names, loglevel=loglevel, api=api)
