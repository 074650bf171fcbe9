"""The pure policy engine: guardrails in order, escalation, probation, dry-run, planning."""

from __future__ import annotations

import textwrap

import pytest

from guardian.model.detection import Detection, Severity, Signature
from guardian.policy.decide import View, decide, intents_for
from guardian.model.quarantine import Outcome, QState, Quarantine, workload_key
from guardian.policy.pressure import BrokerPressure, ClientLoad, Pressure
from guardian.policy.config import parse_policy

POLICY = textwrap.dedent("""\
    global:
      max_concurrent_quarantines: 2
      max_throttled_traffic_share: 0.5
      protected: {allow_list: ["User:payments"]}
      probation: {duration_s: 600, severity_relief: 1, evidence_factor: 0.5, resume_rung: true}
      # these tests are about the other guardrails: the broker below is always hurting (never stale)
      harm: {stale_after_s: 1.0e12}
    policies:
      - name: shadow-b
        match: {principals: ["User:tenant-b"]}
        dry_run: true
        ladder: [{action: throttle, absolute: 1000, evidence_s: 0}]
      - name: tenants
        match: {principals: ["User:*"]}
        min_severity: high
        ladder:
          - {action: throttle, multiple_of_baseline: 2, floor: 1000, evidence_s: 10, cooldown_s: 60, ttl_s: 300}
          - {action: deny_acl, evidence_s: 30, cooldown_s: 120, requires_approval: true}
          - {action: isolate_pod, evidence_s: 60, cooldown_s: 300, requires_approval: false}
    """)


# Produce p99 40x its normal (latency pressure, so throttles keep their multiple_of_baseline) and
# the tenants' loaders hold nearly all the broker's thread time: every runaway here hurts.
_LOADS = {("User:tenant-a", "loader"): ClientLoad(request_time=45.0), ("User:tenant-b", "loader"): ClientLoad(request_time=45.0),
          ("User:payments", "loader"): ClientLoad(request_time=45.0)}
HURT = Pressure(ts=0.0, brokers={"b1": BrokerPressure(
    "b1", 0.0, {"request_total_time_p99:Produce": 400.0}, {"request_total_time_p99:Produce": 10.0}, _LOADS,
    total=ClientLoad(request_time=100.0))})


@pytest.fixture
def ps():
    return parse_policy(POLICY, "test.yaml")


def det(principal="User:tenant-a", client_id="loader", severity=Severity.HIGH, duration=20.0,
        metric="produce_byte_rate", baseline=10_000.0, observed=500_000.0, signature=Signature.RUNAWAY_PRODUCER,
        id="d1", **wl):
    workload = {"principal": principal, "client_id": client_id, **wl}
    workload = {k: v for k, v in workload.items() if v is not None}
    return Detection(id=id, ts=100.0, signature=signature, severity=severity, confidence=0.9, workload=workload,
                     metric=metric, baseline=baseline, observed=observed, ratio=observed / max(baseline, 1),
                     duration_s=duration)


def quarantine(d: Detection, rung=0, rung_at=0.0, state=QState.ACTIVE, dry=False, pending=None):
    return Quarantine(id="q-1", workload=d.workload, workload_key=workload_key(d.workload), policy="tenants",
                      state=state, rung=rung, dry_run=dry, created_at=0.0, updated_at=0.0, rung_at=rung_at,
                      expires_at=1e9, pending_rung=pending)


def test_new_runaway_producer_is_throttled_to_a_multiple_of_its_baseline(ps):
    d = decide(det(), ps, View(pressure=HURT), now=100.0)
    assert d.outcome is Outcome.QUARANTINED and d.acts and d.rung == 0
    assert d.intents == [{"kind": "quota", "target": {"principal": "User:tenant-a", "client_id": "loader"},
                          "params": {"producer_byte_rate": 20_000.0}}]
    assert d.quarantine_id and d.quarantine_id == decide(det(), ps, View(pressure=HURT), now=5.0).quarantine_id


def test_floor_and_consumer_quota_from_the_metric(ps):
    d = decide(det(metric="fetch_byte_rate", baseline=100.0, signature=Signature.RUNAWAY_CONSUMER), ps, View(pressure=HURT), 1.0)
    assert d.intents[0]["params"] == {"consumer_byte_rate": 1000.0}


@pytest.mark.parametrize("wl", [{"principal": "User:admin"}, {"principal": "User:guardian"},
                                {"principal": "User:payments"}, {"client_id": "guardian-audit"},
                                {"principal": "User:mirrormaker"}])
def test_protected_principals_are_never_touched_even_when_a_policy_matches(ps, wl):
    d = decide(det(**{"principal": wl.get("principal", "User:tenant-a"),
                      "client_id": wl.get("client_id", "x")}), ps, View(pressure=HURT), 1.0)
    assert ps.first_match(d.workload) is not None
    assert d.outcome is Outcome.PROTECTED and not d.intents


