"""A crash at every step boundary, then a restart, ends with each action applied exactly once
and the ledger matching the cluster (real broker quotas, real Redis, real audit topic)."""

from __future__ import annotations

import time

import pytest

from guardian.model.quarantine import QState, StepStatus
from guardian.clients.kafka_admin import QuotaEntity

from .conftest import Crash, crash_once_at, detection

APPLY_STEPS = ["plan", "record_decision", "observe", "record_planned", "apply", "record_applied",
               "verify", "record_verified", "audit"]
REVERT_STEPS = ["revert", "record_reverted", "audit"]
ORIGINAL = {"producer_byte_rate": 9_000_000.0}  # a quota the tenant already had: revert must restore it


def _set_original(quota_admin, entity) -> None:
    """Give the tenant a quota of its own and wait until the broker reports it (KRaft propagates async)."""
    quota_admin.alter(entity, ORIGINAL)
    deadline = time.monotonic() + 30
    while quota_admin.describe(entity) != ORIGINAL:
        assert time.monotonic() < deadline, "the broker never reported the quota the test set"
        time.sleep(0.05)


def _restart(make_engine, quota, audit_sink):
    """A fresh process: new actuator, new engine, same ledger and cluster."""
    act = quota()
    return act, make_engine({"quota": act}, audit_sink=audit_sink)


@pytest.mark.parametrize("step", APPLY_STEPS)
def test_crash_while_applying_converges_exactly_once(step, make_engine, quota, quota_admin, client_id,
                                                     ledger, audit_sink, read_audit):
    entity = QuotaEntity.of(user="tenant-a", client_id=client_id)
    _set_original(quota_admin, entity)
    det = detection(client_id)

    first = quota()
    engine = make_engine({"quota": first}, audit_sink=audit_sink, crash_at=crash_once_at(step))
    with pytest.raises(Crash):
        engine.handle(det)

    second, engine = _restart(make_engine, quota, audit_sink)
    engine.tick()            # the reconciler converges whatever the ledger already says
    engine.handle(det)       # the source redelivers the uncommitted detection
    engine.tick()

    qs = ledger.list()
    assert len(qs) == 1, "one detection, one quarantine, whatever crashed"
    q = qs[0]
    assert q.state is QState.ACTIVE and len(q.desired) == 1
    rec = ledger.get_action(q.desired[0]["idempotency_key"])
    assert rec.status is StepStatus.VERIFIED
    assert rec.before["quotas"] == ORIGINAL, "the state before apply is the tenant's, never the throttled one"
    assert first.effective_applies + second.effective_applies == 1
    # Ledger == cluster.
    assert quota_admin.describe(entity)["producer_byte_rate"] == q.desired[0]["params"]["producer_byte_rate"]
    assert quota_admin.describe(entity)["producer_byte_rate"] == pytest.approx(4 * det.baseline)

    records = read_audit()
    ids = [r["id"] for r in records]
    steps = {r["status"] for r in records if r["type"] == "step"}
    assert steps == {"planned", "applied", "verified"}
    assert {r["event"] for r in records if r["type"] == "quarantine"} >= {"created"}
    # At-least-once to Kafka, exactly once per id: every step recorded once after dedupe.
    step_ids = {i for i in ids if i.startswith("step:")}
    assert len(step_ids) == 3
    assert ledger.outbox_len() == 0


@pytest.mark.parametrize("step", REVERT_STEPS)
def test_crash_while_releasing_restores_exactly_the_previous_quota(step, make_engine, quota, quota_admin,
                                                                   client_id, ledger, audit_sink, read_audit):
    entity = QuotaEntity.of(user="tenant-a", client_id=client_id)
    _set_original(quota_admin, entity)
    act, engine = _restart(make_engine, quota, audit_sink)
    d = engine.handle(detection(client_id))
    assert quota_admin.describe(entity) != ORIGINAL

    engine = make_engine({"quota": act}, audit_sink=audit_sink, crash_at=crash_once_at(step))
    with pytest.raises(Crash):
        engine.release(d.quarantine_id, by="sre", reason="false positive")

    second, engine = _restart(make_engine, quota, audit_sink)
    engine.tick()
    engine.tick()
    q = ledger.get(d.quarantine_id)
    assert q.state is QState.RELEASED
    rec = ledger.get_action(q.desired[0]["idempotency_key"])
    assert rec.status is StepStatus.REVERTED
    assert quota_admin.describe(entity) == ORIGINAL
    assert act.effective_reverts + second.effective_reverts == 1
    assert ledger.probation(q.workload_key) is not None
    assert "reverted" in {r.get("status") for r in read_audit()}


def test_revert_restores_no_quota_at_all(make_engine, quota, quota_admin, client_id, ledger):
    entity = QuotaEntity.of(user="tenant-a", client_id=client_id)
    assert quota_admin.describe(entity) == {}
    _, engine = _restart(make_engine, quota, None)
    d = engine.handle(detection(client_id))
    assert "producer_byte_rate" in quota_admin.describe(entity)
    engine.release(d.quarantine_id, by="sre")
    assert quota_admin.describe(entity) == {}
