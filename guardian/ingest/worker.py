"""The stream processors: a faust-streaming app that runs ``MetricsProcessor`` over Kafka.

Workers form one consumer group (``IngestSettings.app_id``) over the
partitions of ``guardian.metrics``; records are keyed by tenant (a record
holds one batch or a tenant's pack of them), so each tenant's samples reach
exactly one worker. With
``processing_guarantee="exactly_once"`` (the default) faust wraps each
partition's detections, dead letters and consumed offsets in one Kafka
transaction, so a worker killed mid-stream and restarted neither loses nor
double-counts samples downstream (consumers read ``read_committed``).

``create_app`` builds the app (nothing starts until a ``faust.Worker`` runs
it); ``python -m guardian.ingest.worker`` runs one worker on its own, which
the integration tests and the benchmark use.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from guardian.errors import ConfigError
from guardian.ingest.processor import (DLQ_OFFSET, DLQ_PARTITION, DLQ_TOPIC, WORKER_HEADER, LimitStage,
                                       MetricsProcessor, ProcessorMetrics, SampleStage,
                                       IngestMetrics)
from guardian.ingest.state import PartitionStateKeeper
from guardian.settings import GuardianSettings, KafkaSettings
from guardian.clients.topics import DLQ_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """What one worker did, for reports and the benchmark."""

    worker_id: str
    records: int = 0
    samples: int = 0
    dead_letters: int = 0
    detections: int = 0
    first_record_at: float | None = None
    last_record_at: float | None = None
    last_done_at: float | None = None    # when the last chunk's outcomes were sent
    workloads: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "records": self.records, "samples": self.samples,
                "dead_letters": self.dead_letters, "detections": self.detections,
                "first_record_at": self.first_record_at, "last_record_at": self.last_record_at,
                "last_done_at": self.last_done_at,
                "workloads": len(self.workloads)}


def faust_broker_options(kafka: KafkaSettings) -> dict[str, Any]:
    """faust ``broker`` and ``broker_credentials`` for the guardian's Kafka settings."""
    import faust

    servers = [s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()]
    if not servers:
        raise ConfigError("no Kafka bootstrap servers configured (GUARDIAN_KAFKA__BOOTSTRAP_SERVERS)")
    opts: dict[str, Any] = {"broker": [f"kafka://{s}" for s in servers]}
    proto = kafka.security_protocol.upper()
    if proto.startswith("SASL"):
        ssl_context = None
        if proto == "SASL_SSL":
            import ssl

            ssl_context = ssl.create_default_context(cafile=kafka.ssl_ca_location)
        opts["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username or "", password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism or "PLAIN", ssl_context=ssl_context)
    elif proto == "SSL":
        import ssl

        opts["broker_credentials"] = ssl.create_default_context(cafile=kafka.ssl_ca_location)
    return opts


def create_app(settings: GuardianSettings, stage: SampleStage, registry: Any, worker_id: str,
               on_record: Callable[[WorkerStats], None] | None = None,
               commit_interval_s: float = 1.0, session_timeout_s: float = 30.0,
               metrics: IngestMetrics | None = None,
               state: PartitionStateKeeper | None = None,
               on_detection: Callable[[bytes], None] | None = None) -> tuple[Any, WorkerStats]:
    """The faust app with the metrics agent. Returns ``(app, stats)``; running it is the caller's.

    ``metrics`` is where the processor reports (``guardian run`` passes its ``GuardianMetrics``);
    without it a standalone ``ProcessorMetrics`` goes on ``registry``. ``state`` keeps the stage's
    detector state per partition (``guardian.ingest.state``): restored on assignment before the
    partition's first record, saved as it goes, on revocation and at shutdown. ``on_detection`` gets
    each detection record as it is published (``guardian run`` hands it to its own engine: the
    engine's ``LocalDetections``)."""
    import faust

    ing, topics = settings.ingest, settings.topics
    if ing.processing_guarantee not in ("exactly_once", "at_least_once"):
        raise ConfigError(f"processing_guarantee must be exactly_once or at_least_once, not {ing.processing_guarantee!r}")
    datadir = Path(tempfile.gettempdir()) / "guardian-faust" / f"{ing.app_id}-{worker_id}"
    # faust keeps only a version marker here: no faust tables (store is memory); the detector state
    # moves with its partition through ``state`` instead (guardian.ingest.state says why)
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        ing.app_id, **faust_broker_options(settings.kafka),
        key_serializer="raw", value_serializer="raw", web_enabled=False, store="memory://",
        datadir=str(datadir), processing_guarantee=ing.processing_guarantee,
        topic_partitions=topics.partitions, broker_commit_interval=commit_interval_s,
        consumer_auto_offset_reset="earliest", producer_linger_ms=5,
        # A crashed worker's partitions move to the others after this long.
        broker_session_timeout=session_timeout_s, broker_heartbeat_interval=max(1.0, session_timeout_s / 10),
        broker_rebalance_timeout=max(session_timeout_s, 10.0),
        # Sample batches are small; a big in-flight buffer lets one worker keep up with many.
        stream_buffer_maxsize=4096,
        # Dead letters carry the original bytes: allow as much as the DLQ topic does.
        producer_max_request_size=DLQ_MAX_MESSAGE_BYTES,
    )
    metrics_topic = app.topic(topics.metrics, key_type=bytes, value_type=bytes)
    pm = metrics or ProcessorMetrics(registry)
    processor = MetricsProcessor(stage, pm)
    stats = WorkerStats(worker_id)
    worker_header = (WORKER_HEADER, worker_id.encode())
    exactly_once = ing.processing_guarantee == "exactly_once"

    async def emit(topic: str, key: bytes | None, value: bytes, headers: list, msg: Any) -> None:
        # faust's Topic.send picks the transaction by the *destination* partition, so output of
        # source partition 2 could commit with source partition 1's offsets (duplicates after a
        # crash) or find no producer at all on a worker without partition 1. Send in the
        # transaction of the source partition instead: its outputs and offsets commit together.
        tid = None
        if exactly_once:
            tid = f"{app.conf.id}-{app.assignor.group_for_topic(msg.topic)}-{msg.partition}"
        await app.producer.send(topic, key, value, None, None, headers, transactional_id=tid)

    if state is not None:
        def mine(tps: Any) -> list[int]:
            return [tp.partition for tp in tps if tp.topic == topics.metrics]

        # faust sends these after the agents drained (revoked) and before the streams resume (assigned)
        async def on_assigned(sender: Any, assigned: Any, signal: Any = None) -> None:
            state.assign(mine(assigned))

        async def on_revoked(sender: Any, revoked: Any, signal: Any = None) -> None:
            state.revoke(mine(revoked))

        async def on_shutdown(sender: Any, signal: Any = None) -> None:
            state.save_all()

        app.on_partitions_assigned.connect(on_assigned)
        app.on_partitions_revoked.connect(on_revoked)
        app.on_before_shutdown.connect(on_shutdown)

    @app.agent(metrics_topic, name="guardian-ingest-metrics")
    async def process(stream):  # noqa: ANN001 - faust's stream type
        # records in chunks: one detector call per chunk (the detectors' cost is per call); the
        # events of a chunk are acknowledged after it, each output goes in its source partition's
        # transaction as before
        async for events in stream.take_events(ing.chunk_records, within=ing.chunk_wait_s):
            msgs = [event.message for event in events]
            now = time.time()
            if stats.first_record_at is None:
                stats.first_record_at = now
            stats.last_record_at = now
            stats.records += len(msgs)
            if state is not None:
                for msg in msgs:
                    state.before(msg.partition)
            outs = processor.handle_many([(m.value, m.key, m.topic, m.partition, m.offset) for m in msgs])
            for msg, out in zip(msgs, outs):
                await _emit_outcome(msg, out)
            stats.last_done_at = time.time()
            if on_record is not None:
                on_record(stats)

    async def _emit_outcome(msg: Any, out: Any) -> None:
        source = [(DLQ_TOPIC, msg.topic.encode()), (DLQ_PARTITION, str(msg.partition).encode()),
                  (DLQ_OFFSET, str(msg.offset).encode())]
        for dl in out.dead_letters:
            stats.dead_letters += 1
            log.warning("dead letter %s-%d@%d: %s: %s", msg.topic, msg.partition, msg.offset,
                        dl.reason, dl.detail[:200])
            await emit(topics.metrics_dlq, dl.key, dl.payload(), dl.headers() + [worker_header], msg)
        for batch, detections in out.scored:
            if state is not None:
                state.after(msg.partition, msg.key, batch.workload, max(batch.ts))
            stats.samples += len(batch)
            stats.workloads.add(batch.key)
            for det in detections:
                value = orjson.dumps(det.to_dict())
                if on_detection is not None:
                    on_detection(value)   # before the send, which may wait on a busy broker
                await emit(topics.detections, batch.key.encode(), value, source + [worker_header], msg)
            stats.detections += len(detections)
        try:
            pm.set_consumer_lag(msg.topic, msg.partition, app.consumer.highwater(msg.tp) - msg.offset - 1)
        except Exception:  # noqa: BLE001 - highwater unknown until the first fetch response
            pass

    return app, stats


