"""The chart's RBAC, bound to the guardian's real service account: enough for isolation, nothing more."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes.client import CoreV1Api, NetworkingV1Api, RbacAuthorizationV1Api
from kubernetes.client.exceptions import ApiException

from guardian.actuators.pod import PodActuator
from guardian_dev.kubernetes import GUARDIAN_USER, ISOLATION_ROLE, RULES_FILE, tenant_pod
from guardian.errors import PermanentError, TemporaryError

pytestmark = [pytest.mark.integration, pytest.mark.kubernetes]


@pytest.fixture
def sa(kubernetes):
    api = kubernetes.guardian_client()
    yield api
    api.close()


def refused(call) -> ApiException:
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == 403, info.value.body
    return info.value


def test_the_bound_role_is_exactly_the_charts_rules_file(kubernetes):
    role = RbacAuthorizationV1Api(kubernetes.admin).read_namespaced_role(ISOLATION_ROLE, kubernetes.namespace)
    stored = kubernetes.admin.sanitize_for_serialization(role.rules)
    assert stored == yaml.safe_load(RULES_FILE.read_text())


def test_the_guardian_authenticates_as_its_service_account(sa):
    from kubernetes.client import AuthenticationV1Api

    review = AuthenticationV1Api(sa).create_self_subject_review({})
    assert review.status.user_info.username == GUARDIAN_USER


def test_the_guardian_may_not_delete_or_create_pods(kubernetes, sa):
    core = CoreV1Api(sa)
    err = refused(lambda: core.delete_namespaced_pod("orders-producer-0", kubernetes.namespace))
    assert 'cannot delete resource "pods"' in json.loads(err.body)["message"]
    refused(lambda: core.create_namespaced_pod(kubernetes.namespace, tenant_pod("intruder", {}, "x", "User:x")))
    refused(lambda: core.delete_collection_namespaced_pod(kubernetes.namespace))
    # and the pod is still there
    assert CoreV1Api(kubernetes.admin).read_namespaced_pod("orders-producer-0", kubernetes.namespace).metadata.uid


def test_the_guardian_may_not_touch_another_namespace(kubernetes, sa):
    core, net = CoreV1Api(sa), NetworkingV1Api(sa)
    other = kubernetes.other_namespace
    refused(lambda: core.list_namespaced_pod(other))
    refused(lambda: core.patch_namespaced_pod("reports-0", other, {"metadata": {"labels": {"x": "y"}}}))
    refused(lambda: net.create_namespaced_network_policy(other, {
        "metadata": {"name": "guardian-quarantine-x"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}))
    refused(lambda: core.list_pod_for_all_namespaces())
    refused(lambda: core.delete_namespace(other))


def test_the_guardian_may_not_read_secrets_or_change_rbac(kubernetes, sa):
    refused(lambda: CoreV1Api(sa).list_namespaced_secret(kubernetes.namespace))
    refused(lambda: RbacAuthorizationV1Api(sa).patch_namespaced_role(
        ISOLATION_ROLE, kubernetes.namespace, {"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}))


def test_the_actuator_turns_a_refusal_into_a_permanent_error(kubernetes, sa):
    actuator = PodActuator(sa)
    plan = actuator.plan({"namespace": kubernetes.other_namespace, "pod": "reports-0"}, {}, "q-other")
    with pytest.raises(PermanentError, match="403.*RBAC"):
        actuator.apply(plan)
    with pytest.raises(PermanentError, match="403"):
        actuator.find_pods([kubernetes.other_namespace], client_id="reports")


def test_an_unreachable_api_server_is_a_temporary_error():
    from guardian_dev.procs import free_port
    from kubernetes.client import ApiClient, Configuration

    cfg = Configuration()
    cfg.host = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    cfg.verify_ssl = False
    cfg.retries = 0
    api = ApiClient(cfg)
    actuator = PodActuator(api, request_timeout_s=2)
    plan = actuator.plan({"namespace": "tenants", "pod": "orders-producer-0"}, {})
    try:
        with pytest.raises(TemporaryError, match="unreachable"):
            actuator.apply(plan)
    finally:
        api.close()
