"""Guardrails and the lifecycle against the real broker and Redis: dry-run, pause, protected
principals, caps under a storm, optimistic concurrency, approve/appeal/deny/extend/expire, escalation."""

from __future__ import annotations

import threading

import pytest

from guardian.model.quarantine import Outcome, QState, StepStatus
from guardian.errors import ConflictError
from guardian.clients.kafka_admin import QuotaEntity

from .conftest import detection, make_policies


def _entity(cid: str, user: str = "tenant-a") -> QuotaEntity:
    return QuotaEntity.of(user=user, client_id=cid)


def test_dry_run_changes_nothing_and_records_what_it_would_do(make_engine, quota, quota_admin, client_id,
                                                             ledger, audit_sink, read_audit):
    act = quota()
    engine = make_engine({"quota": act}, make_policies(dry=True), audit_sink=audit_sink)
    d = engine.handle(detection(client_id))
    assert d.outcome is Outcome.SHADOW and d.dry_run
    assert quota_admin.describe(_entity(client_id)) == {}
    assert act.apply_calls == 0
    q = ledger.get(d.quarantine_id)
    assert q.state is QState.PROPOSED and q.dry_run and q.desired[0]["params"] == {"scope": "client",
                                                                                   "producer_byte_rate": 400_000.0}
    assert ledger.actions(q) == [] and ledger.open_counting() == []
    engine.tick()
    assert quota_admin.describe(_entity(client_id)) == {}
    shadow = [r for r in read_audit() if r["type"] == "decision"]
    assert shadow[0]["decision"]["outcome"] == "shadow" and shadow[0]["decision"]["intents"]


def test_pause_stops_new_actions_and_resume_lets_them_through(make_engine, quota, quota_admin, client_id, ledger):
    engine = make_engine({"quota": quota()})
    engine.pause(by="sre", reason="incident review")
    assert engine.paused()["by"] == "sre"
    d = engine.handle(detection(client_id))
    assert d.outcome is Outcome.PAUSED
    assert ledger.list() == [] and quota_admin.describe(_entity(client_id)) == {}
    engine.resume(by="sre")
    d = engine.handle(detection(client_id))
    assert d.outcome is Outcome.QUARANTINED
    assert quota_admin.describe(_entity(client_id))["producer_byte_rate"] == 400_000.0


def test_protected_principals_are_never_touched(make_engine, quota, quota_admin, unique, ledger):
    engine = make_engine({"quota": quota()})
    for principal in ("User:admin", "User:guardian"):
        cid = f"x-{unique}"
        before = quota_admin.describe(_entity(cid, principal.split(":")[1]))
        d = engine.handle(detection(cid, principal=principal))
        assert engine.policies.first_match(d.workload) is not None, "a policy matches it"
        assert d.outcome is Outcome.PROTECTED
        assert quota_admin.describe(_entity(cid, principal.split(":")[1])) == before
    assert ledger.list() == []


