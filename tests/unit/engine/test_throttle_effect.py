"""After a throttle is verified the engine follows the client's cluster-wide rate and records once
whether it fell to about R (guardian/policy/effect.py), on the testing kit: fake clock, in-memory
ledger, recording actuator, and the same ``FollowedRates`` the detector stage feeds in production."""

from __future__ import annotations

import uuid

import pytest

from guardian.model.detection import Detection, Severity, Signature
from guardian.policy.effect import NOT_EFFECTIVE_EVENT, EffectRule, FollowedRates, RatePoint, judge
from guardian.engine.engine import ActionEngine
from guardian.model.quarantine import StepStatus
from guardian.escalation.summary import build_record
from guardian.policy.config import parse_policy
from guardian.testing import FakeClock, MemoryLedger, RecordingActuator, without_harm_test

POLICY = """
global: {{max_concurrent_quarantines: 5}}
policies:
  - name: tenants
    match: {{principals: ["User:*"]}}
    min_severity: high
    ladder:
      - {{action: throttle, {rate}, evidence_s: 5, cooldown_s: 300, ttl_s: 600}}
"""
BASELINE = 100_000.0
R = 4 * BASELINE                                  # multiple_of_baseline: 4
SPREAD = {"1": 1_200_000.0, "2": 400_000.0, "3": 400_000.0}   # broker 1 carries 60 %: q = 0.6 R
Q = 0.6 * R
PRINCIPAL, CLIENT = "User:tenant-a", "loader"


def detection(ts: float, brokers: dict[str, float] | None = SPREAD) -> Detection:
    return Detection(id=f"det-{uuid.uuid4().hex[:8]}", ts=ts, signature=Signature.RUNAWAY_PRODUCER,
                     severity=Severity.CRITICAL, confidence=0.95,
                     workload={"principal": PRINCIPAL, "client_id": CLIENT}, metric="produce_byte_rate",
                     baseline=BASELINE, observed=2_000_000.0, ratio=20.0, duration_s=20.0,
                     extra={"brokers": dict(brokers)} if brokers else {})


class Kit:
    def __init__(self, rate: str = "multiple_of_baseline: 4", rates: bool = True) -> None:
        self.clock = FakeClock()
        self.ledger = MemoryLedger(self.clock)
        self.quota = RecordingActuator("quota")
        self.rates = FollowedRates(clock=self.clock)
        self.events: list[str] = []
        self.engine = ActionEngine(self.ledger, without_harm_test(parse_policy(POLICY.format(rate=rate), "t.yaml")),
                                   {"quota": self.quota}, clock=self.clock,
                                   client_rates=self.rates.read if rates else None,
                                   on_event=lambda event, q, d: self.events.append(event))
        self.ticks: list[dict[str, int]] = []

    def throttle(self) -> str:
        d = self.engine.handle(detection(self.clock()))
        assert d.quarantine_id is not None
        return d.quarantine_id

    def record(self, qid: str):
        (rec,) = self.ledger.actions(self.ledger.get(qid))
        return rec

    def run(self, seconds: int, total: float | None, brokers: dict[str, float] | None = None) -> None:
        """One tick a second; the stage hands the client's cluster-wide sample (if any) over each second."""
        for _ in range(seconds):
            self.clock.advance(1.0)
            if total is not None:
                parts = brokers or {"1": 0.6 * total, "2": 0.2 * total, "3": 0.2 * total}
                self.rates.observe(PRINCIPAL, CLIENT, {"produce_byte_rate": total}, self.clock(),
                                   lambda metric: parts)
            self.ticks.append(self.engine.tick())

    def counted(self, result: str) -> int:
        return sum(t.get(result, 0) for t in self.ticks)


