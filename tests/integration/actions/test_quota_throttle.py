"""A runaway tenant-a producer is throttled to its quota; tenant-b does not notice.

Both tenants produce with real confluent-kafka producers over SASL at paced
rates: tenant-a offers 3x the quota it is about to get, tenant-b a steady
256 KiB/s. The quota lands on exactly (tenant-a, its client-id).

What a Kafka quota promises is an average over the broker's quota window
(``quota.window.num`` x ``quota.window.size.seconds`` = 11 x 1 s by default),
not a smooth per-second rate: right after the quota lands the broker throttles
the pre-quota excess away (seconds of near silence), then lets the backlog
catch up in bursts. So throughput is measured over one quota window, starting
once the quota is in force.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.actions.traffic import PacedProducer, at_speed, throttle_for

QUOTA = 1 << 20            # 1 MiB/s for the runaway
RUNAWAY = 3 * QUOTA        # what the runaway offers
STEADY = 256 << 10         # tenant-b's steady producer
BASELINE_S = 2.0           # both producers at speed for this long before the quota lands
RAMP_LIMIT_S = 30.0
SETTLE_S = 2.0             # apply waits until the broker serves the quota; then a margin
MEASURE_S = 11.0           # one broker quota window (Kafka defaults: 11 samples of 1 s)


def test_runaway_producer_falls_to_its_quota_and_tenant_b_is_unchanged(make_topic, tenant_conf, quota_actuator,
                                                                      unique):
    topic_a, topic_b = make_topic("tenant-a"), make_topic("tenant-b")
    cid_a, cid_b = f"runaway-{unique}", f"steady-{unique}"
    # Java-client-like in-flight limit: librdkafka's default (1e6) turns every unthrottled moment into a burst.
    a = PacedProducer(tenant_conf("tenant-a", **{"client.id": cid_a, "batch.size": 64 << 10,
                                                 "max.in.flight.requests.per.connection": 5}), topic_a,
                      RUNAWAY).start()
    b = PacedProducer(tenant_conf("tenant-b", **{"client.id": cid_b}), topic_b, STEADY).start()
    plan = quota_actuator.plan({"principal": "User:tenant-a", "client_id": cid_a},
                               {"producer_byte_rate": QUOTA}, quarantine_id=f"q-{unique}")
    before = quota_actuator.observe(plan)
    t0 = time.monotonic()
    try:
        at_speed(lambda now: (now - t0 >= BASELINE_S and a.rate(now - BASELINE_S, now) > 2 * QUOTA
                              and abs(b.rate(now - BASELINE_S, now) - STEADY) / STEADY <= 0.15), RAMP_LIMIT_S,
                 lambda t0, now: (f"producers not at speed after {RAMP_LIMIT_S:.0f}s: tenant-a "
                                  f"{a.per_second(t0, now)}, tenant-b {b.per_second(t0, now)}; "
                                  f"errors {a.errors[:2]} {b.errors[:2]}"))
        t_apply, t_end = throttle_for(quota_actuator, plan, SETTLE_S + MEASURE_S)
    finally:
        a.stop()
        b.stop()
        quota_actuator.revert(plan, before)

    assert before["quotas"] == {}, "the (user, client-id) entity had no quota of its own before"
    assert not a.errors and not b.errors, (a.errors[:3], b.errors[:3])
    base_a = a.rate(t_apply - BASELINE_S, t_apply)
    assert base_a > 2 * QUOTA, f"the runaway never ran away: {base_a:.0f} B/s"

    t_measure = t_apply + SETTLE_S
    throttled_a = a.rate(t_measure, t_end)
    detail = f"tenant-a per second after apply: {a.per_second(t_apply, t_end)}"
    assert abs(throttled_a - QUOTA) / QUOTA <= 0.10, f"{throttled_a:.0f} B/s vs quota {QUOTA}; {detail}"
    events = a.throttle_events(t_apply)
    assert events and max(ms for _, ms in events) > 0, "tenant-a's produce responses carried no throttle time"
    assert a.throttle.stats_max_ms > 0, "librdkafka statistics show no broker throttle for tenant-a"

    base_b, during_b = b.rate(t_apply - BASELINE_S, t_apply), b.rate(t_measure, t_end)
    assert abs(during_b - base_b) / base_b <= 0.15, (f"tenant-b went from {base_b:.0f} to {during_b:.0f} B/s: "
                                                     f"{b.per_second(t_apply, t_end)}")
    assert b.throttle_events() == [] and b.throttle.stats_max_ms == 0, "tenant-b was throttled"
    print(f"\nquota {QUOTA} B/s: tenant-a {base_a:.0f} -> {throttled_a:.0f} B/s "
          f"({throttled_a / QUOTA:.3f}x quota), max throttle {max(ms for _, ms in events)} ms; "
          f"tenant-b {base_b:.0f} -> {during_b:.0f} B/s; {detail}")


def test_revert_after_the_throttle_restores_no_quota(quota_actuator, unique):
    plan = quota_actuator.plan({"principal": "User:tenant-a", "client_id": f"gone-{unique}"},
                               {"producer_byte_rate": QUOTA})
    before = quota_actuator.observe(plan)
    quota_actuator.apply(plan)
    quota_actuator.revert(plan, before)
    assert quota_actuator.observe(plan) == before and before["quotas"] == {}