def test_caps_hold_under_a_storm_from_two_racing_engines(make_engine, quota, quota_admin, unique, ledger):
    cap, n = 3, 24
    cids = [f"storm-{unique}-{i}" for i in range(n)]
    engines = [make_engine({"quota": quota()}, make_policies(cap=cap)) for _ in range(2)]
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def storm(engine, part):
        for cid in part:
            d = engine.handle(detection(cid))
            with lock:
                outcomes.append(d.outcome)

    threads = [threading.Thread(target=storm, args=(e, cids[i::2])) for i, e in enumerate(engines)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert outcomes.count(Outcome.QUARANTINED) == cap
        assert outcomes.count(Outcome.CAPPED) == n - cap
        assert len(ledger.open_counting()) == cap
        throttled = [c for c in cids if quota_admin.describe(_entity(c))]
        assert len(throttled) == cap
    finally:
        for c in cids:
            quota_admin.restore(_entity(c), {})


def test_two_deciders_on_one_quarantine_one_wins(make_engine, quota, client_id, ledger):
    engine = make_engine({"quota": quota()})
    d = engine.handle(detection(client_id))
    a, b = ledger.get(d.quarantine_id), ledger.get(d.quarantine_id)
    a.expires_at += 60
    ledger.save_quarantine(a)
    b.expires_at += 120
    with pytest.raises(ConflictError):
        ledger.save_quarantine(b)
    assert ledger.get(d.quarantine_id).expires_at == a.expires_at


def test_a_release_and_the_engine_loop_converging_at_once_revert_once_without_a_conflict(
        make_engine, quota, quota_admin, client_id, ledger):
    """``guardian run --api``: the API's thread (an SRE's release) and the engine's loop (its tick) share one
    engine. While the release's revert waits on a busy broker, the tick reads the released quarantine and
    converges it too. Two reverts raced before: the loser's write of the action record failed on its
    version, and the release answered 409 after it had released (a drill's notes, 2026-12-06)."""
    act = quota()
    first_revert, go_on = threading.Event(), threading.Event()
    inner_revert = act.revert

    def revert(plan, before):   # the first revert waits (a busy broker) while the tick runs; others do not
        if not first_revert.is_set():
            first_revert.set()
            go_on.wait(30)
        inner_revert(plan, before)

    act.revert = revert
    engine = make_engine({"quota": act})
    d = engine.handle(detection(client_id))
    assert quota_admin.describe(_entity(client_id))["producer_byte_rate"] == 400_000.0
    errors: list[BaseException] = []

    def call(fn) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - the test's finding
            errors.append(exc)

    release = threading.Thread(target=call, args=(lambda: engine.release(d.quarantine_id, by="sre-1"),))
    release.start()
    assert first_revert.wait(30)
    tick = threading.Thread(target=call, args=(lambda: engine._converge(ledger.get(d.quarantine_id)),))
    tick.start()
    tick.join(1.0)      # without one converge at a time, the tick reverts and writes the record here
    go_on.set()
    release.join(30)
    tick.join(30)
    assert errors == []
    assert quota_admin.describe(_entity(client_id)) == {}
    (rec,) = ledger.actions(ledger.get(d.quarantine_id))
    assert rec.status is StepStatus.REVERTED and act.effective_reverts == 1


def test_approval_appeal_deny_release_and_probation(make_engine, quota, quota_admin, client_id, ledger, clock):
    policies = make_policies()
    ladder0 = policies.policies[0].ladder[0].model_copy(update={"requires_approval": True})
    policies = policies.model_copy(update={"policies": [policies.policies[0].model_copy(
        update={"ladder": [ladder0, *policies.policies[0].ladder[1:]]})]})
    engine = make_engine({"quota": quota()}, policies)
    d = engine.handle(detection(client_id))
    assert d.outcome is Outcome.AWAITING_APPROVAL
    assert quota_admin.describe(_entity(client_id)) == {}
    engine.approve(d.quarantine_id, by="sre-1")
    assert quota_admin.describe(_entity(client_id))["producer_byte_rate"] == 400_000.0
    with pytest.raises(ConflictError):
        engine.approve(d.quarantine_id, by="sre-2")
    engine.appeal(d.quarantine_id, by="tenant-a", reason="planned backfill")
    assert engine.deny(d.quarantine_id, by="sre-1", note="not announced").state is QState.ACTIVE
    assert quota_admin.describe(_entity(client_id))["producer_byte_rate"] == 400_000.0
    engine.appeal(d.quarantine_id, by="tenant-a", reason="really planned")
    q = engine.release(d.quarantine_id, by="sre-1", reason="appeal granted")
    assert q.state is QState.RELEASED and q.appeal["decision"] == "granted"
    assert quota_admin.describe(_entity(client_id)) == {}
    assert [h["to"] for h in q.history] == ["proposed", "awaiting_approval", "active", "appealed", "active",
                                            "appealed", "released"]
    # Probation: a medium-severity repeat now acts (the policy's bar is high).
    from guardian.model.detection import Severity
    det = detection(client_id)
    det = type(det)(**{**det.__dict__, "severity": Severity.MEDIUM})
    assert engine.handle(det).outcome is Outcome.AWAITING_APPROVAL


def test_ttl_expiry_reverts_and_extend_postpones_it(make_engine, quota, quota_admin, client_id, ledger, clock):
    engine = make_engine({"quota": quota()})
    d = engine.handle(detection(client_id))
    q = ledger.get(d.quarantine_id)
    clock.t = q.expires_at - 1
    engine.extend(d.quarantine_id, by="sre", seconds=100)
    clock.t = q.expires_at + 50
    assert engine.tick()["expired"] == 0
    assert quota_admin.describe(_entity(client_id))["producer_byte_rate"] == 400_000.0
    clock.t = q.expires_at + 101
    assert engine.tick()["expired"] == 1
    q = ledger.get(d.quarantine_id)
    assert q.state is QState.EXPIRED and ledger.actions(q)[0].status is StepStatus.REVERTED
    assert quota_admin.describe(_entity(client_id)) == {}


def test_continued_detection_escalates_after_cooldown(make_engine, quota, quota_admin, client_id, ledger, clock):
    engine = make_engine({"quota": quota()})
    d = engine.handle(detection(client_id))
    assert engine.handle(detection(client_id)).outcome is Outcome.COOLING_DOWN
    clock.t += 31
    d2 = engine.handle(detection(client_id, duration=60))
    assert d2.outcome is Outcome.ESCALATED and d2.quarantine_id == d.quarantine_id
    assert quota_admin.describe(_entity(client_id))["producer_byte_rate"] == 200_000.0
    q = ledger.get(d.quarantine_id)
    assert q.rung == 1 and [r.status for r in ledger.actions(q)] == [StepStatus.VERIFIED] * 2
    engine.release(d.quarantine_id, by="sre")
    assert quota_admin.describe(_entity(client_id)) == {}, "reverts run newest first back to no quota"


def test_drift_is_reapplied_by_the_reconciler(make_engine, quota, quota_admin, client_id, ledger, clock):
    engine = make_engine({"quota": quota()})
    engine.handle(detection(client_id))
    quota_admin.restore(_entity(client_id), {})   # someone removes the throttle by hand
    engine.tick()
    import time
    deadline = time.monotonic() + 30
    while quota_admin.describe(_entity(client_id)).get("producer_byte_rate") != 400_000.0:
        assert time.monotonic() < deadline, "the reconciler did not re-apply the drifted quota"
        clock.t += 31
        engine.tick()
        time.sleep(0.1)
