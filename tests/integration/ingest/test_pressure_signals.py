"""Broker pressure signals through the JMX exporter of the real broker: present, sane, and moving with load."""

from __future__ import annotations

import statistics
import threading
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from guardian.ingest.prometheus import PrometheusScraper, target_name
from guardian.model.samples import PRESSURE_METRICS, Metric, Sample, Workload

pytestmark = pytest.mark.integration

EXPECTED = {
    (Metric.REQUEST_HANDLER_IDLE, ()), (Metric.NETWORK_PROCESSOR_IDLE, ()),
    (Metric.REQUEST_QUEUE_TIME_P99, (("request", "Produce"),)), (Metric.REQUEST_QUEUE_TIME_P99, (("request", "Fetch"),)),
    (Metric.REQUEST_TOTAL_TIME_P99, (("request", "Produce"),)), (Metric.REQUEST_TOTAL_TIME_P99, (("request", "Fetch"),)),
    (Metric.PURGATORY_SIZE, (("operation", "Produce"),)), (Metric.PURGATORY_SIZE, (("operation", "Fetch"),)),
    (Metric.UNDER_REPLICATED_PARTITIONS, ()),
}


def _key(s: Sample) -> tuple[Metric, tuple]:
    return s.metric, tuple(sorted(s.labels.items()))


def _scrape_for(scraper: PrometheusScraper, seconds: float) -> list[list[Sample]]:
    """One scrape a second for ``seconds``; each scrape's pressure samples."""
    out: list[list[Sample]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        out.append([s for s in scraper.scrape() if s.metric in PRESSURE_METRICS])
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    return out


def _idle(scrapes: list[list[Sample]]) -> list[float]:
    return [s.value for scrape in scrapes for s in scrape if s.metric is Metric.REQUEST_HANDLER_IDLE]


def test_every_pressure_signal_appears_for_the_broker_with_a_sane_value(endpoints) -> None:
    url = endpoints.kafka_metrics_url
    scraper = PrometheusScraper([url], timeout_s=30)
    try:
        scrapes = _scrape_for(scraper, 7.0)
    finally:
        scraper.close()
    samples = [s for scrape in scrapes for s in scrape]
    assert {_key(s) for s in samples} == EXPECTED
    assert {s.workload for s in samples} == {Workload(broker=target_name(url))}
    for s in samples:
        if s.metric in (Metric.REQUEST_HANDLER_IDLE, Metric.NETWORK_PROCESSOR_IDLE):
            assert 0.0 <= s.value <= 1.0, s
        elif s.metric is Metric.UNDER_REPLICATED_PARTITIONS:
            assert s.value == 0.0, s     # one broker, replication factor 1: nothing can lag
        else:
            assert s.value >= 0.0, s
    # network idle is read from each data-plane network thread's io-wait counter (guardian.ingest.pressure
    # NetworkIdle), which the exporter rules export per listener: not only the controller's
    import httpx

    listeners = {line.split('listener="', 1)[1].split('"', 1)[0] for line in httpx.get(url, timeout=30).text.splitlines()
                 if line.startswith("kafka_server_socket_io_wait_time_ns{")}
    assert listeners - {"CONTROLLER"}, listeners
    network = [s.value for s in samples if s.metric is Metric.NETWORK_PROCESSOR_IDLE]
    assert len(network) >= 3 and statistics.median(network) >= 0.5, network   # a quiet broker's threads idle
    idle = _idle(scrapes)
    print(f"handler idle on a quiet broker: {[round(v, 3) for v in idle]}; network idle: {[round(v, 3) for v in network]}")
    # combined mode (broker and controller pools on one meter) reads ~2 raw; the share is of the broker pool
    assert len(idle) >= 3 and statistics.median(idle) >= 0.8, idle


def _hammer(bootstrap: str, topic: str, stop: threading.Event, sent: list[int]) -> None:
    # Large uncompressed batches to a gzip topic: the request handlers recompress every batch, so they
    # stay busy while the client spends little CPU (tiny linger.ms=0 requests from Python mostly loaded
    # the client and the network threads on 2 cores and moved handler idle by a few per cent only).
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": 1, "compression.type": "none",
                  "batch.size": 1_000_000, "queue.buffering.max.kbytes": 65536, "client.id": "pressure-hammer"})
    payload = (b"guardian pressure " * 600)[:10_000]
    while not stop.is_set():
        for _ in range(50):
            try:
                p.produce(topic, payload)
                sent[0] += 1
            except BufferError:
                break
        p.poll(0.001)
    p.flush(15)


def test_handler_idle_falls_while_a_producer_hammers_the_broker(endpoints, bootstrap) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"tenant-a.pressure-{uuid.uuid4().hex[:8]}"
    for fut in admin.create_topics([NewTopic(topic, 4, 1, config={"compression.type": "gzip"})],
                                   operation_timeout=30).values():
        fut.result(timeout=30)
    scraper = PrometheusScraper([endpoints.kafka_metrics_url], timeout_s=30)
    stop, sent = threading.Event(), [0]
    threads = [threading.Thread(target=_hammer, args=(bootstrap, topic, stop, sent)) for _ in range(2)]
    try:
        quiet = _idle(_scrape_for(scraper, 8.0))[-3:]        # once the 5 s window holds only quiet seconds
        for t in threads:
            t.start()
        loaded = _idle(_scrape_for(scraper, 12.0))[-5:]      # the window now holds only loaded seconds
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        scraper.close()
        for fut in admin.delete_topics([topic], operation_timeout=30).values():
            try:
                fut.result(timeout=30)
            except Exception:  # noqa: BLE001 - best-effort clean-up
                pass
    print(f"handler idle quiet {quiet}, loaded {loaded}, {sent[0]} x 10 kB produced")
    assert quiet and loaded and sent[0] > 0
    # relative, not absolute: how busy the broker gets depends on what else the 2 cores run
    assert statistics.median(loaded) <= 0.85 * statistics.median(quiet), (quiet, loaded)
