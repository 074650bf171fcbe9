"""`guardian run`: the wiring of one guardian process.

In order: create the guardian topics when missing, serve the processors'
Prometheus metrics (when a port is set), start the configured collectors in
threads, start the action engine (``start_action_engine``, the hook the
engine is wired into), then run a stream-processor worker in the foreground
until SIGTERM/SIGINT, and stop the rest.

The detector stage comes from ``build_stage``: the detectors package's
pipeline once it exists, ``NullStage`` until then.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from guardian.ingest.processor import NullStage, SampleStage
from guardian.settings import GuardianSettings

log = logging.getLogger(__name__)


def build_stage(settings: GuardianSettings) -> SampleStage:
    """The detector stage the processors hand each workload's batch to.

    Wire the detectors pipeline here (anything with ``process(batch) -> list[Detection]``).
    """
    log.warning("no detector pipeline wired into guardian.run.build_stage: samples are ingested, "
                "no detections are produced")
    return NullStage()


def start_action_engine(settings: GuardianSettings, stop: threading.Event) -> list[threading.Thread]:
    """Hook: start ``guardian.engine`` (consumes ``guardian.detections``) and return its threads.

    The lead wires the engine here; until then `guardian run` ingests and detects only.
    """
    return []


def run(settings: GuardianSettings | None = None, worker_id: str | None = None,
        collectors: list[str] | None = None,
        stage_factory: Callable[[GuardianSettings], SampleStage] = build_stage,
        loglevel: str = "warning") -> None:
    import os
    import socket

    from prometheus_client import CollectorRegistry, start_http_server

    from guardian.ingest.collect import start_collectors
    from guardian.ingest.worker import create_app, run_worker
    from guardian.topics import ensure_topics

    settings = settings or GuardianSettings()
    created = ensure_topics(settings.kafka.client_config(), settings.topics)
    if created:
        log.warning("created topics: %s", ", ".join(created))
    registry: Any = CollectorRegistry()
    if settings.ingest.metrics_port:
        start_http_server(settings.ingest.metrics_port, registry=registry)
    stop = threading.Event()
    threads = start_collectors(settings, stop, collectors)
    threads += start_action_engine(settings, stop)
    app, _stats = create_app(settings, stage_factory(settings), registry,
                             worker_id or f"{socket.gethostname()}-{os.getpid()}")
    try:
        run_worker(app, loglevel)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
