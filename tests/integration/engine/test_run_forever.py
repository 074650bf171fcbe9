"""run_forever: detections from a Kafka topic, handled by the lease holder, audited to Kafka."""

from __future__ import annotations

import json
import threading
import time

from confluent_kafka import Producer

from guardian.engine.lease import RedisLease
from guardian.model.quarantine import QState, StepStatus
from guardian.engine.source import KafkaDetectionSource
from guardian.clients.kafka_admin import QuotaEntity

from .conftest import detection


def test_run_forever_consumes_detections_and_acts(make_engine, quota, quota_admin, client_id, ledger,
                                                   redis_client, bootstrap, make_topic, audit_sink, read_audit,
                                                   unique):
    topic = make_topic("guardian", name="detections")
    det = detection(client_id)
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, key=client_id.encode(), value=json.dumps(det.to_dict()).encode())
    p.flush(15)

    source = KafkaDetectionSource({"bootstrap.servers": bootstrap}, topic, group_id=f"engine-{unique}")
    engine = make_engine({"quota": quota()}, audit_sink=audit_sink,
                         lease=RedisLease(redis_client, ledger.prefix + "lease", "runner", 5.0))
    stop = threading.Event()
    t = threading.Thread(target=engine.run_forever, args=(source,), kwargs={"stop": stop, "poll_s": 0.2})
    t.start()
    try:
        deadline = time.monotonic() + 60

        def verified() -> bool:
            qs = ledger.list(states=[QState.ACTIVE])
            return bool(qs) and [r.status for r in ledger.actions(qs[0])] == [StepStatus.VERIFIED]

        while not verified() and time.monotonic() < deadline:   # the decision is written before the action
            time.sleep(0.1)
        (q,) = ledger.list(states=[QState.ACTIVE])
        assert q.detection["id"] == det.id
        assert [r.status for r in ledger.actions(q)] == [StepStatus.VERIFIED]
        assert quota_admin.describe(QuotaEntity.of(user="tenant-a", client_id=client_id))["producer_byte_rate"] > 0
    finally:
        stop.set()
        t.join(timeout=30)
        source.close()
        engine.lease.release()
    assert not t.is_alive()
    assert any(r["type"] == "decision" and r["decision"]["detection_id"] == det.id for r in read_audit())


