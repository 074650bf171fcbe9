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

The detector stage is ``guardian.ingest.stage.DetectorStage``; this file only
builds it, with the providers the engine reads (cluster traffic, pressure, the
rates it follows after a throttle), and keeps its state in Redis. Each worker's
stage sees only part of those (records are keyed by principal), so with
``GUARDIAN_VIEW__ENABLED`` (the default) every worker publishes its part to
Redis and the engine, wherever the lease is, reads every live worker's part
merged (``guardian.ingest.view``, ``guardian.policy.view``): correct with any
number of workers.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import typer

from guardian.ingest.processor import SampleStage
from guardian.ingest.stage import build_stage, stage_providers
from guardian.ingest.state import build_state_keeper
from guardian.ingest.view import build_shared_view
from guardian.settings import GuardianSettings

if TYPE_CHECKING:
    from guardian.engine.source import LocalDetections

log = logging.getLogger(__name__)

# decisions not worth a log line (the audit trail has them all)
_QUIET_OUTCOMES = frozenset({"no_policy", "not_reacting", "insufficient_evidence", "cooling_down", "under_review",
                             "top_rung", "protected"})


# ------------------------------------------------------------------------------- the engine

def _escalation(settings: GuardianSettings, metrics: Any) -> tuple[Any, Any] | None:
    """(dispatcher, engine hook) for the configured channels, or None when none is configured."""
    from guardian.escalation.summary import Links
    from guardian.escalation.dispatch import EngineEscalationHook, EscalationDispatcher
    from guardian.escalation.senders import channels_from_settings

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
    from guardian.actuators.pod import PodActuator
    from guardian.errors import PermanentError

    try:
        return PodActuator.from_kubeconfig()
    except PermanentError as exc:
        log.warning("pod isolation unavailable: %s", exc)
        return None


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
                 rates: Callable[[str, str, str], Any] | None = None) -> tuple[Any, list[Callable]]:
    """The acting engine: ledger, policies, instrumented actuators, audit sink, lease, escalation.

    ``traffic``, ``pressure`` and ``rates`` are its cluster providers (``cluster_traffic``,
    ``cluster_pressure``, ``client_rates``)."""
    import redis

    from guardian.actuators.acl import AclActuator
    from guardian.actuators.quota import QuotaActuator
    from guardian.settings import redis_url_for
    from guardian.store.audit import KafkaAuditSink
    from guardian.engine.lease import RedisLease
    from guardian.clients.kafka_admin import ClientQuotaAdmin, GroupMembers
    from guardian.store.ledger import Ledger
    from guardian.policy.config import default_policy_path, load_policy

    closers: list[Callable[[], None]] = []
    client = redis.Redis.from_url(redis_url_for(settings), socket_timeout=5, socket_connect_timeout=5)
    closers.append(client.close)
    ledger = Ledger(client, prefix=settings.redis.prefix)
    policies = load_policy(settings.policy_file or default_policy_path())
    metrics.attach_ledger(ledger)
    metrics.set_quarantine_cap(policies.global_.max_concurrent_quarantines)
    conf = settings.kafka.client_config()
    quota = QuotaActuator(ClientQuotaAdmin(settings.kafka.bootstrap_servers, **settings.kafka.kafka_python_config()))
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
    lease = RedisLease(client, ledger.k("lease"), owner, ttl_s=10.0, on_ensure=metrics.set_lease_held)
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

    from guardian.engine.engine import ActionEngine

    engine = ActionEngine(ledger, policies, {k: metrics.instrument(a) for k, a in actuators.items()},
                          audit_sink=sink, lease=lease, cluster_traffic=traffic, cluster_pressure=pressure,
                          on_event=on_event, name=owner, pod_resolver=pod_resolver,
                          group_members=GroupMembers(conf), client_rates=rates,
                          on_decision=_decision_observer(metrics), on_tick=_tick_observer(metrics))
    return engine, closers


def _decision_observer(metrics: Any) -> Callable[[Any, Any], None]:
    """The engine's ``on_decision``: count every decision, and log those worth a line."""
    def observe(detection: Any, d: Any) -> None:
        metrics.observe_decision(d)
        if d.outcome.value not in _QUIET_OUTCOMES:
            log.warning("decision %s for %s: %s", d.outcome.value, detection.workload, d.reason)

    return observe


