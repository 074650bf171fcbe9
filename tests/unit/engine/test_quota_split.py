"""Quota translation: a cluster-wide rate R as the one quota value every broker enforces.

Kafka enforces a client quota on each broker separately, with the same value everywhere; the
rule (``per_broker_quota``) is q = R x the largest share of the client's rate that one broker
carried. These tests pin the rule, the model behind it, and its wiring into the plans.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardian.actuators.quota import QuotaActuator, QuotaEffect
from guardian.model.detection import Detection, Severity, Signature
from guardian.policy.decide import intents_for, per_broker_quota
from guardian.errors import PermanentError
from guardian.policy.config import parse_policy

POLICY = """\
policies:
  - name: tenants
    match: {principals: ["User:*"]}
    ladder:
      - {action: throttle, multiple_of_baseline: 2, floor: 1000, evidence_s: 0}
"""


def throttled_total(shares: list[float], q: float, offered: float) -> float:
    """What a client offering ``offered`` bytes/s with a fixed spread ``shares`` does under the per-broker
    quota ``q``: held back as a whole by the first broker that reaches q (its buffer for that broker
    fills), so its rate is min(offered, min_i q / s_i)."""
    return min([offered] + [q / s for s in shares if s > 0])


def test_an_even_client_gets_r_over_n_on_each_broker():
    split = per_broker_quota(900.0, {"b1": 100.0, "b2": 100.0, "b3": 100.0})
    assert split.per_broker == pytest.approx(300.0) and split.brokers == 3 and split.translated
    assert split.ceiling == pytest.approx(900.0)   # even: the ceiling is R itself


def test_a_skewed_client_gets_r_times_its_busiest_share():
    split = per_broker_quota(1000.0, {"b1": 700.0, "b2": 200.0, "b3": 100.0})
    assert split.share == pytest.approx(0.7) and split.per_broker == pytest.approx(700.0)
    # the model: its busiest broker binds and the cluster-wide rate falls to R, not to R/N
    assert throttled_total([0.7, 0.2, 0.1], split.per_broker, offered=5000.0) == pytest.approx(1000.0)
    # the price: if its load moved until every broker it uses were at q, it could reach 2.1 R
    assert split.ceiling == pytest.approx(2100.0)


def test_one_broker_or_no_distribution_leaves_r_unchanged():
    for brokers in (None, {}, {"b1": 5000.0}, {"b1": 5000.0, "b2": 0.0}, {"b1": 0.0, "b2": 0.0},
                    {"b1": float("nan"), "b2": 10.0}):
        split = per_broker_quota(1000.0, brokers)
        assert split.per_broker == 1000.0 and not split.translated, brokers


@given(st.lists(st.floats(min_value=1.0, max_value=1e9), min_size=1, max_size=12),
       st.floats(min_value=1.0, max_value=1e9))
def test_the_cluster_wide_rate_falls_to_r_for_any_spread_that_holds(parts, rate):
    brokers = {f"b{i}": v for i, v in enumerate(parts)}
    split = per_broker_quota(rate, brokers)
    total = math.fsum(parts)
    shares = [v / total for v in parts]
    # between R/N (even) and R (one broker): never looser than R, never harsher than even
    assert rate / len(parts) * (1 - 1e-9) <= split.per_broker <= rate * (1 + 1e-9)
    assert throttled_total(shares, split.per_broker, offered=rate * 10) == pytest.approx(rate)


# ------------------------------------------------------------------ wiring into the plans

def detection(brokers: dict[str, float] | None, metric: str = "produce_byte_rate") -> Detection:
    extra = {"brokers": brokers} if brokers is not None else {}
    return Detection(id="d1", ts=100.0, signature=Signature.RUNAWAY_PRODUCER, severity=Severity.HIGH,
                     confidence=0.9, workload={"principal": "User:tenant-a", "client_id": "loader"},
                     metric=metric, baseline=10_000.0, observed=500_000.0, ratio=50.0, duration_s=20.0,
                     extra=extra)


@pytest.fixture
def rung():
    return parse_policy(POLICY, "test.yaml").policies[0].ladder[0]


def test_a_throttle_on_three_brokers_sets_the_translated_value_and_keeps_r(rung):
    (intent,) = intents_for(rung, detection({"b1": 300_000.0, "b2": 100_000.0, "b3": 100_000.0}))
    # R = 2 x 10 kB/s baseline; the busiest broker carried 60 %
    assert intent["params"] == {"producer_byte_rate": 12_000.0, "cluster_rate": 20_000.0, "broker_share": 0.6}
    plan = QuotaActuator(admin=None).plan(intent["target"], intent["params"], "q1")
    assert plan.params == {"scope": "client", "producer_byte_rate": 12_000.0, "cluster_rate": 20_000.0,
                           "broker_share": 0.6}


def test_a_throttle_on_one_broker_plans_exactly_as_before(rung):
    for d in (detection(None), detection({"b1": 500_000.0})):
        (intent,) = intents_for(rung, d)
        assert intent["params"] == {"producer_byte_rate": 20_000.0}


def test_byte_quotas_stay_whole_bytes_and_at_least_one(rung):
    (intent,) = intents_for(rung, detection({"b1": 1.0, "b2": 2.0, "b3": 4.0}))
    assert intent["params"]["producer_byte_rate"] == float(int(20_000.0 * 4 / 7))


def test_partition_mutations_are_never_split():
    d = Detection(id="d2", ts=1.0, signature=Signature.PARTITION_STORM, severity=Severity.HIGH, confidence=0.9,
                  workload={"principal": "User:tenant-a"}, metric="partition_creation_rate", baseline=1.0,
                  observed=40.0, ratio=40.0, duration_s=20.0, extra={"brokers": {"b1": 20.0, "b2": 20.0}})
    rung = parse_policy(POLICY.replace("multiple_of_baseline: 2, floor: 1000",
                                       "absolute: 2, quota: controller_mutation_rate"), "t.yaml").policies[0].ladder[0]
    (intent,) = intents_for(rung, d)
    assert intent["params"] == {"controller_mutation_rate": 2.0}


def test_an_absolute_rate_below_one_is_kept_and_a_computed_one_is_not():
    d = Detection(id="d3", ts=1.0, signature=Signature.PARTITION_STORM, severity=Severity.HIGH, confidence=0.9,
                  workload={"principal": "User:tenant-a"}, metric="partition_creation_rate", baseline=0.01,
                  observed=40.0, ratio=4000.0, duration_s=20.0)
    half = parse_policy(POLICY.replace("multiple_of_baseline: 2, floor: 1000",
                                       "absolute: 0.5, quota: controller_mutation_rate"), "t.yaml").policies[0].ladder[0]
    assert intents_for(half, d)[0]["params"] == {"controller_mutation_rate": 0.5}
    tiny = parse_policy(POLICY.replace("multiple_of_baseline: 2, floor: 1000",
                                       "multiple_of_baseline: 2, quota: controller_mutation_rate"),
                        "t.yaml").policies[0].ladder[0]
    assert intents_for(tiny, d)[0]["params"] == {"controller_mutation_rate": 1.0}   # 2 x 0.01, raised to 1/s


# ------------------------------------------------------------------ the actuator's side

Q = QuotaActuator(admin=None)
TARGET = {"principal": "User:tenant-a", "client_id": "loader"}


@pytest.mark.parametrize("params, match", [
    ({"producer_byte_rate": 10, "cluster_rate": 30}, "together"),
    ({"producer_byte_rate": 10, "consumer_byte_rate": 10, "cluster_rate": 30, "broker_share": 0.4}, "exactly one"),
    ({"producer_byte_rate": 10, "cluster_rate": 30, "broker_share": 1.5}, "share"),
    ({"producer_byte_rate": 10, "cluster_rate": -1, "broker_share": 0.5}, "positive"),
])
def test_a_translated_plan_is_checked(params, match):
    with pytest.raises(PermanentError, match=match):
        Q.plan(TARGET, params)


def test_measure_sums_the_client_over_brokers_against_the_cluster_wide_rate():
    seen = []

    def rates(user, client_id, key):
        seen.append((user, client_id, key))
        return {"b1": 610.0, "b2": 200.0, "b3": 190.0}

    act = QuotaActuator(admin=None, rates=rates)
    plan = act.plan(TARGET, {"producer_byte_rate": 600, "cluster_rate": 1000, "broker_share": 0.6})
    effect = act.measure(plan)
    assert seen == [("tenant-a", "loader", "producer_byte_rate")]
    assert effect == QuotaEffect("producer_byte_rate", 1000.0, 600.0, {"b1": 610.0, "b2": 200.0, "b3": 190.0})
    assert effect.total == pytest.approx(1000.0) and effect.near(0.01)
    # a one-broker plan means its own value cluster-wide
    assert act.measure(act.plan(TARGET, {"producer_byte_rate": 1000})).target == 1000.0


def test_measure_needs_a_reader_and_one_client():
    with pytest.raises(PermanentError, match="rates reader"):
        Q.measure(Q.plan(TARGET, {"producer_byte_rate": 1}))
    act = QuotaActuator(admin=None, rates=lambda *a: {})
    with pytest.raises(PermanentError, match="one rate key"):
        act.measure(act.plan(TARGET, {"producer_byte_rate": 1, "scope": "default_client"}))