def test_severity_below_the_bar_is_ignored_but_probation_lowers_it(ps):
    assert decide(det(severity=Severity.MEDIUM), ps, View(pressure=HURT), 1.0).outcome is Outcome.NOT_REACTING
    prob = {"until": 50.0, "rung": 0, "policy": "tenants"}
    assert decide(det(severity=Severity.MEDIUM), ps, View(pressure=HURT, probation=prob), 1.0).outcome is Outcome.QUARANTINED
    # Probation ran out: the normal bar again.
    assert decide(det(severity=Severity.MEDIUM), ps, View(pressure=HURT, probation=prob), 60.0).outcome is Outcome.NOT_REACTING


def test_evidence_duration_and_probation_evidence_factor(ps):
    assert decide(det(duration=5.0), ps, View(pressure=HURT), 1.0).outcome is Outcome.INSUFFICIENT_EVIDENCE
    prob = {"until": 50.0, "rung": 0, "policy": "tenants"}
    assert decide(det(duration=5.0), ps, View(pressure=HURT, probation=prob), 1.0).outcome is Outcome.QUARANTINED


def test_probation_resumes_at_the_released_rung(ps):
    prob = {"until": 500.0, "rung": 1, "policy": "tenants"}
    d = decide(det(duration=20.0, topic="tenant-a.orders"), ps, View(pressure=HURT, probation=prob), 1.0)
    assert d.rung == 1 and d.outcome is Outcome.AWAITING_APPROVAL
    assert d.intents[0]["kind"] == "acl" and d.intents[0]["params"] == {"topics": ["tenant-a.orders"], "side": "produce"}


def test_pause_stops_new_actions(ps):
    d = decide(det(), ps, View(pressure=HURT, paused=True), 1.0)
    assert d.outcome is Outcome.PAUSED and not d.acts


def test_concurrency_cap(ps):
    assert decide(det(), ps, View(pressure=HURT, open_quarantines=2), 1.0).outcome is Outcome.CAPPED
    assert decide(det(), ps, View(pressure=HURT, open_quarantines=1), 1.0).outcome is Outcome.QUARANTINED


def test_traffic_share_cap(ps):
    # normally 500 kB/s on top of 200 kB/s already throttled, in a cluster carrying 1 MB/s: 70 % > 50 %
    d = decide(det(baseline=500_000.0, observed=5_000_000.0), ps,
               View(pressure=HURT, throttled_traffic=200_000.0, cluster_traffic=1_000_000.0), 1.0)
    assert d.outcome is Outcome.CAPPED and "70% of the cluster's traffic" in d.reason
    d = decide(det(baseline=200_000.0, observed=5_000_000.0), ps,
               View(pressure=HURT, throttled_traffic=200_000.0, cluster_traffic=1_000_000.0), 1.0)
    assert d.outcome is Outcome.QUARANTINED


def test_the_share_cap_counts_a_runaways_normal_traffic_not_its_excess(ps):
    # A 40x runaway is 80 % of the cluster now, but its normal 50 kB/s is 2 % of it
    d = decide(det(baseline=50_000.0, observed=2_000_000.0), ps, View(pressure=HURT, cluster_traffic=2_450_000.0), 1.0)
    assert d.outcome is Outcome.QUARANTINED
    # a cluster rate that lags the runaway's rise never reads more than 100 %
    d = decide(det(baseline=400_000.0, observed=2_000_000.0), ps, View(pressure=HURT, cluster_traffic=300_000.0), 1.0)
    assert d.outcome is Outcome.CAPPED and "100% of the cluster's traffic" in d.reason


def test_unknown_traffic_holds_when_configured():
    ps = parse_policy(POLICY.replace("max_throttled_traffic_share: 0.5",
                                     "max_throttled_traffic_share: 0.5\n  on_unknown_traffic: hold"), "t.yaml")
    assert decide(det(), ps, View(pressure=HURT), 1.0).outcome is Outcome.CAPPED
    assert decide(det(), ps, View(pressure=HURT, cluster_traffic=1e9), 1.0).outcome is Outcome.QUARANTINED


def test_dry_run_per_policy_and_global(ps):
    d = decide(det(principal="User:tenant-b"), ps, View(pressure=HURT, paused=True, open_quarantines=99), 1.0)
    assert d.outcome is Outcome.SHADOW and d.dry_run and not d.acts and d.intents
    glob = parse_policy(POLICY.replace("global:\n", "global:\n  dry_run: true\n"), "t.yaml")
    d = decide(det(), glob, View(pressure=HURT), 1.0)
    assert d.outcome is Outcome.SHADOW and d.dry_run


