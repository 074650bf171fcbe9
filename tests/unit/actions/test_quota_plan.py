"""QuotaActuator.plan and the revert arithmetic: pure, no broker."""

from __future__ import annotations

import pytest

from guardian.actuators.base import ActionPlan
from guardian.actuators.quota import QuotaActuator, entity_of, rates_of, revert_ops
from guardian.errors import PermanentError

Q = QuotaActuator(admin=None)


def test_client_scope_is_default_when_the_target_names_a_client_id():
    plan = Q.plan({"principal": "User:tenant-a", "client_id": "loader"}, {"producer_byte_rate": 1024}, "q1")
    assert plan.kind == "quota"
    assert plan.target == {"principal": "User:tenant-a", "user": "tenant-a", "client_id": "loader"}
    assert plan.params == {"scope": "client", "producer_byte_rate": 1024.0}
    assert str(entity_of(plan)) == "user=tenant-a,client-id=loader"


def test_user_scope_is_default_without_a_client_id_and_drops_nothing_else():
    plan = Q.plan({"principal": "User:tenant-b"}, {"consumer_byte_rate": 2e6, "request_percentage": 50})
    assert plan.params["scope"] == "user"
    assert str(entity_of(plan)) == "user=tenant-b"
    assert rates_of(plan) == {"consumer_byte_rate": 2e6, "request_percentage": 50.0}


def test_default_client_scope_targets_every_client_of_the_user_on_its_own():
    plan = Q.plan({"principal": "User:tenant-a", "client_id": "ignored"},
                  {"producer_byte_rate": 10, "scope": "default_client"})
    assert "client_id" not in plan.target
    assert str(entity_of(plan)) == "user=tenant-a,client-id=<default>"


def test_user_key_is_accepted_and_must_agree_with_the_principal():
    assert Q.plan({"user": "tenant-c"}, {"producer_byte_rate": 1}).target["principal"] == "User:tenant-c"
    with pytest.raises(PermanentError, match="disagrees"):
        Q.plan({"principal": "User:a", "user": "b"}, {"producer_byte_rate": 1})


def test_replanning_a_resolved_target_gives_the_same_idempotency_key():
    plan = Q.plan({"principal": "User:tenant-a", "client_id": "x"}, {"producer_byte_rate": 1000}, "q9")
    again = Q.plan(plan.target, plan.params, plan.quarantine_id)
    assert again == plan and again.idempotency_key == plan.idempotency_key
    assert ActionPlan.from_dict(plan.to_dict()).idempotency_key == plan.idempotency_key
    other = Q.plan({"principal": "User:tenant-a", "client_id": "x"}, {"producer_byte_rate": 1001}, "q9")
    assert other.idempotency_key != plan.idempotency_key


@pytest.mark.parametrize("target, params, message", [
    ({"principal": "Group:x"}, {"producer_byte_rate": 1}, "User:<name>"),
    ({"principal": "tenant-a"}, {"producer_byte_rate": 1}, "User:<name>"),
    ({}, {"producer_byte_rate": 1}, "needs a principal"),
    ({"principal": "User:a"}, {}, "at least one"),
    ({"principal": "User:a"}, {"producer_byte_rate": 0}, "positive"),
    ({"principal": "User:a"}, {"producer_byte_rate": -5}, "positive"),
    ({"principal": "User:a"}, {"producer_byte_rate": float("inf")}, "positive"),
    ({"principal": "User:a"}, {"producer_byte_rate": "1000"}, "number"),
    ({"principal": "User:a"}, {"producer_byte_rate": True}, "number"),
    ({"principal": "User:a"}, {"connection_creation_rate": 1}, "unknown quota parameter"),
    ({"principal": "User:a"}, {"producer_byte_rate": 1, "scope": "client"}, "needs a client_id"),
    ({"principal": "User:a"}, {"producer_byte_rate": 1, "scope": "cluster"}, "scope must be"),
])
def test_bad_plans_are_permanent_errors(target, params, message):
    with pytest.raises(PermanentError, match=message):
        Q.plan(target, params)


def test_revert_removes_keys_that_did_not_exist_and_restores_the_rest():
    plan = Q.plan({"principal": "User:a", "client_id": "c"},
                  {"producer_byte_rate": 100, "consumer_byte_rate": 200})
    before = {"consumer_byte_rate": 5000.0, "request_percentage": 10.0}
    current = {"producer_byte_rate": 100.0, "consumer_byte_rate": 200.0, "request_percentage": 10.0}
    assert revert_ops(plan, before, current) == ({"consumer_byte_rate": 5000.0}, ["producer_byte_rate"])


def test_revert_never_touches_keys_the_plan_did_not_set():
    plan = Q.plan({"principal": "User:a", "client_id": "c"}, {"producer_byte_rate": 100})
    # Someone else changed request_percentage during the quarantine: not ours to undo.
    before = {"request_percentage": 10.0}
    current = {"producer_byte_rate": 100.0, "request_percentage": 99.0}
    assert revert_ops(plan, before, current) == ({}, ["producer_byte_rate"])


def test_revert_of_a_restored_state_is_a_no_op():
    plan = Q.plan({"principal": "User:a", "client_id": "c"}, {"producer_byte_rate": 100})
    assert revert_ops(plan, {}, {}) == ({}, [])
    assert revert_ops(plan, {"producer_byte_rate": 7.0}, {"producer_byte_rate": 7.0}) == ({}, [])


def test_cluster_methods_refuse_a_plan_only_actuator_and_foreign_plans():
    plan = Q.plan({"principal": "User:a", "client_id": "c"}, {"producer_byte_rate": 100})
    with pytest.raises(PermanentError, match="without an admin"):
        Q.apply(plan)
    with pytest.raises(PermanentError, match="cannot run"):
        Q.apply(ActionPlan(kind="acl", target={}, params={}))