def _tick_observer(metrics: Any) -> Callable[[dict[str, int]], None]:
    """The engine's ``on_tick``: count the throttle effects a tick recorded."""
    from guardian.policy.effect import RESULTS as EFFECT_RESULTS

    def observe(counts: dict[str, int]) -> None:
        for result in EFFECT_RESULTS:
            if counts.get(result):
                metrics.observe_throttle_effect(result, counts[result])

    return observe


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
                        rates: Callable[[str, str, str], Any] | None = None,
                        local: LocalDetections | None = None) -> EngineHandle:
    """Start the engine over ``guardian.detections`` in a thread; it acts only while it holds the lease.

    ``on_death`` is called if the engine thread dies (default: ``EngineDeath``, which stops the process).
    ``local`` (a ``LocalDetections``) brings this process's own detections without the broker."""
    from guardian.engine.source import KafkaDetectionSource

    owner = owner or f"guardian-{socket.gethostname()}-{os.getpid()}"
    engine, closers = build_engine(settings, metrics, traffic, owner, pressure=pressure, rates=rates)
    source = KafkaDetectionSource(settings.kafka.client_config(), settings.topics.detections,
                                  group_id=f"{settings.ingest.app_id}-engine", local=local)
    t = threading.Thread(target=run_engine, args=(engine, source, stop, on_death or EngineDeath()),
                         name="action-engine", daemon=True)
    t.start()
    threads = [t]
    keep_alive = getattr(getattr(engine, "lease", None), "keep_alive", None)
    if keep_alive is not None:   # one slow turn of the engine's loop must not lose the lease (lease.py)
        threads.append(threading.Thread(target=keep_alive, args=(stop,), name="lease-keep-alive", daemon=True))
        threads[-1].start()
    return EngineHandle(engine, threads, closers)


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

    from guardian.escalation.senders import channels_from_settings
    from guardian.ingest.collect import start_collectors
    from guardian.ingest.worker import create_app, run_worker
    from guardian.metrics import GuardianMetrics, serve_metrics
    from guardian.clients.topics import ensure_topics
    from guardian.engine.source import LocalDetections

    settings = settings or GuardianSettings()
    channels_from_settings(settings.escalation)   # a channel's ConfigError stops us before anything starts
    worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
    created = ensure_topics(settings.kafka.client_config(), settings.topics)
    if created:
        log.warning("created topics: %s", ", ".join(created))
    registry = CollectorRegistry()
    metrics = GuardianMetrics(registry, component="engine")   # one registry: every guardian_* metric once
    traffic, pressure, rates = stage_providers(settings)
    # the engine's providers: this process's own stage (one worker), or every worker's, merged
    publisher, close_view = None, lambda: None
    providers: tuple[Any, Any, Any] = (traffic, pressure, rates.read)
    if settings.view.enabled:
        publisher, shared, close_view = build_shared_view(settings, worker_id, traffic, pressure, rates)
        providers = (shared.cluster_traffic, shared.cluster_pressure, shared.client_rates)
    server = None
    if settings.ingest.metrics_port:
        server = serve_metrics(registry, settings.ingest.metrics_port)
    stop = threading.Event()
    threads = start_collectors(settings, stop, collectors)
    death = EngineDeath()
    # this worker's detections reach this process's engine without the broker
    local = LocalDetections(on_drop=metrics.local_detections_dropped.inc)
    handle = start_action_engine(settings, stop, metrics, providers[0], owner=f"guardian-{worker_id}",
                                 pressure=providers[1], on_death=death, rates=providers[2], local=local)
    threads += handle.threads
    api_server = None
    if api:
        api_server, t = start_api(settings, handle.engine)
        threads.append(t)
        log.warning("API on http://%s:%d (docs /v1/docs)", settings.api.host, settings.api.port)
    stage = stage_factory(settings, traffic, metrics, pressure, rates, publisher)
    state, close_state = build_state_keeper(settings, stage)
    app, _stats = create_app(settings, stage, registry, worker_id, metrics=metrics, state=state,
                             on_detection=local.offer)
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
        close_view()
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
    # a crash inside a C extension (librdkafka, numpy) leaves every thread's Python stack on stderr
    faulthandler.enable()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "faust", "aiokafka", "mode", "httpx", "uvicorn.access", "guardian.ingest.collect"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    names = None if collectors is None else [c for c in collectors.split(",") if c]
    run(worker_id=worker_id, collectors=names, loglevel=loglevel, api=api)
