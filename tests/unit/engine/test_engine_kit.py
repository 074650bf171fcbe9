"""The action engine on the testing kit (guardian/testing.py): the in-memory ledger, the fake clock
and the recording actuator. The same behaviours run against the real broker and Redis under
tests/integration/engine; these are the fast, pure versions a contributor runs first."""

from __future__ import annotations

import uuid

import pytest

from guardian.model.detection import Detection, Severity, Signature
from guardian.engine.engine import ActionEngine
from guardian.model.quarantine import Outcome, QState, StepStatus
from guardian.errors import ConflictError
from guardian.policy.config import parse_policy
from guardian.testing import FakeClock, MemoryLedger, RecordingActuator, pressure_blaming, without_harm_test

POLICY = """
global:
  max_concurrent_quarantines: {cap}
  probation: {{duration_s: 600}}
  harm: {{watch_ttl_s: 900}}
policies:
  - name: tenants
    match: {{principals: ["User:*"]}}
    min_severity: high
    ladder:
      - {{action: throttle, multiple_of_baseline: 4, floor: 1024, evidence_s: 5, cooldown_s: 30, ttl_s: 300}}
"""


def policies(cap: int = 5, harm: bool = False):
    p = parse_policy(POLICY.format(cap=cap), "kit.yaml")
    return p if harm else without_harm_test(p)


