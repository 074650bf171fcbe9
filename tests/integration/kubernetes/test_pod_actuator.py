"""The pod actuator against a real kube-apiserver, as the guardian's service account with the chart's RBAC."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

import pytest
from kubernetes.client import AppsV1Api, CoreV1Api, NetworkingV1Api

from guardian.actuators.pod import (
    CLIENT_ID_ANNOTATION,
    PRINCIPAL_ANNOTATION,
    PodActuator,
    network_policy_manifest,
    network_policy_name,
    quarantine_label,
)
from guardian_dev.kubernetes import tenant_pod
from guardian.errors import PermanentError

pytestmark = [pytest.mark.integration, pytest.mark.kubernetes]

_seq = itertools.count()


@pytest.fixture
def guardian(kubernetes):
    api = kubernetes.guardian_client()
    yield PodActuator(api)
    api.close()


def _plain(api_client, obj) -> dict[str, Any]:
    return json.loads(json.dumps(api_client.sanitize_for_serialization(obj)))


def make_pod(kubernetes, owner_refs: list[dict] | None = None, ns: str | None = None) -> str:
    """A fresh tenant pod with the tenant's own labels and annotations (unique per test)."""
    name = f"app-{next(_seq)}-{uuid.uuid4().hex[:6]}"
    body = tenant_pod(name, {"app": name, "team": "tenant-a", "tier": "backend"}, f"{name}-client", "User:tenant-a")
    body["metadata"]["annotations"]["example.com/checksum"] = "sha256:abc"
    if owner_refs:
        body["metadata"]["ownerReferences"] = owner_refs
    CoreV1Api(kubernetes.admin).create_namespaced_pod(ns or kubernetes.namespace, body)
    return name


def make_tenant_policy(kubernetes, name: str, selector: dict) -> None:
    """A tenant's own NetworkPolicy that allows all egress: the guardian must leave it alone."""
    NetworkingV1Api(kubernetes.admin).create_namespaced_network_policy(kubernetes.namespace, {
        "metadata": {"name": name, "labels": {"team": "tenant-a"}, "annotations": {"owner": "tenant-a"}},
        "spec": {"podSelector": selector, "policyTypes": ["Egress"], "egress": [{}]}})


def pod_snapshot(kubernetes, name: str) -> dict[str, Any]:
    pod = _plain(kubernetes.admin, CoreV1Api(kubernetes.admin).read_namespaced_pod(name, kubernetes.namespace))
    return {"metadata": pod["metadata"], "spec": pod["spec"]}


def policies_snapshot(kubernetes) -> dict[str, Any]:
    items = NetworkingV1Api(kubernetes.admin).list_namespaced_network_policy(kubernetes.namespace).items
    return {p.metadata.name: _plain(kubernetes.admin, p) for p in items}


