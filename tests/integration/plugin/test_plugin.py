"""The broker plugin against a real broker: client telemetry, broker metrics, and no harm to tenants."""

from __future__ import annotations

import statistics
import time
import urllib.request
import uuid

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from guardian_dev.plugin import PLUGIN_TOPICS
from tests.integration.plugin.conftest import MAX_RECORD_BYTES
from guardian_dev.security import ensure_topics, tenant_config
from guardian.ingest.broker_plugin import BrokerSnapshotDecoder
from guardian.ingest.codec import decode_record
from guardian.ingest.plugin_collect import PluginCollector
from guardian.ingest.prometheus import PrometheusSampler
from guardian.ingest.publisher import SamplePublisher
from guardian.model.samples import Metric
from guardian.settings import GuardianSettings
from guardian.clients.telemetry import Subscription, TelemetrySubscriptions

pytestmark = pytest.mark.integration


def _settings(ep) -> GuardianSettings:
    return GuardianSettings(kafka={"bootstrap_servers": ep.kafka_bootstrap_servers,
                                   "metrics_url": ep.kafka_metrics_url})


def _tenant_producer(ep, tenant: str, client_id: str, **extra) -> Producer:
    return Producer(tenant_config(ep.kafka_sasl_bootstrap_servers, tenant, ep.tenants[tenant],
                                  **{"client.id": client_id, "linger.ms": 5, **extra}))


def _topic(ep, tenant: str) -> str:
    name = f"{tenant}.plugin-{uuid.uuid4().hex[:6]}"
    ensure_topics(ep.kafka_bootstrap_servers, {name: 1})
    return name


def _produce_for(producer: Producer, topic: str, seconds: float, rate_bytes: float, size: int = 1000) -> int:
    """Produce ``size``-byte messages at about ``rate_bytes`` per second for ``seconds``; returns messages sent."""
    sent, start = 0, time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate_bytes / size)
        while sent < due:
            producer.produce(topic, value=b"x" * size)
            sent += 1
        producer.poll(0.005)
    producer.flush(30)
    return sent


def test_untouched_librdkafka_client_appears_as_client_samples(plugin_stack) -> None:
    ep = plugin_stack
    settings = _settings(ep)
    ensure_topics(ep.kafka_bootstrap_servers, {settings.topics.metrics: 3})
    client_id = f"kip714-{uuid.uuid4().hex[:6]}"
    with TelemetrySubscriptions(ep.kafka_bootstrap_servers) as subs:
        subs.subscribe(Subscription(f"sub-{client_id}", interval_ms=1000, match={"client_id": client_id}))
        assert any(s.name == f"sub-{client_id}" for s in subs.list())
    collector = PluginCollector(settings, SamplePublisher(settings.kafka.client_config(), settings.topics.metrics),
                                group_suffix=client_id)
    reader = Consumer({"bootstrap.servers": ep.kafka_bootstrap_servers, "group.id": f"reader-{client_id}",
                       "auto.offset.reset": "latest"})
    reader.subscribe([settings.topics.metrics])
    reader.poll(1.0)  # join before traffic starts
    topic = _topic(ep, "tenant-a")
    # The client under test is configured like any tenant's: nothing instruments it.
    producer = _tenant_producer(ep, "tenant-a", client_id)
    found: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not {"queue_time", "request_latency"} <= set(found):
        _produce_for(producer, topic, 1.0, 200_000)
        collector.step()
        for msg in reader.consume(500, timeout=0.5):
            if msg.error():
                continue
            for batch in decode_record(msg.value())[0]:
                if batch.source == "kip714" and batch.workload.client_id == client_id:
                    assert batch.workload.principal == "User:tenant-a"
                    for metric, value in zip(batch.metrics, batch.values):
                        found[metric.value] = value
    collector.close()
    reader.close()
    assert {"queue_time", "request_latency"} <= set(found), found


