"""Pure parts of the pod actuator: plans, names, the policy manifest, the client-id mapping, error mapping."""

from __future__ import annotations

import re

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from guardian.actuators.pod import (
    CLIENT_ID_ANNOTATION,
    PRINCIPAL_ANNOTATION,
    PodActuator,
    api_error,
    egress_policies_selecting,
    network_policy_manifest,
    network_policy_name,
    pod_matches,
    quarantine_label,
    selector_matches,
)
from guardian.errors import PermanentError, TemporaryError

# Kubernetes' own grammar for label keys and values (qualified name with a DNS prefix).
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@pytest.fixture
def actuator():
    # An ApiClient opens no connection until a request is made; plan() makes none.
    api = ApiClient()
    yield PodActuator(api)
    api.close()


TARGET = {"namespace": "tenants", "pod": "orders-producer-0"}


def test_plan_fills_defaults_and_keeps_only_identity_keys(actuator):
    plan = actuator.plan({**TARGET, "client_id": "orders", "extra": "x"}, {}, quarantine_id="q-1")
    assert plan.kind == "pod"
    assert plan.target == {**TARGET, "client_id": "orders"}
    assert plan.params == {"egress": "deny-all", "broker_cidrs": [], "scale_owner": False}
    assert plan.idempotency_key.startswith("pod:")


def test_same_request_same_key_and_different_request_different_key(actuator):
    a = actuator.plan(dict(reversed(list(TARGET.items()))), {"broker_cidrs": ["10.0.0.7/24", "10.1.0.0/16"]}, "q")
    b = actuator.plan(TARGET, {"broker_cidrs": ["10.1.0.0/16", "10.0.0.0/24"]}, "q")
    assert a.params["broker_cidrs"] == ["10.0.0.0/24", "10.1.0.0/16"]  # normalised, sorted
    assert a.idempotency_key == b.idempotency_key
    assert actuator.plan(TARGET, {"scale_owner": True}, "q").idempotency_key != a.idempotency_key
    assert actuator.plan(TARGET, {}, "q2").idempotency_key != actuator.plan(TARGET, {}, "q").idempotency_key


@pytest.mark.parametrize("target, params, needle", [
    ({"pod": "p"}, {}, "namespace"),
    ({"namespace": "Tenants", "pod": "p"}, {}, "namespace"),
    ({"namespace": "tenants", "pod": "P_0"}, {}, "pod name"),
    (TARGET, {"egress": "block-brokers"}, "egress must be one of"),
    (TARGET, {"egress": "except-brokers"}, "needs broker_cidrs"),
    (TARGET, {"broker_cidrs": ["10.0.0.300/32"]}, "bad broker_cidrs"),
    (TARGET, {"scale": True}, "unknown parameter"),
])
def test_plan_rejects_bad_input_permanently(actuator, target, params, needle):
    with pytest.raises(PermanentError, match=needle):
        actuator.plan(target, params)


@pytest.mark.parametrize("quarantine_id, value", [
    ("", "true"),
    ("q-20260101-abc", "q-20260101-abc"),
    ("User:tenant-a/orders producer", "User-tenant-a-orders-producer"),
    ("-x" * 40, "x-" * 30 + "x"),  # cut to 63, then trimmed to an alphanumeric end
])
def test_label_is_a_valid_kubernetes_label(actuator, quarantine_id, value):
    plan = actuator.plan(TARGET, {}, quarantine_id)
    key, got = quarantine_label(plan)
    prefix, name = key.split("/")
    assert prefix == "guardian.kafka" and LABEL_NAME.match(name)
    assert got == value and LABEL_NAME.match(got) and len(got) <= 63
    assert DNS_SUBDOMAIN.match(network_policy_name(plan))


def test_two_plans_on_one_pod_use_different_labels_and_policies(actuator):
    a, b = actuator.plan(TARGET, {}, "q1"), actuator.plan(TARGET, {}, "q2")
    assert quarantine_label(a)[0] != quarantine_label(b)[0]
    assert network_policy_name(a) != network_policy_name(b)


