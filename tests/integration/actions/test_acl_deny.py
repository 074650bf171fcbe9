"""A topic DENY ACL cuts exactly one principal off exactly one topic; revert restores the exact ACL set."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)

from guardian.actuators.acl import Acl


def all_acls(bootstrap: str) -> set[Acl]:
    """Every ACL binding on the cluster."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                           AclOperation.ANY, AclPermissionType.ANY)
    return {Acl.from_binding(b) for b in admin.describe_acls(flt, request_timeout=30).result(timeout=30)}


def produce_one(conf: dict, topic: str):
    """Produce one record; the delivery error (``None`` when it landed)."""
    result: list = []
    p = Producer({**conf, "message.timeout.ms": 15000, "retries": 2})
    p.produce(topic, b"probe", on_delivery=lambda err, msg: result.append(err))
    p.flush(30)
    assert result, f"no delivery report for {topic} within 30 s"
    return result[0]


def consume_error(conf: dict, topic: str, group: str):
    """Fetch from partition 0 of ``topic``; the first error code seen (``None`` when a record arrives)."""
    c = Consumer({**conf, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        for _ in range(40):
            msg = c.poll(0.5)
            if msg is None:
                continue
            return msg.error().code() if msg.error() else None
        raise AssertionError(f"neither a record nor an error from {topic} within 20 s")
    finally:
        c.close()


def test_deny_write_blocks_only_that_topic_for_only_that_tenant(bootstrap, tenant_conf, make_topic, acl_actuator):
    a1, a2, b1 = make_topic("tenant-a"), make_topic("tenant-a"), make_topic("tenant-b")
    conf_a, conf_b = tenant_conf("tenant-a"), tenant_conf("tenant-b")
    assert produce_one(conf_a, a1) is None, "tenant-a could not produce to its own topic before the ACL"
    acls_before = all_acls(bootstrap)

    plan = acl_actuator.plan({"principal": "User:tenant-a", "topic": a1}, {"side": "produce"}, "q-acl-1")
    before = acl_actuator.observe(plan)
    # The tenant's own prefixed ALLOW is what gives it access; observe records it.
    assert Acl("TOPIC", "tenant-a.", "PREFIXED", "User:tenant-a", "*", "ALL", "ALLOW").to_dict() in before["acls"]
    acl_actuator.apply(plan)
    try:
        assert acl_actuator.verify(plan)
        err = produce_one(conf_a, a1)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
        assert produce_one(conf_a, a2) is None, "tenant-a's other topic stopped working"
        assert produce_one(conf_b, b1) is None, "tenant-b stopped working"
        # Produce side only: tenant-a still reads the topic (the probe record from before the ACL).
        assert consume_error(conf_a, a1, f"tenant-a.g-{uuid.uuid4().hex[:8]}") is None
        # The tenant's ALLOW bindings are all still there.
        assert acls_before <= all_acls(bootstrap)
    finally:
        acl_actuator.revert(plan, before)

    assert all_acls(bootstrap) == acls_before
    assert not acl_actuator.verify(plan)
    assert produce_one(conf_a, a1) is None, "tenant-a still cannot produce after revert"


def test_deny_read_makes_fetch_fail_with_topic_authorization(tenant_conf, make_topic, acl_actuator, unique):
    topic = make_topic("tenant-a")
    conf_a = tenant_conf("tenant-a")
    assert produce_one(conf_a, topic) is None
    plan = acl_actuator.plan({"principal": "User:tenant-a", "topic": topic}, {"side": "consume"})
    before = acl_actuator.observe(plan)
    acl_actuator.apply(plan)
    try:
        code = consume_error(conf_a, topic, f"tenant-a.g-{unique}")
        assert code == KafkaError.TOPIC_AUTHORIZATION_FAILED, code
        assert produce_one(conf_a, topic) is None, "consume-side DENY also blocked produce"
    finally:
        acl_actuator.revert(plan, before)
    assert consume_error(conf_a, topic, f"tenant-a.g2-{unique}") is None


def test_revert_keeps_a_deny_that_an_operator_had_set_before(bootstrap, make_topic, acl_actuator):
    topic = make_topic("tenant-a")
    operator_deny = Acl("TOPIC", topic, "LITERAL", "User:tenant-a", "*", "READ", "DENY")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_acls([operator_deny.to_binding()], request_timeout=30).values():
        fut.result(timeout=30)
    try:
        plan = acl_actuator.plan({"principal": "User:tenant-a", "topic": topic}, {"side": "both"})
        deadline = time.monotonic() + 10  # ACLs reach the broker's authorizer through the controller
        while operator_deny.to_dict() not in (before := acl_actuator.observe(plan))["acls"]:
            assert time.monotonic() < deadline, "the operator's DENY never became visible"
            time.sleep(0.05)
        assert operator_deny.to_dict() in before["acls"]
        acl_actuator.apply(plan)
        acl_actuator.revert(plan, before)
        after = acl_actuator.observe(plan)
        assert after == before
        assert operator_deny.to_dict() in after["acls"]
    finally:
        for fut in admin.delete_acls([operator_deny.to_exact_filter()], request_timeout=30).values():
            fut.result(timeout=30)
