"""AclActuator.plan and the revert selection: pure, no broker."""

from __future__ import annotations

import pytest

from guardian.actuators.acl import Acl, AclActuator, bindings_to_delete, deny_bindings, topics_of
from guardian.actuators.base import ActionPlan
from guardian.errors import PermanentError

A = AclActuator(admin=None)


def test_produce_side_is_write_and_is_the_default():
    plan = A.plan({"principal": "User:tenant-a", "topic": "tenant-a.x"}, {})
    assert plan.params == {"operations": ["WRITE"]}
    assert A.plan({"principal": "User:tenant-a", "topic": "tenant-a.x"}, {"side": "produce"}) == plan


def test_both_sides_on_several_topics_gives_one_literal_deny_per_topic_and_operation():
    plan = A.plan({"principal": "User:tenant-a", "topics": "tenant-a.b,tenant-a.a"},
                  {"side": "both", "topics": ["tenant-a.c", "tenant-a.a"]}, "q1")
    assert topics_of(plan) == ["tenant-a.a", "tenant-a.b", "tenant-a.c"]
    got = deny_bindings(plan)
    assert len(got) == 6
    assert {(b.name, b.operation) for b in got} == {(t, op) for t in topics_of(plan) for op in ("READ", "WRITE")}
    assert all(b.permission == "DENY" and b.pattern_type == "LITERAL" and b.host == "*"
               and b.principal == "User:tenant-a" and b.resource_type == "TOPIC" for b in got)


def test_operations_param_is_normalised():
    plan = A.plan({"principal": "User:t", "topic": "t.x"}, {"operations": ["write", "READ", "WRITE"]})
    assert plan.params == {"operations": ["READ", "WRITE"]}
    assert A.plan({"principal": "User:t", "topic": "t.x"}, {"operations": "read"}).params == {"operations": ["READ"]}


def test_replanning_a_resolved_plan_keeps_its_idempotency_key():
    plan = A.plan({"principal": "User:t", "topic": "t.x"}, {"side": "consume"}, "q2")
    again = A.plan(plan.target, plan.params, plan.quarantine_id)
    assert again.idempotency_key == plan.idempotency_key
    assert ActionPlan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize("target, params, message", [
    ({"topic": "t.x"}, {}, "principal"),
    ({"principal": "tenant-a", "topic": "t.x"}, {}, "principal"),
    ({"principal": "User:t"}, {}, "at least one topic"),
    ({"principal": "User:t", "topic": "bad topic"}, {}, "valid Kafka topic"),
    ({"principal": "User:t", "topic": "t/x"}, {}, "valid Kafka topic"),
    ({"principal": "User:t", "topic": "t.x"}, {"side": "admin"}, "side must be"),
    ({"principal": "User:t", "topic": "t.x"}, {"operations": ["DELETE"]}, "operations must be"),
    ({"principal": "User:t", "topic": "t.x"}, {"operations": []}, "operations must be"),
    ({"principal": "User:t", "topic": "t.x"}, {"operations": ["READ"], "side": "consume"}, "either"),
    ({"principal": "User:t", "topic": "t.x"}, {"allow": True}, "unknown ACL parameter"),
])
def test_bad_plans_are_permanent_errors(target, params, message):
    with pytest.raises(PermanentError, match=message):
        A.plan(target, params)


def test_revert_deletes_only_guardian_bindings_that_did_not_exist_before():
    plan = A.plan({"principal": "User:t", "topic": "t.x"}, {"side": "both"})
    tenant_allow = Acl("TOPIC", "t.", "PREFIXED", "User:t", "*", "ALL", "ALLOW")
    operator_deny = Acl("TOPIC", "t.x", "LITERAL", "User:t", "*", "READ", "DENY")
    doomed = bindings_to_delete(plan, [tenant_allow, operator_deny])
    assert doomed == [Acl("TOPIC", "t.x", "LITERAL", "User:t", "*", "WRITE", "DENY")]
    assert tenant_allow not in doomed


def test_acl_round_trips_through_the_ledger_form():
    a = Acl("TOPIC", "t.x", "LITERAL", "User:t", "*", "WRITE", "DENY")
    assert Acl.from_dict(a.to_dict()) == a
    assert Acl.from_binding(a.to_binding()) == a
    f = a.to_exact_filter()
    assert (f.name, f.principal, f.host, f.operation.name, f.permission_type.name,
            f.resource_pattern_type.name) == ("t.x", "User:t", "*", "WRITE", "DENY", "LITERAL")


def test_revert_without_a_recorded_state_refuses_instead_of_guessing():
    plan = A.plan({"principal": "User:t", "topic": "t.x"}, {})
    with pytest.raises(PermanentError, match="recorded ACL state"):
        A.revert(plan, {})
