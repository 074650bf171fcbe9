"""One contract suite run against every actuator, on the real cluster.

The checks themselves are the testing kit's (``guardian.testing.check_*``), so
any actuator's tests can run them. For each actuator case: applying twice equals applying once; revert after
apply restores the original; verify is true after apply and false after
revert; reverting twice is harmless; revert before any apply changes nothing;
and a restarted guardian (a fresh actuator, the plan and the recorded state
read back from JSON as the ledger keeps them) finishes the job.

The cluster state is read by each case's own ``snapshot`` (an independent
client where possible), not only through the actuator under test.

The pod case needs a real kube-apiserver (the pod actuator's fixture from
tests/integration/kubernetes). It runs when those binaries are cached and is
skipped with the reason otherwise: building them takes 10-20 minutes, which
this suite does not start on its own.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest

from guardian.actuators.base import ActionPlan, Actuator
from guardian.testing import (check_apply_twice_equals_apply_once, check_restart_finishes_from_the_ledger,
                              check_revert_after_apply_restores, check_revert_before_apply_changes_nothing,
                              check_revert_twice_is_harmless, check_verify_follows_apply)


@dataclass
class Case:
    actuator: Actuator
    plan: ActionPlan
    snapshot: Callable[[], Any]            # the cluster state the action touches, read independently
    fresh_actuator: Callable[[], Actuator]  # what a restarted guardian would build


# -- quota -------------------------------------------------------------------------------------

def _quota_case(request: pytest.FixtureRequest, preset: dict[str, float]) -> Case:
    from guardian.actuators.quota import QuotaActuator, entity_of
    from guardian.clients.kafka_admin import ClientQuotaAdmin

    bootstrap = request.getfixturevalue("bootstrap")
    act = QuotaActuator.from_bootstrap(bootstrap)
    reader = ClientQuotaAdmin(bootstrap)
    request.addfinalizer(act.close)
    request.addfinalizer(reader.close)
    cid = f"contract-{uuid.uuid4().hex[:8]}"
    plan = act.plan({"principal": "User:tenant-a", "client_id": cid},
                    {"producer_byte_rate": 1 << 20, "request_percentage": 25}, quarantine_id=f"q-{cid}")
    entity = entity_of(plan)
    if preset:
        reader.alter(entity, preset)
        request.addfinalizer(lambda: reader.restore(entity, {}))
        _wait_for(lambda: reader.describe(entity) == preset, f"preset quotas on {entity}")

    def fresh() -> Actuator:
        a = QuotaActuator.from_bootstrap(bootstrap)
        request.addfinalizer(a.close)
        return a

    return Case(act, plan, lambda: reader.describe(entity), fresh)


# -- acl ---------------------------------------------------------------------------------------

def _acl_case(request: pytest.FixtureRequest) -> Case:
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                       ResourcePatternType, ResourceType)

    from guardian.actuators.acl import Acl, AclActuator

    bootstrap = request.getfixturevalue("bootstrap")
    topic = request.getfixturevalue("make_topic")("tenant-a")
    conf = {"bootstrap.servers": bootstrap}
    act = AclActuator.from_config(conf)
    reader = AdminClient(conf)
    plan = act.plan({"principal": "User:tenant-a", "topic": topic}, {"side": "both"}, quarantine_id="q-acl")

    def snapshot() -> list[Acl]:
        flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                               AclOperation.ANY, AclPermissionType.ANY)
        return sorted(Acl.from_binding(b) for b in reader.describe_acls(flt, request_timeout=30).result(timeout=30))

    return Case(act, plan, snapshot, lambda: AclActuator.from_config(conf))


# -- pod ---------------------------------------------------------------------------------------

def _pod_case(request: pytest.FixtureRequest) -> Case:
    from guardian_dev.kubernetes import DEFAULT_VERSION, binaries_present
    from guardian.settings import DevSettings

    if not binaries_present(DevSettings().home, DEFAULT_VERSION):
        pytest.skip("no kube-apiserver binaries cached (build them with `python -m guardian_dev.kubernetes build`, "
                    "10-20 min); the pod actuator's own suite in tests/integration/kubernetes builds them")
    from kubernetes.client import CoreV1Api, NetworkingV1Api

    from guardian.actuators.pod import PodActuator
    from guardian_dev.kubernetes import tenant_pod

    kube = request.getfixturevalue("kubernetes")
    name = f"contract-{uuid.uuid4().hex[:8]}"
    CoreV1Api(kube.admin).create_namespaced_pod(
        kube.namespace, tenant_pod(name, {"app": name, "team": "tenant-a"}, f"{name}-client", "User:tenant-a"))
    api = kube.guardian_client()
    request.addfinalizer(api.close)
    act = PodActuator(api)
    plan = act.plan({"namespace": kube.namespace, "pod": name}, {}, quarantine_id=f"q-{name}")

    def snapshot() -> dict[str, Any]:
        pod = CoreV1Api(kube.admin).read_namespaced_pod(name, kube.namespace)
        policies = NetworkingV1Api(kube.admin).list_namespaced_network_policy(kube.namespace).items
        return {"labels": pod.metadata.labels, "annotations": pod.metadata.annotations,
                "policies": sorted((p.metadata.name, json.dumps(kube.admin.sanitize_for_serialization(p.spec),
                                                                sort_keys=True)) for p in policies)}

    def fresh() -> Actuator:
        client = kube.guardian_client()
        request.addfinalizer(client.close)
        return PodActuator(client)

    return Case(act, plan, snapshot, fresh)


CASES = {
    "quota": lambda r: _quota_case(r, {}),
    "quota-over-existing": lambda r: _quota_case(r, {"producer_byte_rate": 5e6, "consumer_byte_rate": 7e6}),
    "acl": _acl_case,
    "pod": _pod_case,
}


@pytest.fixture(params=[pytest.param(k, marks=[pytest.mark.kubernetes] if k == "pod" else []) for k in CASES])
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    c = CASES[request.param](request)
    original = c.actuator.observe(c.plan)
    yield c
    c.actuator.revert(c.plan, original)  # leave the cluster as found even when a test failed half-way


def _wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not visible within {timeout_s:.0f}s")
        time.sleep(0.05)


# -- the contract: the checks live in the testing kit (guardian/testing.py) --------------------

def test_apply_twice_equals_apply_once(case: Case):
    check_apply_twice_equals_apply_once(case.actuator, case.plan, case.snapshot)


def test_revert_after_apply_restores_the_original(case: Case):
    check_revert_after_apply_restores(case.actuator, case.plan, case.snapshot)


def test_verify_is_true_after_apply_and_false_after_revert(case: Case):
    check_verify_follows_apply(case.actuator, case.plan, case.snapshot)


def test_revert_twice_is_harmless(case: Case):
    check_revert_twice_is_harmless(case.actuator, case.plan, case.snapshot)


def test_revert_before_any_apply_changes_nothing(case: Case):
    check_revert_before_apply_changes_nothing(case.actuator, case.plan, case.snapshot)


def test_a_restarted_guardian_finishes_from_the_ledger(case: Case):
    check_restart_finishes_from_the_ledger(case.actuator, case.plan, case.snapshot, case.fresh_actuator)
