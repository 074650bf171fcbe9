"""The harm test: a runaway is throttled automatically only when it hurts; otherwise it is watched."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from guardian.model.detection import Detection, Severity, Signature
from guardian.policy.decide import View, decide
from guardian.policy.harm import assess, breaches, proportionate_scale
from guardian.model.quarantine import Outcome, QState, Quarantine, workload_key
from guardian.policy.pressure import BrokerPressure, ClientLoad, ClusterPressure, Pressure
from guardian.errors import ConfigError
from guardian.policy.config import HarmTest, parse_policy
from guardian.model.samples import Metric, Sample, Workload

POLICY = textwrap.dedent("""\
    global:
      max_concurrent_quarantines: 3
      max_throttled_traffic_share: 1.0
    policies:
      - name: storms
        signatures: [partition_storm]
        ladder: [{action: throttle, quota: controller_mutation_rate, absolute: 2, evidence_s: 5}]
      - name: tenants
        ladder:
          - {action: throttle, multiple_of_baseline: 2, floor: 1000, evidence_s: 4, ttl_s: 300}
          - {action: deny_acl, evidence_s: 30, requires_approval: true}
    """)
NOW = 1000.0
ME = ("User:tenant-a", "loader")


@pytest.fixture
def ps():
    return parse_policy(POLICY, "test.yaml")


def det(observed=500_000.0, baseline=50_000.0, duration=6.0, signature=Signature.RUNAWAY_PRODUCER,
        metric="produce_byte_rate", workload=None, id="d1"):
    return Detection(id=id, ts=NOW, signature=signature, severity=Severity.CRITICAL, confidence=0.9,
                     workload=workload or {"principal": ME[0], "client_id": ME[1]}, metric=metric,
                     baseline=baseline, observed=observed, ratio=observed / baseline, duration_s=duration)


def broker(idle=0.8, mine=10.0, others=10.0, p99=5.0, normal=5.0, ts=NOW, urp=0.0):
    signals = {"request_handler_idle": idle, "network_processor_idle": 0.9,
               "request_total_time_p99:Produce": p99, "under_replicated_partitions": urp}
    clients = {ME: ClientLoad(request_time=mine, bytes_in=mine * 1e4),
               ("User:tenant-b", "app"): ClientLoad(request_time=others, bytes_in=others * 1e4)}
    total = ClientLoad(request_time=mine + others, bytes_in=(mine + others) * 1e4)
    return Pressure(ts=ts, brokers={"b1": BrokerPressure("b1", ts, signals, {"request_total_time_p99:Produce": normal},
                                                         clients, total)})


def test_a_runaway_on_a_healthy_cluster_is_watched_with_what_it_would_do(ps):
    d = decide(det(), ps, View(pressure=broker(idle=0.8, mine=60, others=20)), NOW)
    assert d.outcome is Outcome.WATCH and not d.acts
    assert d.quarantine_id and d.intents == [{"kind": "quota", "target": {"principal": ME[0], "client_id": ME[1]},
                                              "params": {"producer_byte_rate": 100_000.0}}]
    assert d.harm["harmful"] is False and "no harm seen" in d.harm["line"] and "80% idle" in d.harm["line"]


def test_pressure_that_another_workload_explains_is_not_this_ones_harm(ps):
    d = decide(det(), ps, View(pressure=broker(idle=0.05, mine=5, others=95)), NOW)
    assert d.outcome is Outcome.WATCH
    assert "only 5% of its load" in d.harm["line"] and d.harm["broker"] == "b1"


def test_pressure_explained_by_the_runaway_throttles_it_proportionately(ps):
    # five times its normal, on a broker that was 27 % busy before (0.95 - 0.855 x 0.8): the others' wait 1.2x
    # that of then is 30.3 % busy, so the idle target (30 % busy) is the tighter
    d = decide(det(baseline=100_000.0), ps, View(pressure=broker(idle=0.05, mine=90, others=10)), NOW)
    assert d.outcome is Outcome.QUARANTINED and d.acts
    assert d.harm["reason"] == "pressure" and d.harm["share"] == 0.9
    # busy 0.95, its part 0.9 x 0.95 = 0.855; back to 70 % idle sheds 0.65: it keeps (0.855 - 0.65) / 0.855
    keep = (0.855 - 0.65) / 0.855
    assert d.intents[0]["params"]["producer_byte_rate"] == float(int(500_000 * keep))
    assert "request handlers 5% idle" in d.harm["line"] and "90% of its load" in d.harm["line"]
    # 10x its normal: the broker was 18 % busy before (0.95 - 0.855 x 0.9); the others' wait 1.2x that of
    # then is 20.9 % busy, tighter than 70 % idle, so it keeps (0.855 - (0.95 - 0.209)) / 0.855 = 13.3 %
    tenfold = decide(det(), ps, View(pressure=broker(idle=0.05, mine=90, others=10)), NOW)
    assert tenfold.intents[0]["params"]["producer_byte_rate"] == pytest.approx(500_000 * 0.1333, rel=1e-3)


def test_a_proportionate_throttle_never_goes_below_the_baseline(ps):
    # idle 0: busy 1, its part 0.3, the gap to 70 % idle is 0.7 > 0.3: it would keep nothing
    d = decide(det(), ps, View(pressure=broker(idle=0.0, mine=30, others=70)), NOW)
    assert d.outcome is Outcome.QUARANTINED
    assert d.intents[0]["params"]["producer_byte_rate"] == 50_000.0


def test_a_pressure_sized_throttle_also_caps_the_workloads_thread_time(ps):
    # pressure is thread time: the runaway keeps the same share of its request time as of its bytes
    d = decide(det(baseline=100_000.0), ps, View(pressure=broker(idle=0.05, mine=90, others=10)), NOW)
    keep = (0.855 - 0.65) / 0.855
    assert [i["params"] for i in d.intents] == [{"producer_byte_rate": float(int(500_000 * keep))},
                                                {"request_percentage": round(90 * keep, 3)}]
    assert d.intents[0]["target"] == d.intents[1]["target"] == {"principal": ME[0], "client_id": ME[1]}


def test_the_thread_time_cap_never_goes_below_what_its_baseline_bytes_need(ps):
    # it keeps nothing by idle; its baseline is 1/10 of its bytes now, so 1/10 of its thread time stays
    d = decide(det(), ps, View(pressure=broker(idle=0.0, mine=30, others=70)), NOW)
    assert [i["params"] for i in d.intents] == [{"producer_byte_rate": 50_000.0}, {"request_percentage": 3.0}]


def test_no_thread_time_cap_without_pressure_sizing(ps):
    # with the idle target alone, latency-only pressure sizes nothing (no idle headroom): the rung's byte throttle
    idle_only = parse_policy(POLICY.replace("global:\n", "global:\n  harm: {pressure: {wait_growth: null}}\n"), "t.yaml")
    hurt = decide(det(), idle_only, View(pressure=broker(p99=120.0, normal=10.0, mine=80)), NOW)
    assert [i["params"] for i in hurt.intents] == [{"producer_byte_rate": 100_000.0}]
    # a healthy broker: the watch record says what it would do, one byte throttle
    calm = decide(det(), ps, View(pressure=broker(idle=0.8, mine=60, others=20)), NOW)
    assert len(calm.intents) == 1

def test_latency_pressure_is_relative_to_its_normal_and_above_the_floor(ps):
    hurt = decide(det(), ps, View(pressure=broker(p99=120.0, normal=10.0, mine=80)), NOW)
    assert hurt.outcome is Outcome.QUARANTINED and "Produce p99 total time 120 ms (normal 10 ms)" in hurt.harm["line"]
    # latency pressure with 80 % idle: no idle to give back, but the others' wait was shorter before it ran
    # away (4 % busy: 0.2 - 0.178 x 0.9); back to 1.2x that wait (4.8 % busy) it keeps 1/7 of its 500 kB/s
    assert hurt.intents[0]["params"]["producer_byte_rate"] == 71_428.0
    assert decide(det(), ps, View(pressure=broker(p99=40.0, normal=5.0, mine=80)), NOW).outcome is Outcome.WATCH  # < 50 ms
    assert decide(det(), ps, View(pressure=broker(p99=200.0, normal=100.0, mine=80)), NOW).outcome is Outcome.WATCH  # 2x


def test_fetch_total_time_set_by_long_polls_is_not_pressure(ps):
    p = broker(mine=80)
    b = p.brokers["b1"]
    signals = {**b.signals, "request_total_time_p99:Fetch": 1600.0}
    normals = {**b.normals, "request_total_time_p99:Fetch": 500.0}   # consumers long-polling quiet topics
    quiet_topic = Pressure(NOW, {"b1": BrokerPressure("b1", NOW, signals, normals, b.clients, b.total)})
    assert decide(det(), ps, View(pressure=quiet_topic), NOW).outcome is Outcome.WATCH
    fast = Pressure(NOW, {"b1": BrokerPressure("b1", NOW, {**signals, "request_total_time_p99:Fetch": 800.0},
                                               {**normals, "request_total_time_p99:Fetch": 50.0}, b.clients, b.total)})
    d = decide(det(), ps, View(pressure=fast), NOW)   # fetches that normally return in 50 ms now take 800
    assert d.outcome is Outcome.QUARANTINED and "Fetch p99 total time 800 ms" in d.harm["line"]
    queued = Pressure(NOW, {"b1": BrokerPressure("b1", NOW, {**signals, "request_queue_time_p99:Fetch": 400.0},
                                                 {**normals, "request_queue_time_p99:Fetch": 2.0}, b.clients, b.total)})
    d = decide(det(), ps, View(pressure=queued), NOW)
    assert d.outcome is Outcome.QUARANTINED and "Fetch p99 queue time 400 ms" in d.harm["line"]


def test_under_replicated_partitions_are_pressure(ps):
    d = decide(det(), ps, View(pressure=broker(urp=3, mine=80)), NOW)
    assert d.outcome is Outcome.QUARANTINED and "3 under-replicated partitions" in d.harm["line"]


def test_stale_or_missing_pressure_watches_unless_told_to_act(ps):
    stale = broker(idle=0.0, mine=90, ts=NOW - 60)
    for view in (View(), View(pressure=stale), View(pressure=Pressure(ts=NOW, brokers={}))):
        d = decide(det(), ps, view, NOW)
        assert d.outcome is Outcome.WATCH and "no fresh broker pressure signals" in d.harm["line"]
    acting = parse_policy(POLICY.replace("global:\n", "global:\n  harm: {on_unknown_pressure: act}\n"), "t.yaml")
    assert decide(det(), acting, View(), NOW).outcome is Outcome.QUARANTINED


def test_an_absolute_budget_is_harm_on_its_own(ps):
    storm = det(observed=40.0, baseline=0.5, metric="partition_creation_rate", signature=Signature.PARTITION_STORM,
                workload={"principal": "User:tenant-a"})
    d = decide(storm, ps, View(pressure=broker()), NOW)
    assert d.outcome is Outcome.QUARANTINED and d.harm["reason"] == "budget"
    assert d.intents[0]["params"] == {"controller_mutation_rate": 2.0}
    small = det(observed=8.0, baseline=0.1, metric="partition_creation_rate", signature=Signature.PARTITION_STORM,
                workload={"principal": "User:tenant-a"})
    assert decide(small, ps, View(pressure=broker()), NOW).outcome is Outcome.WATCH   # 8/s is under the 10/s budget


def _creation(metric, observed, duration, **rates):
    return dataclasses.replace(det(observed=observed, baseline=0.05, duration=duration, metric=metric,
                                   signature=Signature.PARTITION_STORM, workload={"principal": "User:tenant-a"}),
                               extra={"rates": rates} if rates else {})


def test_a_budget_with_a_burst_lets_a_deploy_create_at_once_and_throttles_what_goes_on(ps):
    # a deploy of 30 three-partition topics, seen over two polls: 7.5 topics/s for 4 s
    deploy = _creation("topic_creation_rate", 7.5, 4.0, partition_creation_rate=22.5)
    assert assess(deploy, broker(), HarmTest(), NOW).reason == "none"
    # the same rate 2 s longer: 39 topics over the 1/s budget, more than its burst of 30
    longer = _creation("topic_creation_rate", 7.5, 6.0, partition_creation_rate=22.5)
    d = decide(longer, ps, View(pressure=broker()), NOW)
    assert d.outcome is Outcome.QUARANTINED and d.harm["reason"] == "budget"
    assert d.harm["line"].startswith("topic_creation_rate 7.5 on average for 6s breaks the policy budget of 1 by 39")
    # a storm of big topics seen first on its topic rate breaks the partition budget it carries
    storm = _creation("topic_creation_rate", 2.0, 6.0, partition_creation_rate=200.0)
    d = decide(storm, ps, View(pressure=broker()), NOW)
    assert d.outcome is Outcome.QUARANTINED
    assert d.harm["line"].startswith("partition_creation_rate 200 on average for 6s")
    # with no burst, the budget is broken by the value alone (rebalance_rate: a rate over 20 s already)
    group = dataclasses.replace(det(observed=0.3, baseline=0.01, duration=2.0, metric="rebalance_rate",
                                    signature=Signature.REBALANCE_STORM, workload={"principal": "User:tenant-a",
                                                                                   "group": "g"}))
    assert assess(group, broker(), HarmTest(), NOW).reason == "budget"
    assert assess(group, broker(), HarmTest(bursts={"rebalance_rate": 5.0}), NOW).reason == "none"


def test_bursts_name_budgeted_metrics_and_are_not_negative():
    with pytest.raises(ValueError, match="bursts name metrics without a budget: produce_byte_rate"):
        HarmTest(bursts={"produce_byte_rate": 1.0})
    with pytest.raises(ValueError, match="bursts must be zero or more: topic_creation_rate"):
        HarmTest(bursts={"topic_creation_rate": -1.0})


def test_an_extreme_ratio_acts_once_it_lasted_long_enough(ps):
    assert decide(det(observed=1.5e6, duration=290.0), ps, View(pressure=broker()), NOW).outcome is Outcome.WATCH
    d = decide(det(observed=1.5e6, duration=301.0), ps, View(pressure=broker()), NOW)   # 30x for 301 s
    assert d.outcome is Outcome.QUARANTINED and d.harm["reason"] == "extreme"
    assert d.intents[0]["params"]["producer_byte_rate"] == 100_000.0   # the rung's own sizing


def test_harm_test_off_throttles_on_change(ps):
    off = parse_policy(POLICY.replace("global:\n", "global:\n  harm: {enabled: false}\n"), "t.yaml")
    d = decide(det(), off, View(), NOW)
    assert d.outcome is Outcome.QUARANTINED and d.harm["reason"] == "disabled"


def test_dry_run_shadows_harm_and_watches_the_rest(ps):
    dry = parse_policy(POLICY.replace("global:\n", "global:\n  dry_run: true\n"), "t.yaml")
    assert decide(det(), dry, View(pressure=broker(idle=0.05, mine=90)), NOW).outcome is Outcome.SHADOW
    assert decide(det(), dry, View(pressure=broker()), NOW).outcome is Outcome.WATCH


def watching(d: Detection, dry=False) -> Quarantine:
    return Quarantine(id="q-w", workload=d.workload, workload_key=workload_key(d.workload), policy="tenants",
                      state=QState.WATCHING, rung=0, dry_run=dry, created_at=NOW - 20, updated_at=NOW - 20,
                      rung_at=NOW - 20, expires_at=NOW + 3600)


def test_a_watched_runaway_is_quarantined_when_it_starts_to_hurt(ps):
    d = det()
    calm = decide(d, ps, View(existing=watching(d), pressure=broker()), NOW)
    assert calm.outcome is Outcome.WATCH and calm.quarantine_id == "q-w" and not calm.intents
    hurt = decide(d, ps, View(existing=watching(d), pressure=broker(idle=0.05, mine=90, others=10)), NOW)
    assert hurt.outcome is Outcome.QUARANTINED and hurt.quarantine_id == "q-w" and hurt.rung == 0 and hurt.intents
    assert "now hurts" in hurt.reason


def test_a_watched_runaway_that_hurts_still_obeys_pause_caps_and_dry_run(ps):
    d = det()
    hurting = broker(idle=0.05, mine=90, others=10)
    assert decide(d, ps, View(existing=watching(d), pressure=hurting, paused=True), NOW).outcome is Outcome.PAUSED
    assert decide(d, ps, View(existing=watching(d), pressure=hurting, open_quarantines=3), NOW).outcome is Outcome.CAPPED
    dry = decide(d, ps, View(existing=watching(d, dry=True), pressure=hurting), NOW)
    assert dry.outcome is Outcome.WATCH and "would throttle" in dry.reason


def test_a_group_is_attributed_through_its_members_and_a_principal_through_all_its_clients():
    p = broker(idle=0.05, mine=60, others=40).brokers["b1"]
    group = det(signature=Signature.REBALANCE_STORM, metric="rebalance_rate",
                workload={"principal": ME[0], "group": "g"})
    group = Detection(**{**group.__dict__, "extra": {"client_ids": [ME[1]]}})
    assert assess(group, Pressure(NOW, {"b1": p}), HarmTest(), NOW).share == 0.6
    tenant = det(workload={"principal": "User:tenant-b"})
    assert assess(tenant, Pressure(NOW, {"b1": p}), HarmTest(), NOW).share == 0.4


def test_proportionate_scale_needs_an_idle_signal_under_its_target():
    cfg = HarmTest()
    assert proportionate_scale(broker(idle=0.8, p99=500, normal=5).brokers["b1"], 0.9, cfg) is None
    assert proportionate_scale(broker(idle=0.2).brokers["b1"], 1.0, cfg) == pytest.approx((0.8 - 0.5) / 0.8)
    # latency pressure with the handlers half idle (over the 30 % line, under the 70 % target): shed to the target
    assert proportionate_scale(broker(idle=0.5, p99=500, normal=5).brokers["b1"], 1.0, cfg) == pytest.approx(0.6)


def test_a_proportionate_throttle_brings_the_others_wait_back_near_what_it_was():
    """The 1-broker ramp drill: throttled to 70 % idle on a broker that was 78 % idle before the ramp,
    the others' p99 settled at 1.28-1.43x; the wait target keeps the ramp near its normal there."""
    quiet = broker(idle=0.1, mine=80, others=20).brokers["b1"]        # 90 % busy, 80 % of it the runaway
    cfg = HarmTest()
    before = 0.9 - 0.8 * 0.9 * (1 - 1 / 20)                             # 21.6 % busy before the 20x ramp
    k = 1.2 * before / (1 - before)
    waited = proportionate_scale(quiet, 0.8, cfg, ratio=20)
    assert waited == pytest.approx((0.72 - (0.9 - k / (1 + k))) / 0.72)
    idle_only = proportionate_scale(quiet, 0.8, cfg)                      # no ratio: the idle target alone
    assert idle_only == pytest.approx((0.72 - 0.6) / 0.72) and waited < idle_only
    # the others' wait then grows 1.2x: busy / (1 - busy) at the target over the same before
    target = 0.9 - 0.72 * (1 - waited)
    assert (target / (1 - target)) / (before / (1 - before)) == pytest.approx(1.2)
    # a broker that was busy before keeps the idle target: 60 % busy before, so 1.2x its wait is 64 % busy
    busy = proportionate_scale(quiet, 0.8, cfg, ratio=1.5)
    assert busy == pytest.approx(idle_only)
    # null turns the wait target off; without a rise (ratio <= 1) there is no before to go back to
    off = HarmTest.model_validate({"pressure": {"wait_growth": None}})
    assert proportionate_scale(quiet, 0.8, off, ratio=20) == pytest.approx(idle_only)
    assert proportionate_scale(quiet, 0.8, cfg, ratio=0.5) == pytest.approx(idle_only)
    # latency pressure on a broker under both targets sheds nothing: no proportionate size
    assert proportionate_scale(broker(idle=0.95, p99=500, normal=5).brokers["b1"], 0.5, cfg, ratio=1.05) is None