def _latest_snapshot(ep, seconds: float = 3.0) -> list[dict]:
    c = Consumer({"bootstrap.servers": ep.kafka_bootstrap_servers, "group.id": f"snap-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "latest"})
    c.subscribe([PLUGIN_TOPICS[0]])
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and not msg.error():
            out.append(msg.value())
    c.close()
    return out


def test_plugin_broker_metrics_agree_with_the_jmx_exporter(plugin_stack) -> None:
    """Both paths read the same broker sensors: compare them at matched times, not over unaligned windows."""
    ep = plugin_stack
    topic = _topic(ep, "tenant-b")
    client_id = f"agree-{uuid.uuid4().hex[:6]}"
    producer = _tenant_producer(ep, "tenant-b", client_id)
    _produce_for(producer, topic, 4.0, 500_000)  # warm the broker's 11-second windows

    scrapes: list[tuple[float, str]] = []   # (unix time the scrape returned, exporter text)
    snapshots: list[tuple[float, bytes]] = []  # (broker's snapshot time, record)
    c = Consumer({"bootstrap.servers": ep.kafka_bootstrap_servers, "group.id": f"agree-{client_id}",
                  "auto.offset.reset": "latest"})
    c.subscribe([PLUGIN_TOPICS[0]])

    def poll_snapshots(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = c.poll(0.05)
            if msg is not None and not msg.error():
                snapshots.append((orjson.loads(msg.value())["ts"] / 1000.0, msg.value()))

    start = time.monotonic()
    sent, size, rate = 0, 1000, 500_000
    next_scrape = start
    while time.monotonic() - start < 12:
        due = int((time.monotonic() - start) * rate / size)
        while sent < due:
            producer.produce(topic, value=b"x" * size)
            sent += 1
        producer.poll(0)
        if time.monotonic() >= next_scrape:
            next_scrape = time.monotonic() + 1.0
            try:
                text = urllib.request.urlopen(ep.kafka_metrics_url, timeout=10).read().decode()
                scrapes.append((time.time(), text))
            except OSError:
                pass  # a scrape that times out on a loaded machine is a missing point, not a disagreement
        poll_snapshots(0.01)
    producer.flush(30)
    poll_snapshots(1.5)
    assert len(scrapes) >= 5 and len(snapshots) >= 8, (len(scrapes), len(snapshots))

    # 1. The client's windowed byte-rate sensor: each scrape against the snapshot nearest in time.
    diffs = []
    for ts, text in scrapes[2:]:
        jmx = _values(PrometheusSampler().samples_from_text(text, ts, "b1"), client_id=client_id)
        snap_ts, _ = min(snapshots, key=lambda s: abs(s[0] - ts))
        decoder = BrokerSnapshotDecoder()   # every record of that snapshot (it is split: conftest)
        plugin = _values([x for t, snap in snapshots if t == snap_ts for x in decoder.decode(snap)], client_id=client_id)
        if jmx and plugin and abs(snap_ts - ts) <= 1.0:
            diffs.append(abs(plugin[0] - jmx[0]) / jmx[0])
    assert len(diffs) >= 3, diffs
    median = sorted(diffs)[len(diffs) // 2]
    print(f"client byte-rate: median relative difference {median:.3f} over {len(diffs)} matched readings")
    assert median <= 0.10, diffs

    # 2. The topic's cumulative bytes-in counter once traffic has stopped: the same meter, read both ways.
    time.sleep(2.0)
    text = urllib.request.urlopen(ep.kafka_metrics_url, timeout=30).read().decode()
    poll_snapshots(2.5)
    jmx_total = _topic_total_jmx(text, topic)
    plugin_total = _topic_total_plugin([snap for _, snap in snapshots if orjson.loads(snap)["yammer"]][-1], topic)
    print(f"topic bytes in: plugin {plugin_total:.0f}, JMX exporter {jmx_total:.0f}, sent {sent * size}")
    assert jmx_total >= sent * size
    assert abs(plugin_total - jmx_total) / jmx_total <= 0.10


def _topic_total_jmx(text: str, topic: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("kafka_server_brokertopicmetrics_bytesin") and s.labels.get("topic") == topic:
                return s.value
    raise AssertionError(f"no bytes-in counter for {topic} in the exporter")


def _topic_total_plugin(record: bytes, topic: str) -> float:
    for kind, name, tags, value in orjson.loads(record)["yammer"]:
        if kind == "BrokerTopicMetrics" and name == "BytesInPerSec" and tags.get("topic") == topic:
            return value
    raise AssertionError(f"no bytes-in counter for {topic} in the plugin snapshot")


def _values(samples, client_id: str | None = None, topic: str | None = None) -> list[float]:
    return [s.value for s in samples if s.metric is Metric.PRODUCE_BYTE_RATE
            and ((client_id and s.workload.client_id == client_id) or (topic and s.workload.topic == topic))]


def _throughput(ep, topic: str, client_id: str, n: int = 20_000, size: int = 1000) -> float:
    producer = _tenant_producer(ep, "tenant-a", client_id, **{"acks": "all", "batch.size": 65536})
    t0 = time.monotonic()
    for _ in range(n):
        while True:
            try:
                producer.produce(topic, value=b"x" * size)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    assert producer.flush(60) == 0
    return n * size / (time.monotonic() - t0)


def test_unavailable_plugin_topics_and_a_full_buffer_do_not_slow_tenants(plugin_stack) -> None:
    ep = plugin_stack
    topic = _topic(ep, "tenant-a")
    admin = AdminClient({"bootstrap.servers": ep.kafka_bootstrap_servers})
    # Many fast telemetry pushers keep the plugin's telemetry queue busy while its topics are gone.
    with TelemetrySubscriptions(ep.kafka_bootstrap_servers) as subs:
        subs.subscribe(Subscription("flood", interval_ms=100))
    pushers = [_tenant_producer(ep, "tenant-b", f"pusher-{i}") for i in range(20)]

    _throughput(ep, topic, "warm-up", n=5000)
    # seven of each (a fraction of a second each), compared by their medians: one run of either kind can be
    # far off on two shared cores (a CI run measured 56 and 109 MB/s for the same baseline twice in a row;
    # with three of each, another's baseline spread 59-130 MB/s and its median ratio fell to 0.69)
    baseline = [_throughput(ep, topic, f"base-{i}") for i in range(7)]
    for fut in admin.delete_topics(list(PLUGIN_TOPICS), operation_timeout=30).values():
        fut.result(30)
    time.sleep(3)  # snapshots and pushes now fail to send and pile up in the plugin
    for p in pushers:
        p.poll(0)
    degraded = [_throughput(ep, topic, f"degraded-{i}") for i in range(7)]
    ensure_topics(ep.kafka_bootstrap_servers, {t: 3 for t in PLUGIN_TOPICS})
    for p in pushers:
        p.flush(5)
    with TelemetrySubscriptions(ep.kafka_bootstrap_servers) as subs:
        subs.unsubscribe("flood")

    ratio = statistics.median(degraded) / statistics.median(baseline)
    print(f"tenant throughput with plugin topics missing / present (medians of 7): {ratio:.3f} "
          f"({statistics.median(degraded) / 1e6:.1f} vs {statistics.median(baseline) / 1e6:.1f} MB/s)")
    # Two cores shared with the broker and the test itself: allow noise, not a stall.
    assert ratio >= 0.7, (baseline, degraded)
    counters = [c for v in _latest_snapshot(ep, seconds=4.0) if (c := orjson.loads(v)["plugin"])]   # first parts
    assert counters, "the plugin did not resume publishing after its topics came back"
    last = counters[-1]
    assert last["send_errors"] + last["snapshots_dropped"] + last["telemetry_dropped"] > 0, last


def test_plugin_snapshots_carry_every_pressure_signal_with_a_sane_value(plugin_stack) -> None:
    """The plugin reads the same MBeans as the exporter from the broker's Yammer registry."""
    from guardian.model.samples import PRESSURE_METRICS, Workload

    records = _latest_snapshot(plugin_stack, seconds=8.0)
    decoder = BrokerSnapshotDecoder()
    samples = [s for r in records for s in decoder.decode(r) if s.metric in PRESSURE_METRICS]
    keys = {(s.metric, tuple(sorted(s.labels.items()))) for s in samples}
    assert keys == {
        (Metric.REQUEST_HANDLER_IDLE, ()), (Metric.NETWORK_PROCESSOR_IDLE, ()),
        (Metric.REQUEST_QUEUE_TIME_P99, (("request", "Produce"),)),
        (Metric.REQUEST_QUEUE_TIME_P99, (("request", "Fetch"),)),
        (Metric.REQUEST_TOTAL_TIME_P99, (("request", "Produce"),)),
        (Metric.REQUEST_TOTAL_TIME_P99, (("request", "Fetch"),)),
        (Metric.PURGATORY_SIZE, (("operation", "Produce"),)), (Metric.PURGATORY_SIZE, (("operation", "Fetch"),)),
        (Metric.UNDER_REPLICATED_PARTITIONS, ()),
    }, keys
    assert {s.workload for s in samples} == {Workload(broker="1")}
    for s in samples:
        if s.metric in (Metric.REQUEST_HANDLER_IDLE, Metric.NETWORK_PROCESSOR_IDLE):
            assert 0.0 <= s.value <= 1.0, s
        elif s.metric is Metric.UNDER_REPLICATED_PARTITIONS:
            assert s.value == 0.0, s
        else:
            assert s.value >= 0.0, s
    idle = [s.value for s in samples if s.metric is Metric.REQUEST_HANDLER_IDLE]
    print(f"handler idle from the plugin on a quiet broker: {[round(v, 3) for v in idle]}")
    # the plugin's own snapshots are this broker's only traffic: its handlers are nearly all idle
    assert len(idle) >= 3 and sorted(idle)[len(idle) // 2] >= 0.8, idle
    # combined mode: the meter is shared by the broker's and the controller's pools (KAFKA-19606)
    means = [v for r in records for kind, name, tags, v in orjson.loads(r)["yammer"]
             if kind == "KafkaRequestHandlerPool" and tags.get("stat") == "mean_rate"]
    assert means and max(means) > 1.05, means


def test_a_snapshot_larger_than_a_record_arrives_split_and_whole(plugin_stack) -> None:
    """Kafka refuses records over ~1 MB by default and 10,000 clients make a 3.3 MB snapshot; the plugin
    splits it. Here the limit is 16 KB (conftest) and 300 clients each send once: every client's
    sensors arrive in exactly one record of each snapshot, every record decodes on its own, and the
    broker-level signals are in the first."""
    ep = plugin_stack
    topic = _topic(ep, "tenant-a")
    ids = [f"split-{uuid.uuid4().hex[:4]}-{i:03d}" for i in range(300)]
    for cid in ids:
        p = _tenant_producer(ep, "tenant-a", cid)
        p.produce(topic, value=b"x" * 100)
        assert p.flush(30) == 0
    records = [{**orjson.loads(raw), "bytes": len(raw)} for raw in _latest_snapshot(ep, seconds=4.0)]
    by_ts: dict[int, list[dict]] = {}
    for r in records:
        by_ts.setdefault(r["ts"], []).append(r)
    whole = [rs for rs in by_ts.values() if len(rs) == rs[0].get("part", [0, 1])[1]]
    assert whole, f"no complete snapshot among {len(records)} records"
    for rs in whole:
        parts = sorted(rs, key=lambda r: r["part"][0])
        assert len(parts) > 1 and [r["part"] for r in parts] == [[i, len(parts)] for i in range(len(parts))]
        assert parts[0]["plugin"] and all(not r["plugin"] and not r["yammer"] for r in parts[1:])
        assert all(r["bytes"] <= MAX_RECORD_BYTES for r in parts[1:]), [r["bytes"] for r in parts]
        assert parts[0]["bytes"] <= MAX_RECORD_BYTES or not any("client-id" in t for _, _, t, _ in parts[0]["metrics"])
        seen = [tags.get("client-id") for r in parts for group, name, tags, _ in r["metrics"]
                if group == "Produce" and name == "byte-rate" and tags.get("client-id") in ids]
        assert sorted(seen) == sorted(ids), (len(seen), len(ids))   # each client once, none lost
        decoder = BrokerSnapshotDecoder()
        samples = [s for r in parts for s in decoder.decode(orjson.dumps(r))]
        assert {s.workload.client_id for s in samples if s.metric is Metric.PRODUCE_BYTE_RATE} >= set(ids)
        assert any(s.metric is Metric.REQUEST_TOTAL_TIME_P99 for s in samples)
