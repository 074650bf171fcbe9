"""Fixtures for the action engine against the real broker and Redis.

The throttle goes through the real quota actuator (``guardian/actuators/quota.py``) on a
(user tenant-a, unique client-id) entity, so tests never share cluster state.
``EffectCounter`` wraps it and counts the applies and reverts that really
changed the cluster (it reads the entity before and after each call): that is
how "applied exactly once" is measured, on the cluster itself.
"""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from typing import Any, Callable, Iterator

import pytest

from guardian.actuators.base import ActionPlan, Actuator
from guardian.model.detection import Detection, Severity, Signature
from guardian.store.audit import KafkaAuditSink, ensure_topic
from guardian.engine.engine import ActionEngine
from guardian.store.ledger import Ledger
from guardian.policy.config import parse_policy
from guardian.testing import without_harm_test

TEST_POLICY = textwrap.dedent("""\
    global:
      max_concurrent_quarantines: {cap}
      dry_run: {dry}
      probation: {{duration_s: 600}}
    policies:
      - name: tenants
        match: {{principals: ["User:*"]}}
        min_severity: high
        ladder:
          - {{action: throttle, multiple_of_baseline: 4, floor: 1024, evidence_s: 5, cooldown_s: 30, ttl_s: 300}}
          - {{action: throttle, multiple_of_baseline: 2, floor: 1024, evidence_s: 5, cooldown_s: 30, ttl_s: 300,
              requires_approval: {approve}}}
    """)


def make_policies(cap: int = 5, dry: bool = False, approve: bool = False):
    # these tests are about the lifecycle, caps and crashes: the harm test (tests/unit/engine/test_harm.py,
    # test_watch.py here) is off, so a detection alone opens a quarantine
    return without_harm_test(parse_policy(TEST_POLICY.format(cap=cap, dry=str(dry).lower(),
                                                             approve=str(approve).lower()), "test.yaml"))


class Crash(BaseException):
    """A simulated process death: not an Exception, so no handler in the engine swallows it."""


def crash_once_at(step: str) -> Callable[[str], None]:
    fired = {"done": False}

    def hook(s: str) -> None:
        if s == step and not fired["done"]:
            fired["done"] = True
            raise Crash(step)

    return hook


class EffectCounter(Actuator):
    """Delegates to a real actuator; counts calls that changed what ``observe`` reads."""

    def __init__(self, inner: Actuator) -> None:
        self.inner = inner
        self.kind = inner.kind  # type: ignore[misc]
        self.effective_applies = 0
        self.effective_reverts = 0
        self.apply_calls = 0

    def plan(self, target, params, quarantine_id=""):
        return self.inner.plan(target, params, quarantine_id)

    def observe(self, plan: ActionPlan) -> dict[str, Any]:
        return self.inner.observe(plan)

    def apply(self, plan: ActionPlan) -> None:
        self.apply_calls += 1
        before = self.inner.observe(plan)
        self.inner.apply(plan)
        if self.inner.observe(plan) != before:
            self.effective_applies += 1

    def verify(self, plan: ActionPlan) -> bool:
        return self.inner.verify(plan)

    def revert(self, plan: ActionPlan, before: dict[str, Any]) -> None:
        was = self.inner.observe(plan)
        self.inner.revert(plan, before)
        if self.inner.observe(plan) != was:
            self.effective_reverts += 1


@pytest.fixture
def quota_admin(bootstrap: str):
    from guardian.clients.kafka_admin import ClientQuotaAdmin

    admin = ClientQuotaAdmin(bootstrap)
    yield admin
    admin.close()


@pytest.fixture
def client_id(unique: str, quota_admin) -> Iterator[str]:
    """A unique client-id of tenant-a; its quotas are removed after the test."""
    from guardian.clients.kafka_admin import QuotaEntity

    cid = f"loader-{unique}"
    yield cid
    quota_admin.restore(QuotaEntity.of(user="tenant-a", client_id=cid), {})


@pytest.fixture
def quota(quota_admin) -> Callable[[], EffectCounter]:
    from guardian.actuators.quota import QuotaActuator

    return lambda: EffectCounter(QuotaActuator(quota_admin))


@pytest.fixture
def ledger(redis_client, unique: str) -> Iterator[Ledger]:
    prefix = f"test-{unique}:"
    yield Ledger(redis_client, prefix=prefix)
    for key in redis_client.scan_iter(match=prefix + "*"):
        redis_client.delete(key)


@pytest.fixture
def audit_topic(bootstrap: str, unique: str) -> str:
    topic = f"guardian.decisions.test-{unique}"
    ensure_topic({"bootstrap.servers": bootstrap}, topic, partitions=1, replication_factor=1)
    return topic


@pytest.fixture
def audit_sink(bootstrap: str, audit_topic: str) -> Iterator[KafkaAuditSink]:
    sink = KafkaAuditSink({"bootstrap.servers": bootstrap}, audit_topic)
    yield sink
    sink.close()


@pytest.fixture
def read_audit(bootstrap: str, audit_topic: str) -> Callable[[], list[dict]]:
    """Every record on the audit topic, in order (reads up to the high watermark)."""
    from confluent_kafka import Consumer, TopicPartition

    def read() -> list[dict]:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"audit-reader-{uuid.uuid4().hex[:6]}",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            _, high = c.get_watermark_offsets(TopicPartition(audit_topic, 0), timeout=15)
            c.assign([TopicPartition(audit_topic, 0, 0)])
            out: list[dict] = []
            deadline = time.monotonic() + 30
            while len(out) < high and time.monotonic() < deadline:
                msg = c.poll(1.0)
                if msg is not None and not msg.error():
                    out.append(json.loads(msg.value()))
            return out
        finally:
            c.close()

    return read


def detection(client_id: str, principal: str = "User:tenant-a", duration: float = 20.0, id: str | None = None,
              baseline: float = 100_000.0, observed: float = 2_000_000.0, **wl: str) -> Detection:
    return Detection(id=id or f"det-{uuid.uuid4().hex[:8]}", ts=time.time(), signature=Signature.RUNAWAY_PRODUCER,
                     severity=Severity.CRITICAL, confidence=0.95,
                     workload={"principal": principal, "client_id": client_id, **wl},
                     metric="produce_byte_rate", baseline=baseline, observed=observed, ratio=observed / baseline,
                     duration_s=duration)


class Clock:
    """A settable clock: the engine's notion of time in tests (TTL, cool-down)."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_engine(ledger: Ledger, clock: Clock) -> Callable[..., ActionEngine]:
    def make(actuators: dict[str, Actuator], policies=None, **kw: Any) -> ActionEngine:
        return ActionEngine(ledger, policies or make_policies(), actuators, clock=clock, **kw)

    return make