def comparable(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A pod snapshot without the one thing any write changes: resourceVersion. Everything else,
    managedFields included (the guardian's entry disappears with its label), must come back."""
    meta = {k: v for k, v in snapshot["metadata"].items() if k != "resourceVersion"}
    return {"metadata": meta, "spec": snapshot["spec"]}


def test_isolate_then_revert_restores_the_pod_and_tenant_policies_exactly(kubernetes, guardian):
    name = make_pod(kubernetes)
    make_tenant_policy(kubernetes, f"{name}-egress", {"matchLabels": {"app": name}})
    pod_before, policies_before = pod_snapshot(kubernetes, name), policies_snapshot(kubernetes)
    plan = guardian.plan({"namespace": kubernetes.namespace, "pod": name}, {}, quarantine_id=f"q-{name}")

    before = guardian.observe(plan)
    assert before["label"] is None and not before["network_policy_exists"]
    assert before["tenant_egress_policies"] == [f"{name}-egress"]  # it would undo the isolation: reported

    guardian.apply(plan)
    assert guardian.verify(plan)
    key, value = quarantine_label(plan)
    during = pod_snapshot(kubernetes, name)
    assert during["metadata"]["labels"] == {**pod_before["metadata"]["labels"], key: value}
    assert during["metadata"]["annotations"] == pod_before["metadata"]["annotations"]
    policy = policies_snapshot(kubernetes)[network_policy_name(plan)]
    assert policy["spec"] == network_policy_manifest(plan)["spec"]
    assert policy["spec"]["podSelector"] == {"matchLabels": {key: value}}
    assert policy["spec"]["egress"] == [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]

    guardian.revert(plan, before)
    assert not guardian.verify(plan)
    after = pod_snapshot(kubernetes, name)
    assert comparable(after) == comparable(pod_before)
    assert policies_snapshot(kubernetes) == policies_before  # byte-for-byte, resourceVersion included

    guardian.revert(plan, before)  # reverting twice equals reverting once
    assert comparable(pod_snapshot(kubernetes, name)) == comparable(pod_before)


def test_apply_twice_equals_apply_once(kubernetes, guardian):
    name = make_pod(kubernetes)
    plan = guardian.plan({"namespace": kubernetes.namespace, "pod": name},
                         {"egress": "except-brokers", "broker_cidrs": ["10.20.0.0/16", "fd00:20::/64"]}, "q-twice")
    before = guardian.observe(plan)
    guardian.apply(plan)
    once_pod, once_policies = pod_snapshot(kubernetes, name), policies_snapshot(kubernetes)
    guardian.apply(plan)
    # Not even a no-op write: resourceVersions are unchanged.
    assert pod_snapshot(kubernetes, name) == once_pod
    assert policies_snapshot(kubernetes) == once_policies
    assert guardian.verify(plan)
    guardian.revert(plan, before)
    assert network_policy_name(plan) not in policies_snapshot(kubernetes)


@pytest.mark.parametrize("crash_after", ["network_policy", "label"])
def test_crash_between_steps_converges_on_the_next_apply(kubernetes, crash_after):
    name = make_pod(kubernetes)
    pod_before = pod_snapshot(kubernetes, name)
    first = kubernetes.guardian_client()
    crashed = PodActuator(first)
    plan = crashed.plan({"namespace": kubernetes.namespace, "pod": name}, {}, "q-crash")
    before = crashed.observe(plan)
    steps = dict(crashed.apply_steps(plan))
    steps[crash_after]()          # only one of the two writes happened, then the process died
    first.close()
    assert not crashed.verify(plan)

    second = kubernetes.guardian_client()  # a restarted guardian replays apply from the ledger
    restarted = PodActuator(second)
    try:
        restarted.apply(plan)
        assert restarted.verify(plan)
        key, value = quarantine_label(plan)
        labels = pod_snapshot(kubernetes, name)["metadata"]["labels"]
        assert labels == {**pod_before["metadata"]["labels"], key: value}
        ours = [n for n in policies_snapshot(kubernetes) if n.startswith("guardian-quarantine-")
                and policies_snapshot(kubernetes)[n]["metadata"]["annotations"]["guardian.kafka/pod"] == name]
        assert ours == [network_policy_name(plan)]  # exactly one policy, not two
        restarted.revert(plan, before)
        assert comparable(pod_snapshot(kubernetes, name)) == comparable(pod_before)
    finally:
        second.close()


def test_revert_after_a_crash_mid_apply_cleans_up(kubernetes, guardian):
    name = make_pod(kubernetes)
    pod_before, policies_before = pod_snapshot(kubernetes, name), policies_snapshot(kubernetes)
    plan = guardian.plan({"namespace": kubernetes.namespace, "pod": name}, {}, "q-partial")
    before = guardian.observe(plan)
    dict(guardian.apply_steps(plan))["network_policy"]()
    guardian.revert(plan, before)
    assert comparable(pod_snapshot(kubernetes, name)) == comparable(pod_before)
    assert policies_snapshot(kubernetes) == policies_before


def test_two_quarantines_of_one_pod_revert_independently(kubernetes, guardian):
    name = make_pod(kubernetes)
    target = {"namespace": kubernetes.namespace, "pod": name}
    a, b = guardian.plan(target, {}, "q-a"), guardian.plan(target, {}, "q-b")
    before_a = guardian.observe(a)
    guardian.apply(a)
    before_b = guardian.observe(b)
    guardian.apply(b)
    guardian.revert(a, before_a)
    assert guardian.verify(b) and not guardian.verify(a)
    guardian.revert(b, before_b)
    assert not guardian.verify(b)


def replicas(apps: AppsV1Api, kubernetes, deployment: str) -> int:
    # Scale.spec.replicas is omitempty: a Deployment at 0 reads back as None.
    return apps.read_namespaced_deployment_scale(deployment, kubernetes.namespace).spec.replicas or 0


def _deployment_with_pod(kubernetes, replicas: int) -> tuple[str, str]:
    """Deployment -> ReplicaSet -> Pod, as a controller manager would have made them (none runs here)."""
    apps = AppsV1Api(kubernetes.admin)
    name = f"dep-{next(_seq)}-{uuid.uuid4().hex[:6]}"
    template = {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/kafka-client:1"}]}}
    dep = apps.create_namespaced_deployment(kubernetes.namespace, {
        "metadata": {"name": name}, "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                                             "template": template}})
    rs = apps.create_namespaced_replica_set(kubernetes.namespace, {
        "metadata": {"name": f"{name}-rs", "labels": {"app": name}, "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": dep.metadata.uid, "controller": True}]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template}})
    pod = make_pod(kubernetes, owner_refs=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs.metadata.name,
                                            "uid": rs.metadata.uid, "controller": True}])
    return name, pod


def test_scale_owner_to_zero_records_and_restores_replicas(kubernetes, guardian):
    apps = AppsV1Api(kubernetes.admin)
    deployment, pod = _deployment_with_pod(kubernetes, replicas=3)
    plan = guardian.plan({"namespace": kubernetes.namespace, "pod": pod}, {"scale_owner": True}, "q-scale")
    before = guardian.observe(plan)
    assert before["owner"] == {"kind": "Deployment", "name": deployment, "replicas": 3}
    guardian.apply(plan)
    assert replicas(apps, kubernetes, deployment) == 0
    assert guardian.verify(plan)

    # A controller would now delete the pod; a replayed apply must still succeed and hold.
    CoreV1Api(kubernetes.admin).delete_namespaced_pod(pod, kubernetes.namespace, grace_period_seconds=0)
    guardian.apply(plan)
    assert guardian.verify(plan)

    guardian.revert(plan, before)
    assert replicas(apps, kubernetes, deployment) == 3
    assert network_policy_name(plan) not in policies_snapshot(kubernetes)


def test_revert_leaves_a_replica_count_someone_else_set(kubernetes, guardian):
    apps = AppsV1Api(kubernetes.admin)
    deployment, pod = _deployment_with_pod(kubernetes, replicas=2)
    plan = guardian.plan({"namespace": kubernetes.namespace, "pod": pod}, {"scale_owner": True}, "q-human")
    before = guardian.observe(plan)
    guardian.apply(plan)
    apps.patch_namespaced_deployment_scale(deployment, kubernetes.namespace, {"spec": {"replicas": 5}})
    guardian.revert(plan, before)
    assert replicas(apps, kubernetes, deployment) == 5


def test_a_replaced_pod_is_not_labelled(kubernetes, guardian):
    name = make_pod(kubernetes)
    old_uid = CoreV1Api(kubernetes.admin).read_namespaced_pod(name, kubernetes.namespace).metadata.uid
    CoreV1Api(kubernetes.admin).delete_namespaced_pod(name, kubernetes.namespace, grace_period_seconds=0)
    make_pod_named = tenant_pod(name, {"app": name}, "x", "User:tenant-a")
    CoreV1Api(kubernetes.admin).create_namespaced_pod(kubernetes.namespace, make_pod_named)
    plan = guardian.plan({"namespace": kubernetes.namespace, "pod": name, "uid": old_uid}, {}, "q-uid")
    before = guardian.observe(plan)
    assert before["pod_exists"] is False
    with pytest.raises(PermanentError, match="replaced"):
        guardian.apply(plan)
    key, _ = quarantine_label(plan)
    assert key not in (CoreV1Api(kubernetes.admin).read_namespaced_pod(name, kubernetes.namespace).metadata.labels or {})
    assert network_policy_name(plan) not in policies_snapshot(kubernetes)  # failed before its first write
    guardian.revert(plan, before)


def test_find_pods_maps_client_ids_and_principals_to_seeded_pods(kubernetes, guardian):
    ns = kubernetes.namespace
    assert [p.pod for p in guardian.find_pods([ns], client_id="orders-producer")] == ["orders-producer-0"]
    assert [p.pod for p in guardian.find_pods([ns], client_id="etl-batch-42")] == ["etl-batch-0"]  # glob
    assert [p.pod for p in guardian.find_pods([ns], principal="User:tenant-b")] == ["billing-consumer-0"]
    assert guardian.find_pods([ns], client_id="orders-producer", principal="User:tenant-b") == []
    found = guardian.find_pods([ns], client_id="billing-consumer")[0]
    seeded = CoreV1Api(kubernetes.admin).read_namespaced_pod("billing-consumer-0", ns)
    assert found.uid == seeded.metadata.uid
    assert seeded.metadata.annotations[CLIENT_ID_ANNOTATION] == "billing-consumer"
    assert seeded.metadata.annotations[PRINCIPAL_ANNOTATION] == "User:tenant-b"
