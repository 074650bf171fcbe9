"""The engine's pod rung end to end: a detection that names only the client finds its pod and isolates it."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from kubernetes.client import CoreV1Api, NetworkingV1Api

from guardian.actuators.pod import PodActuator
from guardian.model.detection import Detection, Severity, Signature
from guardian_dev.kubernetes import tenant_pod
from guardian.engine.engine import ActionEngine
from guardian.model.quarantine import Outcome, QState
from guardian.store.ledger import Ledger
from guardian.policy.config import parse_policy
from guardian.app.run import pod_resolver_for

pytestmark = [pytest.mark.integration, pytest.mark.kubernetes]

POLICY = """
global:
  max_concurrent_quarantines: 5
policies:
  - name: isolate-first
    match: {principals: ["User:*"]}
    min_severity: high
    ladder:
      - action: isolate_pod
        evidence_s: 0
        cooldown_s: 60
        ttl_s: 600
        requires_approval: false
"""



def _tenant_pod_and_engine(kubernetes, redis_url: str, prefix: str, tenant: str):
    """A pod annotated as (User:<tenant>, a fresh client-id) and an engine that may isolate pods."""
    ns = kubernetes.namespace
    cid = f"{prefix}-{uuid.uuid4().hex[:6]}"
    name = f"{cid}-0"
    core = CoreV1Api(kubernetes.admin)
    core.create_namespaced_pod(ns, tenant_pod(name, {"team": tenant}, cid, f"User:{tenant}"))
    api = kubernetes.guardian_client()
    pod = PodActuator(api)
    engine = ActionEngine(Ledger(redis.Redis.from_url(redis_url), prefix=f"podrung-{uuid.uuid4().hex[:6]}"),
                          parse_policy(POLICY), {"pod": pod}, pod_resolver=pod_resolver_for(pod, [ns]))
    return cid, name, core, api, pod, engine


def test_detection_without_a_pod_isolates_the_annotated_pod_and_release_reverts(kubernetes, redis_url) -> None:
    ns = kubernetes.namespace
    cid, name, core, api, pod, engine = _tenant_pod_and_engine(kubernetes, redis_url, "runaway", "tenant-x")
    det = Detection(id=f"d-{cid}", ts=time.time(), signature=Signature.RUNAWAY_PRODUCER, severity=Severity.HIGH,
                    confidence=0.9, workload={"principal": "User:tenant-x", "client_id": cid},
                    metric="produce_byte_rate", baseline=1e5, observed=1e6, ratio=10.0, duration_s=30.0)
    try:
        decision = engine.handle(det)
        assert decision.outcome is Outcome.QUARANTINED, decision.reason
        q = engine.get(decision.quarantine_id)
        assert q is not None and q.state is QState.ACTIVE
        [plan] = [a.plan for a in engine.actions(q.id)]
        assert plan["target"]["pod"] == name and plan["target"]["namespace"] == ns
        labels = core.read_namespaced_pod(name, ns).metadata.labels
        assert any(k.startswith("guardian.kafka/quarantine") for k in labels), labels
        policies = NetworkingV1Api(kubernetes.admin).list_namespaced_network_policy(ns).items
        assert any(p.metadata.name.startswith("guardian-quarantine-") for p in policies)

        engine.release(q.id, by="test", reason="done")
        engine.tick()
        labels = core.read_namespaced_pod(name, ns).metadata.labels or {}
        assert not any(k.startswith("guardian.kafka/quarantine") for k in labels), labels
    finally:
        api.close()
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)


def test_no_pod_found_leaves_the_rung_unplannable(kubernetes, redis_url) -> None:
    api = kubernetes.guardian_client()
    pod = PodActuator(api)
    engine = ActionEngine(Ledger(redis.Redis.from_url(redis_url), prefix=f"podrung-{uuid.uuid4().hex[:6]}"),
                          parse_policy(POLICY), {"pod": pod}, pod_resolver=pod_resolver_for(pod, [kubernetes.namespace]))
    det = Detection(id=f"d-{uuid.uuid4().hex[:6]}", ts=time.time(), signature=Signature.RUNAWAY_PRODUCER,
                    severity=Severity.HIGH, confidence=0.9,
                    workload={"principal": "User:nobody", "client_id": "no-such-client"},
                    metric="produce_byte_rate", baseline=1e5, observed=1e6, ratio=10.0, duration_s=30.0)
    try:
        decision = engine.handle(det)
        assert decision.outcome is Outcome.UNPLANNABLE
        assert "pod" in decision.reason
    finally:
        api.close()


def test_a_workload_without_a_client_id_never_picks_one_of_the_principals_pods(kubernetes, redis_url) -> None:
    """A tenant-wide detection (a partition storm) or a group names no single pod: isolating
    whichever pod of the principal sorts first would hit an innocent application."""
    ns = kubernetes.namespace
    cid, name, core, api, pod, engine = _tenant_pod_and_engine(kubernetes, redis_url, "bystander", "tenant-y")
    try:
        assert pod.find_pods([ns], principal="User:tenant-y"), "a pod of the principal exists"
        for workload in ({"principal": "User:tenant-y"}, {"principal": "User:tenant-y", "group": "tenant-y.g"}):
            det = Detection(id=f"d-{uuid.uuid4().hex[:6]}", ts=time.time(), signature=Signature.PARTITION_STORM,
                            severity=Severity.HIGH, confidence=0.9, workload=workload,
                            metric="partition_creation_rate", baseline=0.0, observed=40.0, ratio=41.0,
                            duration_s=30.0)
            decision = engine.handle(det)
            assert decision.outcome is Outcome.UNPLANNABLE and "pod" in decision.reason, decision
        labels = core.read_namespaced_pod(name, ns).metadata.labels or {}
        assert not any(k.startswith("guardian.kafka/quarantine") for k in labels), labels
    finally:
        api.close()
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
