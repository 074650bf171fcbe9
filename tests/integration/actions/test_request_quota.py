"""A storm of small produce requests is held by a request_percentage quota alone.

The guardian's pressure-sized throttle sets two quotas: bytes and broker thread time
(``request_percentage``, guardian/policy/decide.py ``thread_time_cap``). This is the second one on
the real broker: a tenant-a client sends every 200-byte message as its own request (linger 0, a
batch holds one message), which costs the broker thread time far beyond its bytes. With only a
request_percentage quota of 1 % of a thread on (tenant-a, its client-id), the broker delays its
responses until its request time is back under the quota, and the client's request rate falls;
the revert leaves the entity as it was. Rates are compared over one quota window (11 s), as in
test_quota_throttle.py.
"""

from __future__ import annotations

import time

from tests.integration.actions.traffic import PacedProducer, at_speed, throttle_for

MSG = 200                  # bytes: each message its own produce request
OFFER = 2000 * MSG         # 2,000 requests/s offered
CAP = 1.0                  # percent of one broker thread
BASELINE_S = 3.0
RAMP_LIMIT_S = 30.0
SETTLE_S = 2.0
MEASURE_S = 11.0           # one broker quota window


class RequestStorm(PacedProducer):
    """PacedProducer with one message per request (it sets linger 5 ms for its byte-paced tests)."""

    def __init__(self, conf: dict, topic: str) -> None:
        super().__init__(conf, topic, OFFER, msg_size=MSG, max_queued_bytes=1 << 20)
        self._conf.update({"linger.ms": 0, "batch.size": MSG + 100, "max.in.flight.requests.per.connection": 5})

    def requests(self, t0: float, t1: float) -> float:
        """Delivered messages (one request each) per second between monotonic ``t0`` and ``t1``."""
        return self.rate(t0, t1) / MSG


def test_a_request_quota_alone_holds_a_storm_of_small_requests(make_topic, tenant_conf, quota_actuator, unique):
    topic = make_topic("tenant-a")
    cid = f"request-storm-{unique}"
    storm = RequestStorm(tenant_conf("tenant-a", **{"client.id": cid}), topic).start()
    plan = quota_actuator.plan({"principal": "User:tenant-a", "client_id": cid}, {"request_percentage": CAP},
                               quarantine_id=f"q-{unique}")
    before = quota_actuator.observe(plan)
    t0 = time.monotonic()
    try:
        at_speed(lambda now: now - t0 >= BASELINE_S and storm.requests(now - BASELINE_S, now) > 500, RAMP_LIMIT_S,
                 lambda t0, now: (f"the storm never reached 500 requests/s: {storm.per_second(t0, now)} B/s; "
                                  f"errors {storm.errors[:2]}"))
        t_apply, t_end = throttle_for(quota_actuator, plan, SETTLE_S + MEASURE_S)
    finally:
        storm.stop()
        quota_actuator.revert(plan, before)

    assert before["quotas"] == {}, "the (user, client-id) entity had no quota of its own before"
    assert quota_actuator.observe(plan) == before, "the revert left a quota behind"
    assert not storm.errors, storm.errors[:3]
    base = storm.requests(t_apply - BASELINE_S, t_apply)
    held = storm.requests(t_apply + SETTLE_S, t_end)
    detail = f"B/s per second after apply: {storm.per_second(t_apply, t_end)}"
    assert held <= 0.5 * base, f"{base:.0f} -> {held:.0f} requests/s under a {CAP} % request quota; {detail}"
    events = storm.throttle_events(t_apply)
    assert events and max(ms for _, ms in events) > 0, "no produce response carried a throttle time"
    print(f"\nrequest_percentage {CAP}: {base:.0f} -> {held:.0f} requests/s, "
          f"max throttle {max(ms for _, ms in events)} ms; {detail}")
