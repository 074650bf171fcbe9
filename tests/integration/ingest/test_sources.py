"""The three sources against the real broker, each through the metrics topic and back."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from guardian.errors import TemporaryError
from guardian.ingest.admin_poller import AdminPoller, GroupTracker, tenant_prefix_owner
from guardian.ingest.client_stats import StatsForwarder
from guardian.ingest.codec import decode_record
from guardian.ingest.collect import build_collector
from guardian.ingest.prometheus import PrometheusScraper
from guardian.ingest.publisher import SamplePublisher
from guardian.model.samples import Metric, Sample

from .conftest import IngestEnv

pytestmark = pytest.mark.integration


def read_samples(env: IngestEnv, timeout: float = 20.0, want: int = 1) -> list[Sample]:
    records = env.consume(env.topics.metrics, want=want, timeout=timeout, settle=0.5)
    out: list[Sample] = []
    for m in records:
        batches, rejected = decode_record(m.value())    # one batch, or a tenant's pack of them
        assert batches and not rejected
        for batch in batches:
            assert m.key().decode() == batch.workload.partition_key   # keyed by tenant
            out.extend(batch)
    return out


def test_scraped_produce_rate_matches_what_a_tenant_sent(ingest_env: IngestEnv, endpoints, tenant_conf,
                                                         make_topic) -> None:
    topic = make_topic("tenant-a", partitions=1)
    client_id = f"rate-{uuid.uuid4().hex[:6]}"
    sent: list[tuple[float, int]] = []     # (delivery time, bytes) as the broker acknowledged them

    def delivered(err, msg) -> None:
        if err is None:
            sent.append((time.time(), len(msg.value())))

    p = Producer(tenant_conf("tenant-a", **{"client.id": client_id, "linger.ms": 20, "acks": "all"}))
    rate, payload = 200_000, b"r" * 1000   # 200 kB/s in 1 kB messages
    stop = threading.Event()

    def send_steadily() -> None:
        t0, produced = time.monotonic(), 0
        while not stop.is_set():
            elapsed = time.monotonic() - t0
            while produced < rate * elapsed:
                p.produce(topic, payload, on_delivery=delivered)
                produced += len(payload)
            p.poll(0.02)
        p.flush(10)

    sender = threading.Thread(target=send_steadily)
    sender.start()
    try:
        time.sleep(13.0)   # the broker's byte-rate is windowed (11 x 1 s by default): let it fill
        scraper = PrometheusScraper([endpoints.kafka_metrics_url], cluster="test", timeout_s=60)
        scraped_at = time.time()
        samples = scraper.scrape()   # while the tenant keeps sending: a loaded exporter may take seconds
        scraper.close()
    finally:
        stop.set()
        sender.join(timeout=30)
    window = [b for ts, b in sent if scraped_at - 10.0 <= ts < scraped_at]
    actual = sum(window) / 10.0
    pub = SamplePublisher(ingest_env.settings.kafka.client_config(), ingest_env.topics.metrics)
    pub.publish(samples)
    pub.flush()
    mine = [s for s in read_samples(ingest_env) if s.metric is Metric.PRODUCE_BYTE_RATE
            and s.workload.principal == "User:tenant-a" and s.workload.client_id == client_id]
    assert len(mine) == 1, [s.workload for s in samples if s.metric is Metric.PRODUCE_BYTE_RATE]
    assert mine[0].value == pytest.approx(actual, rel=0.15), (mine[0].value, actual)


def _consume(conf: dict, topic: str, n: int) -> None:
    c = Consumer(conf)
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 30
    while got < n and time.monotonic() < deadline:
        msgs = c.consume(n - got, timeout=1.0)
        got += sum(1 for m in msgs if not m.error())
    c.commit(asynchronous=False)
    c.close()     # the group is stopped now
    assert got == n


def test_poller_lag_matches_offsets_across_stop_restart_and_rewind(ingest_env: IngestEnv, bootstrap, tenant_conf,
                                                                   make_topic) -> None:
    topic = make_topic("tenant-a", partitions=1)   # one partition: which messages a consumer reads is fixed
    group = f"tenant-a.g-{uuid.uuid4().hex[:6]}"
    p = Producer(tenant_conf("tenant-a"))
    for i in range(100):
        p.produce(topic, b"m%d" % i)
    assert p.flush(10) == 0
    conf = tenant_conf("tenant-a", **{"group.id": group, "auto.offset.reset": "earliest",
                                      "enable.auto.commit": False})
    _consume(conf, topic, 30)

    poller = AdminPoller({"bootstrap.servers": bootstrap})
    tracker = GroupTracker(owner=tenant_prefix_owner(["tenant-a"]))
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def truth() -> dict[int, int]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=10)
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "x"})
        lags = {}
        for tp in res.topic_partitions:
            _, high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            lags[tp.partition] = high - tp.offset
        c.close()
        return lags

    def poll() -> list[Sample]:
        snap = poller.snapshot()
        # the topics are listed first, the groups and offsets after: creation rates take the listing's time
        assert snap.topics_ts is not None and snap.topics_ts <= snap.ts and topic in snap.topics
        return [s for s in tracker.observe(snap) if s.workload.group == group]

    def lags(samples: list[Sample]) -> dict[int, int]:
        return {int(s.labels["partition"]): int(s.value) for s in samples
                if s.metric is Metric.CONSUMER_LAG and s.workload.topic == topic}

    first = poll()
    expected = truth()
    assert sum(expected.values()) == 70
    assert lags(first) == expected == {0: 70}
    assert first[0].workload.principal == "User:tenant-a"

    # more traffic while stopped, then the group comes back and reads some
    for i in range(40):
        p.produce(topic, b"n%d" % i)
    p.flush(10)
    _consume(conf, topic, 50)
    second = poll()
    assert lags(second) == truth() and sum(truth().values()) == 60
    growth = [s.value for s in second if s.metric is Metric.CONSUMER_LAG_GROWTH]
    assert len(growth) == 1 and growth[0] < 0   # lag went from 70 down to 60
    assert [s.value for s in second if s.metric is Metric.OFFSET_REWINDS] == [0.0]

    # reset partition 0 to the beginning: a rewind of everything it had committed
    before_p0 = 80   # 30 + 50 consumed and committed
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 0)])])[
        group].result(timeout=10)
    third = poll()
    assert lags(third) == truth()
    assert [s.value for s in third if s.metric is Metric.OFFSET_REWINDS] == [1.0]
    assert [s.value for s in third if s.metric is Metric.REWOUND_MESSAGES] == [float(before_p0)]


def test_librdkafka_statistics_from_a_real_client_become_samples(ingest_env: IngestEnv, bootstrap, tenant_conf,
                                                                  make_topic) -> None:
    topic = make_topic("tenant-a", partitions=1)
    stats_topic = ingest_env.topics.client_stats
    forwarder_producer = Producer({"bootstrap.servers": bootstrap})   # a sidecar with write access
    client_id = f"stats-{uuid.uuid4().hex[:6]}"
    collector = build_collector("client-stats", ingest_env.settings)
    forward = StatsForwarder(forwarder_producer, stats_topic, principal="User:tenant-a")
    p = Producer(tenant_conf("tenant-a", **{"client.id": client_id, "statistics.interval.ms": 500,
                                            "stats_cb": forward, "linger.ms": 10}))
    t0 = time.monotonic()
    sent_bytes = 0
    while time.monotonic() - t0 < 4.0:
        for _ in range(50):
            p.produce(topic, b"s" * 500)
            sent_bytes += 500
        p.poll(0.05)
    p.flush(10)
    average = sent_bytes / (time.monotonic() - t0)
    p.poll(0.6)   # one more statistics interval
    assert forwarder_producer.flush(10) == 0
    published = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and published == 0:
        published += collector.step()
    collector.close()
    mine = [s for s in read_samples(ingest_env) if s.workload.client_id == client_id]
    assert mine, "no samples from the client's statistics"
    assert {s.workload.principal for s in mine} == {"User:tenant-a"}
    assert all(s.source == "librdkafka" for s in mine)
    metrics = {s.metric for s in mine}
    assert {Metric.PRODUCE_BYTE_RATE, Metric.REQUEST_RATE, Metric.PRODUCE_REQUEST_RATE,
            Metric.QUEUE_TIME} <= metrics
    # one rate per 0.5 s statistics interval, never negative; integrated over the intervals they
    # account for the bytes sent (message framing adds a little; the first payload is only a baseline)
    produce = [s.value for s in mine if s.metric is Metric.PRODUCE_BYTE_RATE]
    assert produce and all(v >= 0 for v in produce), produce
    implied = sum(v * 0.5 for v in produce)
    assert 0.3 * sent_bytes <= implied <= 1.3 * sent_bytes, (produce, sent_bytes)
    assert max(produce) > average / 2


def test_committed_offsets_of_real_unknown_and_empty_groups_and_a_broker_that_is_gone(
        ingest_env: IngestEnv, bootstrap, tenant_conf, make_topic) -> None:
    # read with kafka-python (librdkafka's ListConsumerGroupOffsets can SIGSEGV the process: AdminPoller.committed)
    topic = make_topic("tenant-a", partitions=2)
    group = f"tenant-a.g-{uuid.uuid4().hex[:6]}"
    p = Producer(tenant_conf("tenant-a"))
    for i in range(40):
        p.produce(topic, b"m%d" % i, partition=i % 2)
    assert p.flush(10) == 0
    _consume(tenant_conf("tenant-a", **{"group.id": group, "auto.offset.reset": "earliest",
                                        "enable.auto.commit": False}), topic, 40)
    poller = AdminPoller({"bootstrap.servers": bootstrap})
    try:
        got = poller.committed([group, f"tenant-a.never-{uuid.uuid4().hex[:6]}"])
        assert got[group] == {(topic, 0): 20, (topic, 1): 20}
        assert all(not offsets for gid, offsets in got.items() if gid != group)   # a group unknown: no offsets
        assert poller.committed([]) == {}
    finally:
        poller.close()
    gone = AdminPoller({"bootstrap.servers": "127.0.0.1:1"}, timeout_s=2.0)
    with pytest.raises(TemporaryError, match="committed offsets"):
        gone.committed([group])