def _queued(queue_ms: float, normal_ms: float = 3.0, idle: float = 0.5) -> Pressure:
    b = broker(idle=idle, mine=60, others=20).brokers["b1"]
    return Pressure(NOW, {"b1": BrokerPressure("b1", NOW, {**b.signals, "request_queue_time_p99:Produce": queue_ms},
                                               {**b.normals, "request_queue_time_p99:Produce": normal_ms},
                                               b.clients, b.total)})


def test_queue_time_is_pressure_from_its_own_lower_floor_while_the_handlers_are_half_idle(ps):
    """The 1-broker ramp drill: 1 MB batches kept one I/O thread half busy and the others' Produce requests
    queued behind them (queue p99 3 -> 11 ms, benign p99 3x) 5-8 s before the idle line was crossed."""
    d = decide(det(), ps, View(pressure=_queued(12.0)), NOW)
    assert d.outcome is Outcome.QUARANTINED, d.reason
    assert "Produce p99 queue time 12 ms (normal 3 ms)" in d.harm["line"]
    # 10x its normal with 75 % of a half-busy broker: 16 % busy before it ran away, so 70 % idle would still
    # make the others wait 2.2x as long; the wait target (1.2x that wait: 19 % busy) is the tighter one
    before = 0.5 - 0.75 * 0.5 * 0.9
    k = 1.2 * before / (1 - before)
    assert d.harm["scale"] == pytest.approx(1 - (0.5 - k / (1 + k)) / (0.75 * 0.5), abs=1e-3)
    assert decide(det(), ps, View(pressure=_queued(9.0)), NOW).outcome is Outcome.WATCH      # under 10 ms
    assert decide(det(), ps, View(pressure=_queued(12.0, normal_ms=7.0)), NOW).outcome is Outcome.WATCH   # < 2x
    # queue time is only waiting: 2x its normal past the floor is pressure (total time keeps 3x)
    assert decide(det(), ps, View(pressure=_queued(12.0, normal_ms=5.0)), NOW).outcome is Outcome.QUARANTINED
    # total time keeps its 100 ms floor: a big request's own work is not others' wait
    total = broker(idle=0.5, mine=60, others=20, p99=60.0, normal=5.0)
    assert decide(det(), ps, View(pressure=total), NOW).outcome is Outcome.WATCH


