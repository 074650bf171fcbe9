"""Benchmark: detection handed to the engine -> throttle applied and verified on the broker.

Each round hands one runaway-producer detection (a fresh client-id of
tenant-a) to ``ActionEngine.handle`` with the real quota actuator, the Redis
ledger and the Kafka audit trail, and stops the clock when ``handle`` returns
with the action record ``verified`` (the quota read back from the broker).
Then it releases the quarantine and times the revert the same way.

    guardian-dev bench act --json        # or: python bench/bench_act.py

Uses KAFKA_BOOTSTRAP_SERVERS + REDIS_URL when set, else the embedded dev
stack (started if needed, left running like ``guardian-dev up``).
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from typing import Any, Callable


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def _endpoints(say: Callable[[str], None]):
    from guardian_dev.stack import DevStack
    from guardian.settings import GuardianSettings

    return DevStack(GuardianSettings().dev).up(progress=say)


def run(rounds: int = 30, say: Callable[[str], None] = print) -> dict[str, Any]:
    import redis

    from guardian.actuators.quota import QuotaActuator
    from guardian.model.detection import Detection, Severity, Signature
    from guardian.store.audit import KafkaAuditSink, ensure_topic
    from guardian.engine.engine import ActionEngine
    from guardian.model.quarantine import Outcome, StepStatus
    from guardian.clients.kafka_admin import QuotaEntity
    from guardian.store.ledger import Ledger
    from guardian.policy.config import default_policy_path, load_policy
    from guardian.testing import pressure_blaming
    from guardian.settings import GuardianSettings

    ep = _endpoints(say)
    topic = GuardianSettings().topics.decisions
    conf = {"bootstrap.servers": ep.kafka_bootstrap_servers}
    ensure_topic(conf, topic)
    policies = load_policy(default_policy_path())
    policies = policies.model_copy(update={"global_": policies.global_.model_copy(
        update={"max_concurrent_quarantines": rounds + 1})})
    client = redis.Redis.from_url(ep.redis_url)
    run_id = uuid.uuid4().hex[:8]
    prefix = f"bench-act-{run_id}:"
    ledger = Ledger(client, prefix)
    quota = QuotaActuator.from_bootstrap(ep.kafka_bootstrap_servers)
    sink = KafkaAuditSink(conf, topic)
    # The default policy throttles on harm: the broker reads as under pressure that the round's client
    # explains (its handlers 2 % idle, the client using 90 % of a thread), the production path.
    current: list[str] = [""]
    engine = ActionEngine(ledger, policies, {"quota": quota}, audit_sink=sink, name="bench-act",
                          cluster_pressure=lambda: pressure_blaming([("User:tenant-a", current[0])], time.time()))

    apply_s: list[float] = []
    revert_s: list[float] = []
    try:
        for i in range(rounds + 1):   # round 0 warms connections and is not counted
            cid = f"bench-act-{run_id}-{i}"
            current[0] = cid
            det = Detection(id=f"bench-{run_id}-{i}", ts=time.time(), signature=Signature.RUNAWAY_PRODUCER,
                            severity=Severity.CRITICAL, confidence=0.95,
                            workload={"principal": "User:tenant-a", "client_id": cid},
                            metric="produce_byte_rate", baseline=200_000.0, observed=5_000_000.0, ratio=25.0,
                            duration_s=30.0)
            t0 = time.perf_counter()
            d = engine.handle(det)
            t1 = time.perf_counter()
            if d.outcome is not Outcome.QUARANTINED:
                raise RuntimeError(f"round {i}: expected a quarantine, got {d.outcome.value}: {d.reason}")
            q = ledger.get(d.quarantine_id)
            recs = ledger.actions(q)
            if [r.status for r in recs] != [StepStatus.VERIFIED]:
                raise RuntimeError(f"round {i}: action not verified: {[r.status.value for r in recs]}")
            t2 = time.perf_counter()
            engine.release(d.quarantine_id, by="bench", reason="benchmark round over")
            t3 = time.perf_counter()
            if ledger.actions(ledger.get(d.quarantine_id))[0].status is not StepStatus.REVERTED:
                raise RuntimeError(f"round {i}: revert not recorded")
            if quota._admin.describe(QuotaEntity.of(user="tenant-a", client_id=cid)):
                raise RuntimeError(f"round {i}: quota left behind after release")
            if i > 0:
                apply_s.append(t1 - t0)
                revert_s.append(t3 - t2)
            say(f"round {i}: detect->verified {t1 - t0:.3f}s, release->reverted {t3 - t2:.3f}s")
    finally:
        sink.close()
        quota.close()
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()
    return {"rounds": rounds,
            "detect_to_verified_p50_s": round(_pct(apply_s, 50), 4),
            "detect_to_verified_p95_s": round(_pct(apply_s, 95), 4),
            "detect_to_verified_mean_s": round(statistics.fmean(apply_s), 4),
            "detect_to_verified_max_s": round(max(apply_s), 4),
            "release_to_reverted_p50_s": round(_pct(revert_s, 50), 4),
            "release_to_reverted_p95_s": round(_pct(revert_s, 95), 4),
            "cpu_count": os.cpu_count(), "kafka_provider": ep.kafka_provider}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