def test_a_source_subscribed_before_its_topic_exists_reads_once_it_does(bootstrap, unique):
    """The 'topic not available' event is not a record: it must not leave a commit pending that
    can never succeed (found in a drill: the engine then retried that commit forever)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from guardian.errors import TemporaryError

    topic = f"guardian.detections.late-{unique}"
    source = KafkaDetectionSource({"bootstrap.servers": bootstrap, "topic.metadata.refresh.interval.ms": 500},
                                  topic, group_id=f"engine-{unique}")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        source.poll(2.0)   # the subscription finds no topic
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
        det = detection("late-client")
        p = Producer({"bootstrap.servers": bootstrap})
        p.produce(topic, value=json.dumps(det.to_dict()).encode())
        p.flush(15)
        got, errors, deadline = [], [], time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            try:
                got = source.poll(0.5)
            except TemporaryError as exc:
                errors.append(str(exc))
        assert [d.id for d in got] == [det.id], errors[-3:]
        source.poll(0.5)   # commits what it read, without an error
    finally:
        source.close()
        admin.delete_topics([topic])


def test_a_standby_engine_leaves_every_detection_to_the_lease_holder(make_engine, quota, ledger, redis_client,
                                                                     bootstrap, make_topic, unique):
    """Two ``guardian run`` processes: both have a detection source in the engines' group, only the lease
    holder acts. The standby must not hold partitions it never polls (it did, up to
    max.poll.interval.ms = 5 min: a 2-worker drill acted minutes late on half its detections)."""
    topic = make_topic("guardian", partitions=2, name="detections")
    group = f"engine-{unique}"
    key = ledger.prefix + "lease"
    leader_lease = RedisLease(redis_client, key, "leader", 5.0)
    assert leader_lease.ensure()
    standby = make_engine({"quota": quota()}, lease=RedisLease(redis_client, key, "standby", 5.0), name="standby")
    leader = make_engine({"quota": quota()}, lease=leader_lease, name="leader")
    standby_source = KafkaDetectionSource({"bootstrap.servers": bootstrap}, topic, group_id=group)
    leader_source = KafkaDetectionSource({"bootstrap.servers": bootstrap}, topic, group_id=group)
    stop = threading.Event()
    threads = [threading.Thread(target=e.run_forever, args=(s,), kwargs={"stop": stop, "poll_s": 0.2})
               for e, s in ((standby, standby_source), (leader, leader_source))]
    threads[0].start()
    time.sleep(3.0)   # the standby runs first, as a worker that started earlier would
    threads[1].start()
    dets = [detection(f"{unique}-p{p}") for p in (0, 1)]
    producer = Producer({"bootstrap.servers": bootstrap})
    for p, det in enumerate(dets):   # one detection on each partition
        producer.produce(topic, partition=p, value=json.dumps(det.to_dict()).encode())
    producer.flush(15)
    try:
        deadline = time.monotonic() + 45
        handled: set[str] = set()
        while handled != {d.id for d in dets} and time.monotonic() < deadline:
            handled = {q.detection["id"] for q in ledger.list()}
            time.sleep(0.2)
        assert handled == {d.id for d in dets}, f"the lease holder handled {handled} of {[d.id for d in dets]}"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        standby_source.close()
        leader_source.close()
        leader_lease.release()


def test_this_processs_own_detections_come_at_once_and_each_detection_once(bootstrap, make_topic, unique):
    """``guardian run`` hands its worker's detections to its engine (``LocalDetections``) as well as to
    Kafka: the local copy is taken at once, its Kafka twin is skipped, another worker's detection
    still comes through Kafka, and a standby leaves its local ones to the lease holder."""
    from guardian.engine.source import LocalDetections

    topic = make_topic("guardian", name="detections")
    local = LocalDetections()
    source = KafkaDetectionSource({"bootstrap.servers": bootstrap}, topic, group_id=f"engine-{unique}", local=local)
    mine, theirs, later = detection("mine"), detection("theirs"), detection("later")
    record = {d.id: json.dumps(d.to_dict()).encode() for d in (mine, theirs, later)}
    try:
        source.poll(0.5)   # joins the group
        local.offer(record[mine.id])
        got = source.poll(30.0)
        assert [d.id for d in got] == [mine.id], "the local detection is taken by the first poll"
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce(topic, value=record[mine.id])     # its twin, as the worker publishes it
        producer.produce(topic, value=record[theirs.id])   # another worker's
        producer.flush(15)
        seen, deadline = [], time.monotonic() + 60
        while theirs.id not in seen and time.monotonic() < deadline:
            seen += [d.id for d in source.poll(0.5)]
        assert seen == [theirs.id], "the Kafka twin of a local detection is skipped; the other comes"
        local.offer(record[later.id])
        source.standby()
        assert local.take() == [], "a standby drops its local detections: the lease holder reads them in Kafka"
        local.offer(record[later.id])   # the worker goes on detecting while this process stands by
        source.standby()                # the engine's loop calls it on every turn without the lease
        assert local.take() == [], "not kept to be acted on, stale, when this process takes the lease"
    finally:
        source.close()


def test_local_detections_are_bounded_and_count_what_they_drop():
    from guardian.engine.source import LocalDetections

    from prometheus_client import CollectorRegistry

    from guardian.metrics import GuardianMetrics

    metrics = GuardianMetrics(CollectorRegistry())
    local = LocalDetections(maxsize=2, on_drop=metrics.local_detections_dropped.inc)
    for value in (b"1", b"2", b"3", b"4"):
        local.offer(value)
    assert local.dropped == 2
    assert metrics.registry.get_sample_value("guardian_engine_local_detections_dropped_total") == 2.0
    assert local.take() == [b"1", b"2"] and local.take() == []


def test_a_detection_is_read_before_its_workers_transaction_commits(bootstrap, make_topic, unique):
    """Workers publish detections in exactly-once transactions, committed every second (longer on a busy
    broker): the engine acts on a detection as soon as the broker has it."""
    topic = make_topic("guardian", name="detections")
    source = KafkaDetectionSource({"bootstrap.servers": bootstrap}, topic, group_id=f"engine-{unique}")
    worker = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"worker-{unique}"})
    det = detection("in-a-transaction")
    try:
        worker.init_transactions(30)
        worker.begin_transaction()
        worker.produce(topic, value=json.dumps(det.to_dict()).encode())
        worker.flush(15)   # on the broker, the transaction still open
        got, deadline = [], time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            got = source.poll(0.5)
        assert [d.id for d in got] == [det.id]
        worker.commit_transaction(30)
    finally:
        source.close()