def test_harm_settings_are_validated():
    with pytest.raises(ConfigError, match="budgets name unknown metrics: bogus"):
        parse_policy("global:\n  harm: {budgets: {bogus: 1}}\n", "t.yaml")
    with pytest.raises(ConfigError, match="target_idle must be above idle_below"):
        parse_policy("global:\n  harm: {pressure: {idle_below: 0.5, target_idle: 0.4}}\n", "t.yaml")
    with pytest.raises(ConfigError, match="unknown key 'extreme'"):
        parse_policy("global:\n  harm: {extreme: 3}\n", "t.yaml")


# ----------------------------------------------------------------------------- ClusterPressure

def _b(metric, value, ts, **labels):
    return Sample(ts, Workload(broker="b1"), metric, value, labels=labels)


def test_cluster_pressure_learns_a_latency_normal_that_an_episode_does_not_become():
    now = [0.0]
    cp = ClusterPressure(clock=lambda: now[0])
    for t in range(0, 600, 1):
        cp.observe([_b(Metric.REQUEST_TOTAL_TIME_P99, 10.0, float(t), request="Produce")])
    for t in range(600, 660):   # a minute of 30x latency
        cp.observe([_b(Metric.REQUEST_TOTAL_TIME_P99, 300.0, float(t), request="Produce")])
    now[0] = 660.0
    b = cp.snapshot().brokers["b1"]
    assert b.signals["request_total_time_p99:Produce"] == 300.0
    assert 10.0 <= b.normals["request_total_time_p99:Produce"] < 30.0   # still near 10 ms, not 300
    assert assess(det(), cp.snapshot(), HarmTest(), 660.0).reason == "none"   # pressure, but no client load known


