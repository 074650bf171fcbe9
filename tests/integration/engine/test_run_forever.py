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
