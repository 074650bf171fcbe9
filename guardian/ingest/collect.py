"""Collector loops: each source on its interval, publishing to the metrics topic, until stopped.

``build_collector(name, settings)`` returns a ``Collector`` whose ``step()``
collects and publishes once; ``run_collector`` repeats it on the source's
interval, backs off on ``TemporaryError`` and stops when the event is set.
``guardian collect <source>`` runs one in the foreground; ``guardian run``
runs the configured ones in threads beside the stream processors.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from guardian.errors import ConfigError, DecodeError, TemporaryError
from guardian.ingest.publisher import SamplePublisher
from guardian.settings import GuardianSettings

log = logging.getLogger(__name__)

COLLECTORS = ("scrape", "admin", "client-stats", "plugin")


@dataclass
class Collector:
    name: str
    interval_s: float
    step: Callable[[], int]          # collect + publish once; returns samples published
    close: Callable[[], None]


def _owner(settings: GuardianSettings):
    from guardian.ingest.admin_poller import tenant_prefix_owner

    return tenant_prefix_owner(settings.ingest.owner_prefixes) if settings.ingest.owner_prefixes else None


def build_collector(name: str, settings: GuardianSettings) -> Collector:
    conf = settings.kafka.client_config()
    publisher = SamplePublisher(conf, settings.topics.metrics, settings.ingest.max_batch_samples,
                                client_id=f"guardian-collect-{name}", pack=settings.ingest.pack_records)
    if name == "scrape":
        from guardian.ingest.prometheus import PrometheusScraper

        scraper = PrometheusScraper(settings.kafka.metrics_url.split(","), cluster=settings.kafka.cluster)

        def step() -> int:
            n = publisher.publish(scraper.scrape())
            publisher.flush()
            return n

        def close() -> None:
            scraper.close()
            publisher.close()

        return Collector(name, settings.ingest.scrape_interval_s, step, close)
    if name == "admin":
        from guardian.ingest.admin_poller import AdminPoller, GroupTracker

        poller = AdminPoller(conf, offsets_config={"bootstrap_servers": settings.kafka.bootstrap_servers,
                                                   **settings.kafka.kafka_python_config()})
        tracker = GroupTracker(cluster=settings.kafka.cluster, owner=_owner(settings))

        def step() -> int:
            n = publisher.publish(tracker.observe(poller.snapshot()))
            publisher.flush()
            return n

        def close_admin() -> None:
            poller.close()
            publisher.close()

        return Collector(name, settings.ingest.admin_interval_s, step, close_admin)
    if name == "client-stats":
        return _client_stats_collector(settings, publisher)
    if name == "plugin":
        from guardian.ingest.plugin_collect import PluginCollector

        plugin = PluginCollector(settings, publisher)
        return Collector(name, plugin.interval_s, plugin.step, plugin.close)
    raise ConfigError(f"unknown collector {name!r}; known: {', '.join(COLLECTORS)}")


def _client_stats_collector(settings: GuardianSettings, publisher: SamplePublisher) -> Collector:
    """Consumes the client-statistics topic; a payload that does not decode is logged and skipped.

    Stats payloads are the clients' own, not guardian records: one that is not
    librdkafka statistics is counted and logged, and the consumer moves on.
    Offsets are committed after publishing (at least once); a new deployment
    starts from the earliest retained statistics, so nothing published before
    its first assignment is skipped.
    """
    from confluent_kafka import Consumer, KafkaException

    from guardian.ingest.client_stats import INSTANCE_HEADER, PRINCIPAL_HEADER, ClientStatsDecoder, headers_dict

    conf = settings.kafka.client_config()
    conf.update({"group.id": f"{settings.ingest.app_id}-client-stats", "enable.auto.commit": False,
                 "auto.offset.reset": "earliest", "client.id": "guardian-collect-client-stats"})
    consumer = Consumer(conf)
    consumer.subscribe([settings.topics.client_stats])
    decoder = ClientStatsDecoder(cluster=settings.kafka.cluster)
    rejected = [0]

    def step() -> int:
        samples = []
        deadline = time.monotonic() + 1.0
        msgs = []
        while time.monotonic() < deadline:
            batch = consumer.consume(500, timeout=max(0.0, deadline - time.monotonic()))
            if not batch:
                break
            msgs.extend(batch)
        for msg in msgs:
            if msg.error():
                if msg.error().fatal():
                    raise TemporaryError(f"client-stats consumer: {msg.error()}")
                log.info("client-stats consumer: %s", msg.error())  # e.g. topic metadata not there yet
                continue
            h = headers_dict(msg.headers())
            try:
                samples.extend(decoder.decode(msg.value(), h.get(PRINCIPAL_HEADER), h.get(INSTANCE_HEADER)))
            except DecodeError as exc:
                rejected[0] += 1
                log.warning("client statistics at %s-%d@%d rejected: %s", msg.topic(), msg.partition(),
                            msg.offset(), exc)
        n = publisher.publish(samples)
        publisher.flush()
        if msgs:
            try:
                consumer.commit(asynchronous=False)  # after publishing: at-least-once
            except KafkaException as exc:
                raise TemporaryError(f"client-stats commit failed: {exc}") from exc
        return n

    def close() -> None:
        consumer.close()
        publisher.close()

    return Collector("client-stats", 0.0, step, close)


def run_collector(collector: Collector, stop: threading.Event, max_steps: int | None = None) -> None:
    """Step on the interval until ``stop`` is set; temporary failures back off, permanent ones raise."""
    steps = 0
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                n = collector.step()
                log.info("collector %s published %d samples", collector.name, n)
            except TemporaryError as exc:
                log.warning("collector %s: %s; retrying in %.0fs", collector.name, exc, exc.delay)
                stop.wait(exc.delay)
                continue
            steps += 1
            if max_steps is not None and steps >= max_steps:
                return
            stop.wait(max(0.0, collector.interval_s - (time.monotonic() - t0)))
    finally:
        collector.close()


def start_collectors(settings: GuardianSettings, stop: threading.Event,
                     names: list[str] | None = None) -> list[threading.Thread]:
    """Start the configured collectors in daemon threads (``scrape`` only when a metrics URL is set)."""
    threads = []
    for name in names if names is not None else settings.ingest.collectors:
        if name == "scrape" and not settings.kafka.metrics_url:
            log.warning("collector scrape skipped: no metrics URL configured")
            continue
        collector = build_collector(name, settings)
        t = threading.Thread(target=run_collector, args=(collector, stop), name=f"collect-{name}", daemon=True)
        t.start()
        threads.append(t)
    return threads