def test_a_latency_normal_is_the_level_of_its_first_seconds_not_the_empty_histogram_it_started_at():
    # seen on a drill broker: Fetch p99 read 0 (no request yet), then 500-900 ms (consumers' long polls)
    # for good; the normal seeded at 0 crept up at the slow rate and read 46-63 ms three minutes later
    now = [0.0]
    cp = ClusterPressure(clock=lambda: now[0])
    cp.observe([_b(Metric.REQUEST_TOTAL_TIME_P99, 0.0, 0.0, request="Fetch")])
    for t in range(1, 20):
        cp.observe([_b(Metric.REQUEST_TOTAL_TIME_P99, 800.0, float(t), request="Fetch")])
    now[0] = 19.0
    assert "request_total_time_p99:Fetch" not in cp.snapshot().brokers["b1"].normals   # not warm yet
    for t in range(20, 200):
        cp.observe([_b(Metric.REQUEST_TOTAL_TIME_P99, 800.0, float(t), request="Fetch")])
    now[0] = 199.0
    b = cp.snapshot().brokers["b1"]
    assert 700.0 <= b.normals["request_total_time_p99:Fetch"] <= 800.0
    assert breaches(b, HarmTest()) == []


def test_a_latency_normal_waits_for_the_first_request_before_it_learns():
    # a guardian started before any consumer: Fetch p99 reads 0 for minutes, then the long polls' 500 ms
    now = [0.0]
    cp = ClusterPressure(clock=lambda: now[0])
    for t in range(0, 300):
        cp.observe([_b(Metric.REQUEST_TOTAL_TIME_P99, 0.0, float(t), request="Fetch")])
    for t in range(300, 340):
        cp.observe([_b(Metric.REQUEST_TOTAL_TIME_P99, 500.0, float(t), request="Fetch")])
    now[0] = 339.0
    b = cp.snapshot().brokers["b1"]
    assert b.normals["request_total_time_p99:Fetch"] == 500.0 and breaches(b, HarmTest()) == []