def test_a_throttle_the_client_obeys_is_recorded_effective_when_the_third_window_averages_at_most_1_25_r():
    kit = Kit()
    qid = kit.throttle()
    rec = kit.record(qid)
    assert rec.status is StepStatus.VERIFIED and rec.effect is None
    assert rec.plan["params"]["cluster_rate"] == R and rec.plan["params"]["producer_byte_rate"] == Q
    kit.run(1, None)                       # the first tick starts following the client's series: t = 0
    kit.run(22, 3 * R)                     # two windows settle: the sensor still carries the excess
    kit.run(14, 1.1 * R)                   # the judged window (22-33 s) is under 1.25 R; its samples may be late
    assert kit.record(qid).effect is None and kit.counted("effective") == 0
    kit.run(2, 1.1 * R)                    # 38 s: the verdict
    rec = kit.record(qid)
    assert rec.effect is not None and rec.effect["result"] == "effective"
    assert rec.effect["measured"] == pytest.approx(1.1 * R) and rec.effect["target"] == R
    assert rec.effect["brokers"] == pytest.approx({"1": 0.66 * R, "2": 0.22 * R, "3": 0.22 * R})
    assert rec.status is StepStatus.VERIFIED, "the effect is a step of its own, not a new status"
    steps = [r for r in kit.ledger.outbox_peek(1000) if r["type"] == "step" and r.get("effect")]
    assert [s["effect"] for s in steps] == ["effective"]
    assert NOT_EFFECTIVE_EVENT not in kit.events, "an effective throttle is not escalated"
    # the API's quarantine view shows the effect step on its action
    from guardian.api.routes import summary_fields

    q = kit.ledger.get(qid)
    (view,) = summary_fields(q, {r.key: r for r in kit.ledger.actions(q)})["actions"]
    assert view.status == "verified" and view.effect["result"] == "effective" and view.effect["line"]
    # recorded once: later ticks, even with the client far over R again, change nothing
    version = rec.version
    kit.run(40, 5 * R)
    assert kit.record(qid).version == version and kit.counted("effective") == 1


def test_a_throttle_the_client_outruns_is_not_effective_with_its_rate_per_broker_and_is_escalated():
    kit = Kit()
    qid = kit.throttle()
    kit.run(1, None)
    kit.run(36, 2 * R)                     # held by nothing: still 2 R, with the planned spread
    assert kit.record(qid).effect is None, "not judged before the deadline (3 quota windows and the grace)"
    kit.run(2, 2 * R)
    effect = kit.record(qid).effect
    assert effect["result"] == "not_effective" and effect["measured"] == pytest.approx(2 * R)
    assert effect["brokers"] == pytest.approx({"1": 1.2 * R, "2": 0.4 * R, "3": 0.4 * R})
    assert effect["moved"] is False and "spread moved" not in effect["line"]
    assert effect["line"].startswith("throttle to 391 KiB/s not effective: client at 781 KiB/s cluster-wide, "
                                     "brokers {1: ")
    assert kit.counted("not_effective") == 1 and kit.events.count(NOT_EFFECTIVE_EVENT) == 1
    q = kit.ledger.get(qid)
    assert q.history[-1]["event"] == NOT_EFFECTIVE_EVENT and q.history[-1]["reason"] == effect["line"]
    # the SRE's escalation leads with the line
    record = build_record(q.to_dict(), event=NOT_EFFECTIVE_EVENT, now=kit.clock())
    headline = record["summary"]["headline"]
    assert headline.startswith('[guardian] THROTTLE NOT EFFECTIVE on User:"tenant-a" client-id "loader"')
    assert record["summary"]["text"].splitlines()[1] == f"Effect: {effect['line']}"


def test_a_client_whose_load_moved_onto_brokers_under_the_quota_is_said_to_have_moved():
    kit = Kit()
    qid = kit.throttle()
    kit.run(1, None)
    # 1.5 R, evenly over the three brokers: each under q = 0.6 R, so no broker holds it back
    kit.run(38, 1.5 * R, brokers={"1": 0.5 * R, "2": 0.5 * R, "3": 0.5 * R})
    effect = kit.record(qid).effect
    assert effect["result"] == "not_effective" and effect["moved"] is True
    assert "its spread moved (busiest broker's share 0.33, planned 0.60): under the quota on brokers 1, 2, 3" \
        in effect["line"]


def test_no_cluster_wide_series_for_the_client_is_recorded_unmeasured_after_the_deadline():
    kit = Kit()
    qid = kit.throttle()
    kit.run(37, None)
    assert kit.record(qid).effect is None
    kit.run(2, None)
    effect = kit.record(qid).effect
    assert effect["result"] == "unmeasured" and effect["measured"] is None
    assert "0 cluster-wide samples of the client in the window 22-33s after the verification" in effect["line"]
    assert kit.counted("unmeasured") == 1 and NOT_EFFECTIVE_EVENT not in kit.events