def test_escalation_waits_for_cooldown_then_needs_evidence_then_approval(ps):
    d0 = det(duration=20.0, topic="tenant-a.orders")
    q = quarantine(d0, rung=0, rung_at=100.0)
    assert decide(d0, ps, View(pressure=HURT, existing=q), 130.0).outcome is Outcome.COOLING_DOWN
    assert decide(det(duration=20.0, topic="tenant-a.orders"), ps, View(pressure=HURT, existing=q), 250.0).outcome \
        is Outcome.INSUFFICIENT_EVIDENCE
    d = decide(det(duration=40.0, topic="tenant-a.orders"), ps, View(pressure=HURT, existing=q), 250.0)
    assert d.outcome is Outcome.ESCALATION_AWAITING_APPROVAL and d.rung == 1 and d.quarantine_id == "q-1"
    q.pending_rung = 1
    assert decide(det(duration=40.0), ps, View(pressure=HURT, existing=q), 300.0).outcome is Outcome.UNDER_REVIEW


def test_escalation_without_approval_and_top_rung(ps):
    d0 = det(duration=100.0, pod="loader-7f", namespace="tenant-a")
    q = quarantine(d0, rung=1, rung_at=0.0)
    d = decide(d0, ps, View(pressure=HURT, existing=q), 1000.0)
    assert d.outcome is Outcome.ESCALATED and d.acts and d.intents[0]["kind"] == "pod"
    assert d.intents[0]["target"]["pod"] == "loader-7f"
    q.rung = 2
    assert decide(d0, ps, View(pressure=HURT, existing=q), 5000.0).outcome is Outcome.TOP_RUNG


def test_no_escalation_while_appealed_or_paused(ps):
    d0 = det(duration=100.0, topic="tenant-a.x")
    assert decide(d0, ps, View(pressure=HURT, existing=quarantine(d0, state=QState.APPEALED)), 1e6).outcome is Outcome.UNDER_REVIEW
    q = quarantine(d0, rung=1)
    d0p = det(duration=100.0, pod="p", namespace="n")
    assert decide(d0p, ps, View(pressure=HURT, existing=q, paused=True), 1e6).outcome is Outcome.PAUSED


def test_unplannable_rungs_say_what_is_missing(ps):
    d0 = det(duration=100.0)  # no topic, no pod
    q = quarantine(d0, rung=0)
    d = decide(d0, ps, View(pressure=HURT, existing=q), 1e6)
    assert d.outcome is Outcome.UNPLANNABLE and "topic" in d.reason
    d = decide(det(metric="retry_rate", signature=Signature.RETRY_STORM), ps, View(pressure=HURT), 1.0)
    assert d.outcome is Outcome.UNPLANNABLE and "baseline" in d.reason


def test_baseline_from_extra_when_the_metric_is_not_a_quota(ps):
    detection = det(metric="retry_rate", signature=Signature.RETRY_STORM)
    detection.extra["baselines"] = {"producer_byte_rate": 5000.0}
    assert intents_for(ps.policies[1].ladder[0], detection)[0]["params"] == {"producer_byte_rate": 10_000.0}


# ------------------------------------------------------------------ storms (the shipped default policy)

@pytest.fixture
def default_ps():
    from guardian.policy.config import default_policy_path, load_policy

    return load_policy(default_policy_path())


def test_a_partition_storm_caps_the_principals_partition_mutations(default_ps):
    d = decide(det(client_id=None, metric="partition_creation_rate", baseline=0.0, observed=40.0,
                   signature=Signature.PARTITION_STORM), default_ps, View(pressure=HURT), 100.0)
    assert d.outcome is Outcome.QUARANTINED and d.policy == "tenant-partition-storm"
    assert d.intents == [{"kind": "quota", "target": {"principal": "User:tenant-a"},
                          "params": {"controller_mutation_rate": 0.5}}]


def test_a_rebalance_storm_throttles_each_member_client_and_needs_them(default_ps):
    storm = det(client_id=None, group="tenant-a.billing", metric="rebalance_rate", baseline=0.0, observed=0.5,
                signature=Signature.REBALANCE_STORM)
    d = decide(storm, default_ps, View(pressure=HURT), 100.0)
    assert d.outcome is Outcome.UNPLANNABLE and "members' client-ids" in d.reason and not d.intents
    storm.extra["client_ids"] = ["billing", "billing-2", "billing"]
    d = decide(storm, default_ps, View(pressure=HURT), 100.0)
    assert d.outcome is Outcome.QUARANTINED and d.policy == "group-rebalance-storm"
    assert [(i["target"], i["params"]) for i in d.intents] == [
        ({"principal": "User:tenant-a", "client_id": c}, {"request_percentage": 5.0}) for c in ("billing", "billing-2")]


def test_a_runaway_producer_still_gets_the_byte_rate_ladder_of_the_default_policy(default_ps):
    d = decide(det(), default_ps, View(pressure=HURT), 100.0)
    assert d.policy == "tenant-runaway" and d.intents[0]["params"] == {"producer_byte_rate": 65536.0}