def test_deny_all_policy_selects_the_label_and_allows_only_dns(actuator):
    plan = actuator.plan(TARGET, {}, "q1")
    np = network_policy_manifest(plan)
    key, value = quarantine_label(plan)
    assert np["metadata"]["namespace"] == "tenants"
    assert np["spec"]["podSelector"] == {"matchLabels": {key: value}}
    assert np["spec"]["policyTypes"] == ["Egress"]
    assert np["spec"]["egress"] == [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]
    assert np["metadata"]["annotations"]["guardian.kafka/idempotency-key"] == plan.idempotency_key


def test_except_brokers_policy_excludes_broker_cidrs_per_family(actuator):
    plan = actuator.plan(TARGET, {"egress": "except-brokers", "broker_cidrs": ["10.2.0.0/16", "fd00::/64"]})
    rules = network_policy_manifest(plan)["spec"]["egress"]
    assert rules[1] == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.2.0.0/16"]}},
                               {"ipBlock": {"cidr": "::/0", "except": ["fd00::/64"]}}]}


def test_owner_is_recorded_on_the_policy(actuator):
    np = network_policy_manifest(actuator.plan(TARGET, {"scale_owner": True}), owner="Deployment/orders")
    assert np["metadata"]["annotations"]["guardian.kafka/scaled-owner"] == "Deployment/orders"


ANN = {CLIENT_ID_ANNOTATION: "orders-producer, etl-*", PRINCIPAL_ANNOTATION: "User:tenant-a"}


@pytest.mark.parametrize("annotations, client_id, principal, expected", [
    (ANN, "orders-producer", None, True),
    (ANN, "etl-batch-7", None, True),              # glob pattern
    (ANN, "orders-producer-2", None, False),       # exact ids are exact
    (ANN, None, "User:tenant-a", True),
    (ANN, None, "User:tenant-b", False),
    (ANN, "orders-producer", "User:tenant-b", False),  # every declared identity must agree
    ({PRINCIPAL_ANNOTATION: "User:tenant-a"}, "anything", "User:tenant-a", True),  # id not declared
    ({PRINCIPAL_ANNOTATION: "User:tenant-a"}, "anything", None, False),  # nothing compared
    ({}, "orders-producer", "User:tenant-a", False),
    (None, "orders-producer", None, False),
])
def test_pod_matches(annotations, client_id, principal, expected):
    assert pod_matches(annotations, client_id, principal) is expected


def test_selector_matches_label_selector_semantics():
    labels = {"app": "orders", "team": "a"}
    assert selector_matches({}, labels)
    assert selector_matches({"matchLabels": {"app": "orders"}}, labels)
    assert not selector_matches({"matchLabels": {"app": "billing"}}, labels)
    assert selector_matches({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}, labels)
    assert not selector_matches({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, labels)
    assert selector_matches({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, labels)
    assert not selector_matches({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, labels)


def test_egress_policies_selecting_lists_only_tenant_policies_that_allow_egress():
    labels = {"app": "orders"}
    policies = [
        {"metadata": {"name": "allow-all-egress"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}},
        {"metadata": {"name": "deny-egress"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}},
        {"metadata": {"name": "ingress-only"}, "spec": {"podSelector": {}, "ingress": [{}]}},
        {"metadata": {"name": "other-app"}, "spec": {"podSelector": {"matchLabels": {"app": "x"}}, "egress": [{}],
                                                     "policyTypes": ["Egress"]}},
        {"metadata": {"name": "implicit-types"}, "spec": {"podSelector": {"matchLabels": labels}, "egress": [{}]}},
        {"metadata": {"name": "guardian-quarantine-abc"}, "spec": {"podSelector": {}, "egress": [{}]}},
    ]
    assert egress_policies_selecting(labels, policies) == ["allow-all-egress", "implicit-types"]


@pytest.mark.parametrize("status, kind", [
    (401, PermanentError), (403, PermanentError), (404, PermanentError), (422, PermanentError),
    (409, TemporaryError), (429, TemporaryError), (500, TemporaryError), (503, TemporaryError),
])
def test_api_errors_map_to_retry_or_not(status, kind):
    err = api_error(ApiException(status=status, reason="r"), "doing x")
    assert type(err) is kind
    assert f"doing x: Kubernetes API answered {status}" in str(err)


def test_retry_after_sets_the_delay():
    exc = ApiException(status=429, reason="Too Many Requests")
    exc.headers = {"Retry-After": "7"}
    assert api_error(exc, "x").delay == 7.0
