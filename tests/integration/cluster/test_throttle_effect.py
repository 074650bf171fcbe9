"""The running engine checks a throttle's effect on the real 3-broker cluster.

A real producer runs away over three partitions led by three brokers (half of it on broker 1); the
brokers' JMX exporters are scraped into the real detector stage, which builds the client's
cluster-wide series and hands what the engine follows to ``FollowedRates``; the engine throttles the
client to a cluster-wide R through the real quota actuator and the Redis ledger, and on its own ticks
records once whether the client's cluster-wide rate fell to about R (guardian/policy/effect.py). The
loop's deadline only ends the loop; the assertions are about the recorded effect, never about time.
"""

from __future__ import annotations

import math
import time
import uuid

import pytest
import redis

from guardian.actuators.quota import QuotaActuator
from guardian.detectors.config import DetectorConfig
from guardian.model.detection import Detection, Severity, Signature
from guardian.detectors.pipeline import DetectorPipeline
from guardian.policy.effect import EffectRule, FollowedRates
from guardian.engine.engine import ActionEngine
from guardian.model.quarantine import Outcome, StepStatus
from guardian.ingest.codec import group_samples
from guardian.ingest.prometheus import PrometheusScraper
from guardian.clients.kafka_admin import ClientQuotaAdmin, QuotaEntity
from guardian.store.ledger import Ledger
from guardian.policy.config import parse_policy
from guardian.ingest.stage import DetectorStage
from guardian.model.samples import Metric, Workload
from guardian.testing import without_harm_test
from tests.integration.actions.traffic import PacedProducer

from .test_three_brokers import OFFER, R, SKEW, WINDOW_S, _producer_conf

POLICY = f"""
policies:
  - name: tenants
    match: {{principals: ["User:*"]}}
    min_severity: high
    ladder:
      - {{action: throttle, quota: producer_byte_rate, absolute: {R}, evidence_s: 0, cooldown_s: 600, ttl_s: 600}}
"""


def test_the_engine_records_a_real_throttle_to_a_cluster_wide_rate_as_effective(c3, c3_tenant, spread_topic,
                                                                                 unique):
    topic, _ = spread_topic
    cid = f"effect-{unique}"
    client = Workload(principal="User:tenant-a", client_id=cid)
    entity = QuotaEntity.of(user="tenant-a", client_id=cid)
    prefix = f"guardian-effect-{uuid.uuid4().hex[:8]}:"
    r = redis.Redis.from_url(c3.redis_url, socket_timeout=5, socket_connect_timeout=5)
    ledger = Ledger(r, prefix=prefix)
    admin = ClientQuotaAdmin(c3.kafka_bootstrap_servers)
    rates = FollowedRates()
    stage = DetectorStage(DetectorPipeline(DetectorConfig()), rates=rates)
    rule = EffectRule()
    engine = ActionEngine(ledger, without_harm_test(parse_policy(POLICY, "effect.yaml")),
                          {"quota": QuotaActuator(admin)}, client_rates=rates.read, effect_rule=rule)
    producer = PacedProducer(_producer_conf(c3_tenant, cid), topic, OFFER, max_queued_bytes=256 << 10,
                             partition_cycle=SKEW).start()
    scraper = PrometheusScraper(c3.metrics_urls)
    qid = None
    judged: list[float] = []                      # the client's cluster-wide rate at each tick while judged
    try:
        # 1. the runaway on three brokers, as the detector stage sees it
        deadline = time.monotonic() + 120
        detail: dict[str, float] = {}
        while time.monotonic() < deadline:
            for batch in group_samples(scraper.scrape()):
                stage.process(batch)
            detail = stage.cluster_series.detail(client, Metric.PRODUCE_BYTE_RATE)
            if len(detail) == 3 and math.fsum(detail.values()) > 2 * R:
                break
            time.sleep(1.0)
        assert len(detail) == 3 and math.fsum(detail.values()) > 2 * R, f"no runaway on three brokers: {detail}"

        # 2. the engine throttles it to R: the per-broker quota is R x the busiest broker's share
        det = Detection(id=f"d-{unique}", ts=time.time(), signature=Signature.RUNAWAY_PRODUCER,
                        severity=Severity.CRITICAL, confidence=0.95, workload=client.as_dict(),
                        metric="produce_byte_rate", baseline=R / 4, observed=math.fsum(detail.values()),
                        ratio=12.0, duration_s=30.0, extra={"brokers": detail})
        d = engine.handle(det)
        assert d.outcome is Outcome.QUARANTINED, d.reason
        qid = d.quarantine_id
        (rec,) = ledger.actions(ledger.get(qid))
        assert rec.status is StepStatus.VERIFIED and rec.effect is None
        per_broker = rec.plan["params"]["producer_byte_rate"]
        assert rec.plan["params"]["cluster_rate"] == R and per_broker < 0.75 * R, rec.plan

        # 3. the engine's own ticks, with the stage fed as the worker feeds it, until the effect is recorded
        deadline = time.monotonic() + rule.deadline_s + 30
        while rec.effect is None and time.monotonic() < deadline:
            for batch in group_samples(scraper.scrape()):
                stage.process(batch)
            engine.tick()
            points = rates.read(client.principal, cid, "produce_byte_rate")
            if points:
                judged.append(points[-1].total)
            (rec,) = ledger.actions(ledger.get(qid))
            time.sleep(1.0)
    finally:
        producer.stop()
        scraper.close()
        try:
            if qid is not None:
                engine.release(qid, "test", "done")   # reverts the quota through the engine
            reverted = admin.describe(entity)
        finally:
            admin.close()
            for key in r.scan_iter(match=prefix + "*"):
                r.delete(key)
            r.close()

    assert not producer.errors, producer.errors[:3]
    effect = rec.effect
    assert effect is not None, f"no effect recorded; the client's cluster-wide rate at each tick: {judged}"
    assert effect["result"] == "effective", (effect, judged)
    assert effect["measured"] <= rule.tolerance * R and effect["target"] == R and effect["per_broker"] == per_broker
    assert set(effect["brokers"]) == set(detail), "the measured parts come from every broker"
    assert math.fsum(effect["brokers"].values()) == pytest.approx(effect["measured"])
    assert effect["window"][1] - effect["window"][0] >= WINDOW_S / 2
    assert max(judged) > rule.tolerance * R, "the client was over R when the engine began following it"
    assert reverted == {}, "the release reverted the throttle"
    print(f"\nR {R} B/s, q {per_broker:.0f}: {effect['line']}; cluster-wide per tick {[round(v) for v in judged]}")