def test_a_queue_time_normal_falls_back_to_the_healthy_level_within_a_minute_a_total_time_normal_does_not():
    """The 1-broker ramp drill: Produce queue p99 averaged 25 ms over the broker's first 30 s (its startup,
    kept in the five-minute histogram), then fell to 4 ms; the normal must be back near 4 ms by the time
    a runaway comes two minutes later, or 3x it is far above the harm the others feel."""
    now = [0.0]
    cp = ClusterPressure(clock=lambda: now[0])
    startup = [12.0] * 15 + [94.0] * 3 + [28.0] * 12
    for t, v in enumerate(startup + [10.0 - 6.0 * i / 60 for i in range(60)] + [4.0] * 60):
        cp.observe([_b(Metric.REQUEST_QUEUE_TIME_P99, v, float(t), request="Produce"),
                    _b(Metric.REQUEST_TOTAL_TIME_P99, 800.0 if t < 30 else 300.0, float(t), request="Fetch")])
    now[0] = 149.0
    b = cp.snapshot().brokers["b1"]
    assert 4.0 <= b.normals["request_queue_time_p99:Produce"] <= 5.0, b.normals
    assert b.normals["request_total_time_p99:Fetch"] > 500.0, b.normals   # total time: the slow way down
    # and a queue time above the normal is still learned slowly: an episode does not become it
    for t in range(150, 210):
        cp.observe([_b(Metric.REQUEST_QUEUE_TIME_P99, 40.0, float(t), request="Produce")])
    now[0] = 209.0
    assert cp.snapshot().brokers["b1"].normals["request_queue_time_p99:Produce"] < 6.0