def run_worker(app: Any, loglevel: str = "warning") -> None:
    """Run the app in this process until SIGTERM/SIGINT (faust installs the handlers)."""
    import faust

    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass


def _parse_limits(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        out[name] = float(value)
    return out


def _detector_stage(settings: GuardianSettings, worker_id: str) -> tuple[SampleStage, Any, Callable[[], None]]:
    """(stage, state keeper, close): the stage ``guardian run`` gives its worker, with the providers it
    feeds (cluster traffic, broker pressure, followed rates), its part of the shared view published
    (``GUARDIAN_VIEW__ENABLED``) and its state saved (``GUARDIAN_STATE__ENABLED``) in the ledger's Redis
    as there, so the benchmark's worker does the work a real one does."""
    from guardian.ingest.stage import build_stage, stage_providers
    from guardian.ingest.state import build_state_keeper
    from guardian.ingest.view import build_shared_view

    traffic, pressure, rates = stage_providers(settings)
    publisher, close_view = None, lambda: None
    if settings.view.enabled:
        publisher, _reader, close_view = build_shared_view(settings, worker_id, traffic, pressure, rates)
    stage = build_stage(settings, traffic, None, pressure, rates, publisher)
    state, close_state = build_state_keeper(settings, stage)

    def close() -> None:
        close_state()
        close_view()

    return stage, state, close


def main(argv: list[str] | None = None) -> None:
    """One worker on its own: ``python -m guardian.ingest.worker --worker-id w1 --limit produce_byte_rate=0``
    (a ``LimitStage``), or ``--detectors`` for the detector stage as ``guardian run`` builds it (with its
    shared-view publication and state snapshots, as settings enable them), without the engine and the
    collectors."""
    import argparse

    from prometheus_client import CollectorRegistry

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--worker-id", default=f"w{os.getpid()}")
    p.add_argument("--limit", action="append", default=[], help="metric=value; repeatable")
    p.add_argument("--detectors", action="store_true", help="the detector stage instead of limits")
    p.add_argument("--stop-after-samples", type=int, default=0)
    p.add_argument("--report", type=Path, help="write WorkerStats JSON here on exit")
    p.add_argument("--commit-interval", type=float, default=1.0)
    p.add_argument("--session-timeout", type=float, default=30.0)
    p.add_argument("--loglevel", default="warning")
    args = p.parse_args(argv)
    settings = GuardianSettings()
    if args.detectors and args.limit:
        raise ConfigError("--detectors and --limit are two different stages: give one")
    state, close = None, lambda: None
    if args.detectors:
        stage, state, close = _detector_stage(settings, args.worker_id)
    else:
        stage = LimitStage(_parse_limits(args.limit))
    stop_at = args.stop_after_samples

    stopping: list[bool] = []

    def on_record(stats: WorkerStats) -> None:
        if stats.samples >= stop_at and not stopping:
            stopping.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    app, stats = create_app(settings, stage, CollectorRegistry(), args.worker_id,
                            on_record=on_record if stop_at else None, commit_interval_s=args.commit_interval,
                            session_timeout_s=args.session_timeout, state=state)
    try:
        run_worker(app, args.loglevel)
    finally:
        close()
        if args.report:   # with the state keeper's outcomes (saved, restored, ...), its saves at shutdown in
            args.report.write_text(json.dumps({**stats.as_dict(), "state": dict(state.counts) if state else {}}))


if __name__ == "__main__":
    main()