@pytest.mark.parametrize("rate", ["quota: request_percentage, absolute: 50",
                                  "quota: controller_mutation_rate, absolute: 5"])
def test_a_quota_key_without_a_rate_series_is_skipped_and_says_so(rate):
    kit = Kit(rate=rate)
    qid = kit.throttle()
    kit.run(1, None)
    effect = kit.record(qid).effect
    key = rate.split(",")[0].split(": ")[1]
    assert effect["result"] == "skipped" and effect["key"] == key
    assert effect["line"] == f"{key} has no cluster-wide rate series to check the throttle against"
    assert kit.counted("skipped") == 1


def test_without_a_rates_reader_the_engine_judges_nothing():
    kit = Kit(rates=False)
    qid = kit.throttle()
    kit.run(40, None)
    assert kit.record(qid).effect is None and not any(k in t for t in kit.ticks for k in ("skipped", "unmeasured"))


def test_a_throttle_released_before_it_is_judged_is_no_longer_followed():
    kit = Kit()
    qid = kit.throttle()
    kit.run(5, 2 * R)
    kit.engine.release(qid, "sre", "done")
    kit.run(40, 2 * R)
    assert kit.record(qid).effect is None and kit.engine._following == set()


# ------------------------------------------------------------------------------- the rule, pure

PLAN = {"kind": "quota", "target": {"principal": PRINCIPAL, "user": "tenant-a", "client_id": CLIENT},
        "params": {"scope": "client", "producer_byte_rate": Q, "cluster_rate": R, "broker_share": 0.6}}


def test_the_silence_of_the_first_throttle_does_not_pass_for_success():
    rule = EffectRule()
    # the first throttle silences the client while the excess is paid back; then it runs at 2 R again
    pts = [RatePoint(100.0 + i, (0.0 if i < 15 else 2 * R), {}) for i in range(40)]
    e = judge(PLAN, pts, start=100.0, now=140.0, rule=rule)
    assert e is not None and e.result == "not_effective" and e.measured == pytest.approx(2 * R)
    # and a client still high while the windows settle, at R afterwards, is effective
    pts = [RatePoint(100.0 + i, (3 * R if i < 20 else R), {}) for i in range(40)]
    assert judge(PLAN, pts, start=100.0, now=140.0, rule=rule).result == "effective"


def test_too_few_samples_in_the_judged_window_are_unmeasured_not_a_verdict():
    rule = EffectRule()
    pts = [RatePoint(100.0 + i, 3 * R, {}) for i in range(22)] + [RatePoint(130.0, 3 * R, {})]
    assert judge(PLAN, pts, start=100.0, now=140.0, rule=rule).result == "unmeasured"


def test_a_plan_on_several_clients_is_skipped():
    plan = {**PLAN, "target": {"principal": PRINCIPAL, "user": "tenant-a"},
            "params": {"scope": "user", "producer_byte_rate": R}}
    assert judge(plan, [], start=0.0, now=0.0, rule=EffectRule()).result == "skipped"


def test_followed_rates_keep_only_series_someone_reads():
    clock = FakeClock(100.0)
    rates = FollowedRates(follow_s=30.0, clock=clock)
    rates.observe(PRINCIPAL, CLIENT, {"produce_byte_rate": 1.0}, 100.0, lambda m: {})
    assert rates.read(PRINCIPAL, CLIENT, "produce_byte_rate") == []     # not followed when it came
    rates.observe(PRINCIPAL, CLIENT, {"produce_byte_rate": 2.0, "fetch_byte_rate": 9.0}, 101.0,
                  lambda m: {"1": 2.0})
    assert [p.total for p in rates.read(PRINCIPAL, CLIENT, "produce_byte_rate")] == [2.0]
    assert rates._points.keys() == {(PRINCIPAL, CLIENT, "produce_byte_rate")}
    clock.advance(31.0)                    # nobody read it for follow_s: no longer followed
    rates.observe(PRINCIPAL, CLIENT, {"produce_byte_rate": 3.0}, 131.0, lambda m: {})
    assert rates._points == {} and rates._read_at == {}