def test_cluster_pressure_sums_client_loads_and_forgets_quiet_clients():
    now = [10.0]
    cp = ClusterPressure(stale_after_s=30.0, clock=lambda: now[0])
    a = Workload(principal="User:a", client_id="x", broker="b1")
    b = Workload(principal="User:b", client_id="y", broker="b1")
    cp.observe([Sample(10.0, a, Metric.REQUEST_TIME_SHARE, 30.0), Sample(10.0, a, Metric.PRODUCE_BYTE_RATE, 5e5),
                Sample(10.0, b, Metric.REQUEST_TIME_SHARE, 10.0), Sample(10.0, b, Metric.FETCH_BYTE_RATE, 1e5),
                _b(Metric.REQUEST_HANDLER_IDLE, 0.4, 10.0),
                # not load: a topic's bytes and a client's throttle time
                Sample(10.0, Workload(topic="t", broker="b1"), Metric.PRODUCE_BYTE_RATE, 9e9),
                Sample(10.0, a, Metric.THROTTLE_TIME, 5.0)])
    snap = cp.snapshot().brokers["b1"]
    assert snap.total == ClientLoad(request_time=40.0, bytes_in=5e5, bytes_out=1e5)
    assert snap.load_of("User:a") == ClientLoad(request_time=30.0, bytes_in=5e5)
    now[0] = 45.0
    cp.observe([Sample(45.0, b, Metric.REQUEST_TIME_SHARE, 12.0)])
    snap = cp.snapshot().brokers["b1"]
    assert set(snap.clients) == {("User:b", "y")} and "request_handler_idle" not in snap.signals
    assert snap.total.request_time == 12.0