def detection(client_id: str, ts: float, principal: str = "User:tenant-a") -> Detection:
    return Detection(id=f"det-{uuid.uuid4().hex[:8]}", ts=ts, signature=Signature.RUNAWAY_PRODUCER,
                     severity=Severity.CRITICAL, confidence=0.95,
                     workload={"principal": principal, "client_id": client_id},
                     metric="produce_byte_rate", baseline=100_000.0, observed=2_000_000.0, ratio=20.0,
                     duration_s=20.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(clock) -> MemoryLedger:
    return MemoryLedger(clock)


@pytest.fixture
def quota() -> RecordingActuator:
    return RecordingActuator("quota")


def make(ledger, quota, clock, **kw) -> ActionEngine:
    pol = kw.pop("policies", None) or policies()
    return ActionEngine(ledger, pol, {"quota": quota}, clock=clock, **kw)


def throttled(quota: RecordingActuator, client_id: str) -> bool:
    return any(f'"{client_id}"' in target and values for target, values in quota.state.items())


def test_a_detection_opens_a_quarantine_and_the_throttle_is_applied_and_verified(ledger, quota, clock):
    engine = make(ledger, quota, clock)
    d = engine.handle(detection("loader", clock()))
    assert d.outcome is Outcome.QUARANTINED
    q = ledger.get(d.quarantine_id)
    assert q.state is QState.ACTIVE and q.version >= 1
    (rec,) = ledger.actions(q)
    assert rec.status is StepStatus.VERIFIED and rec.before == {"values": {}}
    assert [m for m, _ in quota.calls] == ["observe", "apply", "verify"]
    assert quota.effective_applies == 1 and throttled(quota, "loader")
    assert ledger.dirty() == [], "a converged quarantine is no longer dirty"
    assert ledger.outbox_len() > 0, "the decision and every step are in the audit outbox"


def test_a_harmless_runaway_is_watched_and_nothing_is_applied(ledger, quota, clock):
    calm = lambda: pressure_blaming([], ts=clock(), idle=0.9)   # noqa: E731 - the cluster is fine
    engine = make(ledger, quota, clock, policies=policies(harm=True), cluster_pressure=calm)
    d = engine.handle(detection("loader", clock()))
    assert d.outcome is Outcome.WATCH and not d.acts
    q = ledger.get(d.quarantine_id)
    assert q.state is QState.WATCHING and not q.throttles
    engine.tick()
    assert quota.steps("apply") == 0 and quota.state == {}
    assert ledger.open_counting() == [], "a watch takes no place under the caps"


def test_a_runaway_that_hurts_is_quarantined(ledger, quota, clock):
    hurting = lambda: pressure_blaming([("User:tenant-a", "loader")], ts=clock())   # noqa: E731
    engine = make(ledger, quota, clock, policies=policies(harm=True), cluster_pressure=hurting)
    d = engine.handle(detection("loader", clock()))
    assert d.outcome is Outcome.QUARANTINED and d.harm["harmful"] is True
    # sized by pressure: a byte-rate throttle and a cap on its thread time, each its own step
    assert quota.steps("apply") == 2 and quota.steps("verify") == 2
    assert sorted(k for i in d.intents for k in i["params"]) == ["producer_byte_rate", "request_percentage"]
    engine.release(d.quarantine_id, by="sre", reason="fixed")
    assert quota.state == {}, "the release reverted both"


def test_release_reverts_and_starts_probation(ledger, quota, clock):
    engine = make(ledger, quota, clock)
    d = engine.handle(detection("loader", clock()))
    engine.release(d.quarantine_id, by="sre", reason="tenant fixed it")
    q = ledger.get(d.quarantine_id)
    assert q.state is QState.RELEASED
    assert [r.status for r in ledger.actions(q)] == [StepStatus.REVERTED]
    assert quota.state == {}, "revert put back what was there before: nothing"
    assert ledger.probation(q.workload_key)["policy"] == "tenants"
    assert ledger.open_for(q.workload_key) is None


def test_ttl_expiry_reverts(ledger, quota, clock):
    engine = make(ledger, quota, clock)
    d = engine.handle(detection("loader", clock()))
    clock.advance(299)
    assert engine.tick()["expired"] == 0
    clock.advance(1)
    assert engine.tick()["expired"] == 1
    q = ledger.get(d.quarantine_id)
    assert q.state is QState.EXPIRED and quota.state == {} and quota.effective_reverts == 1


def test_an_old_quarantine_expires_behind_more_than_a_thousand_newer_finished_ones(ledger, quota, clock):
    """The tick read ``ledger.list`` (its newest 1,000): an older open quarantine never reached its TTL."""
    from tests.unit.engine.ledger_behaviours import quarantine

    engine = make(ledger, quota, clock)
    d = engine.handle(detection("loader", clock()))
    for i in range(1000):
        clock.advance(0.1)
        ledger.create_quarantine(quarantine(f"done{i}", f"c{i}", clock(), state=QState.RELEASED))
    clock.advance(300)
    assert engine.tick()["expired"] == 1
    assert ledger.get(d.quarantine_id).state is QState.EXPIRED and quota.state == {}


def test_pause_holds_new_actions_and_resume_lets_them_through(ledger, quota, clock):
    engine = make(ledger, quota, clock)
    engine.pause(by="sre", reason="incident review")
    d = engine.handle(detection("loader", clock()))
    assert d.outcome is Outcome.PAUSED and quota.steps("apply") == 0
    engine.resume(by="sre")
    assert engine.handle(detection("loader", clock())).outcome is Outcome.QUARANTINED
    assert quota.effective_applies == 1


def test_the_cap_holds(ledger, quota, clock):
    engine = make(ledger, quota, clock, policies=policies(cap=1))
    assert engine.handle(detection("first", clock())).outcome is Outcome.QUARANTINED
    assert engine.handle(detection("second", clock())).outcome is Outcome.CAPPED
    assert len(ledger.open_counting()) == 1 and quota.effective_applies == 1


def test_a_stale_version_is_a_conflict_as_in_redis(ledger, quota, clock):
    engine = make(ledger, quota, clock)
    d = engine.handle(detection("loader", clock()))
    mine, theirs = ledger.get(d.quarantine_id), ledger.get(d.quarantine_id)
    theirs.expires_at += 60
    ledger.save_quarantine(theirs)
    mine.expires_at += 3600
    with pytest.raises(ConflictError):
        ledger.save_quarantine(mine)
    assert ledger.get(d.quarantine_id).expires_at == theirs.expires_at
    assert mine.version == theirs.version - 1, "a failed save leaves the caller's version as it was"


def test_granting_an_appeal_another_sre_denied_meanwhile_is_a_conflict(ledger, quota, clock):
    """Two SREs decide one appeal: the grant was decided on 'appealed', so after the deny it conflicts
    instead of releasing a quarantine the other SRE just kept (the API's race test saw both succeed)."""
    engine = make(ledger, quota, clock)
    d = engine.handle(detection("loader", clock()))
    engine.appeal(d.quarantine_id, by="tenant-a", reason="x")
    engine.deny(d.quarantine_id, by="bob", note="no")
    with pytest.raises(ConflictError, match="decided meanwhile"):
        engine.release(d.quarantine_id, by="alice", reason="fine", only_if=QState.APPEALED)
    assert ledger.get(d.quarantine_id).state is QState.ACTIVE and throttled(quota, "loader")


def test_observers_see_every_decision_and_tick_and_a_failing_one_stops_nothing(ledger, quota, clock):
    """``on_decision`` and ``on_tick`` are how ``guardian run`` counts decisions and throttle effects
    (no engine subclass); an observer that raises is logged and the engine goes on acting."""
    seen: list[tuple[str, str]] = []
    ticks: list[dict[str, int]] = []

    def broken(counts: dict[str, int]) -> None:
        ticks.append(counts)
        raise RuntimeError("metrics backend gone")

    engine = make(ledger, quota, clock, on_decision=lambda det, d: seen.append((det.id, d.outcome.value)),
                  on_tick=broken)
    first = detection("orders", clock())
    d = engine.handle(first)
    assert d.outcome is Outcome.QUARANTINED and seen == [(first.id, "quarantined")]
    counts = engine.tick()
    assert ticks == [counts] and counts["pending"] == 0
    assert [q.state for q in ledger.list()] == [QState.ACTIVE]
    assert throttled(quota, "orders")
