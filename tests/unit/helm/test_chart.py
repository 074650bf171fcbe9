"""The Helm chart renders, lints and validates for every values variant; its
schema rejects bad values; its RBAC grants only what the enabled actuators
need; its policies are the ones the guardian's own loader accepts."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from guardian.policy.config import default_policy_path, load_policy, parse_policy
from guardian.settings import GuardianSettings

from .conftest import CHART, NAMESPACE, RELEASE, ROOT, VARIANTS, of_kind, values_args, values_of

# The chart's minimum (Chart.yaml kubeVersion) and the API server the pod
# actuator is tested against (guardian_dev/kubernetes.py).
KUBE_VERSIONS = ["1.25.0", "1.34.0"]
# Prometheus Operator CRDs: kubernetes-validate ships only the built-in API
# schemas, so these are checked structurally in test_monitoring_resources.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
GUARDIAN_COMPONENTS = ("workers", "engine", "api")


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_passes(helm, variant):
    proc = helm.run("lint", str(CHART), "--strict", "--namespace", NAMESPACE, *values_args(variant))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_validates_against_kubernetes_schemas(render, variant):
    docs = render(variant)
    checked = 0
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version}: {exc}")
        checked += 1
    # Three Deployments, their Services and the policy ConfigMap at the very least.
    assert checked >= 7
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount", "PodDisruptionBudget"} <= kinds


@pytest.mark.parametrize("variant", VARIANTS)
def test_components_scale_probe_and_run_locked_down(render, variant):
    values = values_of(variant)
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d
                   for d in of_kind(render(variant), "Deployment")}
    assert set(deployments) == set(GUARDIAN_COMPONENTS)
    for component, dep in deployments.items():
        assert dep["spec"]["replicas"] == values[component]["replicas"]
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]
        port_names = {p["name"] for p in container["ports"]}
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["port"] in port_names
        # The read-only root needs a writable /tmp.
        assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
        # Only `guardian run` pods (any may hold the engine's lease) talk to the
        # Kubernetes API, and only for pod isolation; the API's engine has no actuators.
        expect_token = component != "api" and values["actuators"]["podIsolation"]["enabled"]
        assert pod["automountServiceAccountToken"] is expect_token
    for sts in of_kind(render(variant), "StatefulSet"):
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert sts["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def _env(container: dict) -> dict[str, str]:
    """The container's environment as the process would see it: secrets stand
    in as placeholders, $(VAR) references expanded like the kubelet does."""
    env: dict[str, str] = {}
    for var in container["env"]:
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            value = f"from-secret-{ref['name']}-{ref['key']}"
        else:
            value = var["value"]
        for name, prior in env.items():
            value = value.replace(f"$({name})", prior)
        env[var["name"]] = value
    return env


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_environment_is_accepted_by_guardian_settings(render, variant, monkeypatch):
    """Every GUARDIAN_* variable the chart sets names a real setting (an unknown
    section would be ignored silently) and GuardianSettings accepts its value."""
    values = values_of(variant)
    for dep in of_kind(render(variant), "Deployment"):
        env = _env(dep["spec"]["template"]["spec"]["containers"][0])
        for name in env:
            if not name.startswith("GUARDIAN_"):
                continue
            section, _, key = name.removeprefix("GUARDIAN_").lower().partition("__")
            assert section in GuardianSettings.model_fields, f"{name}: no settings section {section!r}"
            if key:
                annotation = GuardianSettings.model_fields[section].annotation
                assert key in annotation.model_fields, f"{name}: no key {key!r} in section {section!r}"
        for name in [n for n in os.environ if n.startswith("GUARDIAN_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = GuardianSettings()
        assert settings.kafka.bootstrap_servers == values["kafka"]["bootstrapServers"]
        assert settings.kafka.security_protocol == values["kafka"]["securityProtocol"]
        assert settings.topics.metrics == values["topics"]["metrics"]
        assert settings.topics.retention_ms == values["topics"]["retentionMs"]
        assert settings.redis.url.get_secret_value().startswith(("redis://", "rediss://", "from-secret-"))
        assert str(settings.policy_file) == "/etc/guardian/policies/policies.yaml"
        component = dep["metadata"]["labels"]["app.kubernetes.io/component"]
        if component == "api":
            assert (settings.api.host, settings.api.port) == ("0.0.0.0", values["api"]["port"])
        else:
            assert settings.ingest.metrics_port == values["metricsPort"]
        if values["kafka"]["sasl"]["mechanism"]:
            assert settings.kafka.client_config()["sasl.password"].startswith("from-secret-")
        if values["kafka"]["tls"]["enabled"]:
            assert settings.kafka.ssl_ca_location.startswith("/etc/guardian/kafka-tls/")


# ------------------------------------------------------------------ policies

def _policy_text(docs: list[dict]) -> str:
    (cm,) = [d for d in of_kind(docs, "ConfigMap") if "policies.yaml" in d.get("data", {})]
    return cm["data"]["policies.yaml"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_configmap_policies_load_with_the_guardian_loader(render, variant):
    policy = parse_policy(_policy_text(render(variant)), source=f"ConfigMap ({variant})")
    values = values_of(variant)
    assert [p.name for p in policy.policies] == [p["name"] for p in values["policies"]["policies"]]
    assert policy.global_.dry_run is values["policies"]["global"]["dry_run"]
    actions = {r.action for p in policy.policies for r in p.ladder}
    if not values["actuators"]["podIsolation"]["enabled"]:
        assert "isolate_pod" not in actions


def test_default_chart_policies_are_the_shipped_default_policy(render):
    chart = parse_policy(_policy_text(render("default")), source="chart default")
    assert chart == load_policy(default_policy_path()), (
        "helm/guardian/values.yaml `policies` differs from configs/policies/default.yaml: copy it over")


def test_dry_run_variant_is_dry_run(render):
    policy = parse_policy(_policy_text(render("dry-run-values")), source="dry-run")
    assert policy.global_.dry_run is True


def test_values_schema_policy_part_matches_the_policy_models():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "helm_policy_schema.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ RBAC

# What each actuator may need in Kubernetes, as (apiGroup, resource, verb).
# The rendered rules must stay inside the union for the enabled actuators.
POD_ISOLATION = ({("", "pods", v) for v in ("get", "list", "watch", "patch")}
                 | {("networking.k8s.io", "networkpolicies", v)
                    for v in ("get", "list", "watch", "create", "patch", "delete")})
SCALE_OWNER = ({("apps", r, "get") for r in ("deployments", "statefulsets", "replicasets")}
               | {("apps", f"{r}/scale", v) for r in ("deployments", "statefulsets", "replicasets")
                  for v in ("get", "patch", "update")})


def _grants(rules: list[dict]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in rules:
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_rbac_grants_only_what_enabled_actuators_need(render, variant):
    docs = render(variant)
    iso = values_of(variant)["actuators"]["podIsolation"]
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")
    roles, bindings = of_kind(docs, "Role"), of_kind(docs, "RoleBinding")
    if not iso["enabled"]:
        assert roles == [] and bindings == []
        return
    namespaces = iso["namespaces"] or [NAMESPACE]
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(namespaces)
    allowed = POD_ISOLATION | (SCALE_OWNER if iso["scaleOwner"] else set())
    for role in roles:
        grants = _grants(role["rules"])
        assert not any("*" in g for g in grants), f"wildcard in {role['metadata']}"
        beyond = grants - allowed
        assert not beyond, f"Role in {role['metadata']['namespace']} grants more than needed: {sorted(beyond)}"
        # What pod isolation cannot work without: label pods, create and remove the policy.
        assert {("", "pods", "patch"), ("networking.k8s.io", "networkpolicies", "create"),
                ("networking.k8s.io", "networkpolicies", "delete")} <= grants
        has_scale = any(r.endswith("/scale") for _, r, _ in grants)
        assert has_scale is iso["scaleOwner"]
    sa = of_kind(docs, "ServiceAccount")[0]["metadata"]["name"]
    for binding in bindings:
        (role,) = [r for r in roles if r["metadata"]["namespace"] == binding["metadata"]["namespace"]]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


def test_rbac_rules_come_from_the_shared_rules_file(render):
    """The chart's Role is the Kubernetes engineer's rules file, minus scaling when off."""
    shared = yaml.safe_load((CHART / "files" / "pod-isolation-rules.yaml").read_text())
    full = of_kind(render("full-values"), "Role")[0]["rules"]
    assert full == shared
    default = of_kind(render("default"), "Role")[0]["rules"]
    assert default == [r for r in shared if "apps" not in r["apiGroups"]]


# ------------------------------------------------------------------ monitoring

def test_monitoring_resources(render):
    docs = render("full-values")
    (sm,) = of_kind(docs, "ServiceMonitor")
    ports = {e["port"] for e in sm["spec"]["endpoints"]}
    services = of_kind(docs, "Service")
    scraped = [s for s in services
               if s["metadata"]["labels"].get("app.kubernetes.io/component") in GUARDIAN_COMPONENTS]
    # Every guardian Service exposes exactly one port the ServiceMonitor scrapes.
    for svc in scraped:
        assert len({p["name"] for p in svc["spec"]["ports"]} & ports) == 1, svc["metadata"]["name"]
    (rule,) = of_kind(docs, "PrometheusRule")
    expected = []
    for path in sorted((CHART / "files" / "alerts").glob("*.yaml")):
        expected += yaml.safe_load(path.read_text())["groups"]
    assert rule["spec"]["groups"] == expected and expected
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            assert ("alert" in r) != ("record" in r) and r["expr"]
    dashboards = sorted(p.name for p in (CHART / "files" / "dashboards").glob("*.json"))
    cms = [d for d in of_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]]
    if dashboards:
        (cm,) = cms
        assert sorted(cm["data"]) == dashboards
        for name in dashboards:
            json.loads(cm["data"][name])
    else:
        assert cms == []
    # Off by default: a cluster without the Prometheus Operator CRDs installs cleanly.
    assert not ({d["kind"] for d in render("default")} & CRD_KINDS)


# ------------------------------------------------------------------ rejected values

@pytest.mark.parametrize(("override", "message"), [
    ({"workers": {"replicas": "two"}}, "/workers/replicas"),
    ({"kafka": {"securityProtocol": "SASL_TLS"}}, "/kafka/securityProtocol"),
    ({"replicaCount": 3}, "replicaCount"),
    ({"redis": {"external": {"url": "http://redis:6379"}}}, "/redis/external/url"),
    ({"api": {"service": {"type": "Ingress"}}}, "/api/service/type"),
    ({"policies": {"global": {"max_throttled_traffic_share": 1.5}}}, "/policies/global/max_throttled_traffic_share"),
    ({"policies": {"policies": [{"name": "p", "ladder": [{"action": "throttle", "absolute": 1, "ttl": 5}]}]}},
     "/policies/policies/0/ladder/0"),
])
def test_schema_rejects_bad_values(helm, tmp_path, override, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(override))
    proc = helm.template("-f", str(bad))
    assert proc.returncode != 0, f"accepted: {override}"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(("override", "message"), [
    ({"actuators": {"podIsolation": {"enabled": False}}},
     "is isolate_pod but actuators.podIsolation.enabled is false"),
    ({"kafka": {"securityProtocol": "SASL_SSL"}}, "set kafka.sasl.mechanism and kafka.sasl.existingSecret"),
    ({"kafka": {"securityProtocol": "SASL_SSL", "sasl": {"mechanism": "PLAIN"}}},
     "kafka.sasl.existingSecret is required"),
    ({"redis": {"external": {"url": "redis://r:6379/0"}}}, "choose one ledger"),
    ({"redis": {"internal": {"enabled": False}}}, "no ledger configured"),
    ({"kafka": {"bootstrapServers": ""}}, "kafka.bootstrapServers is required"),
])
def test_inconsistent_values_fail_with_a_clear_message(helm, tmp_path, override, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(override))
    proc = helm.template("-f", str(bad))
    assert proc.returncode != 0, f"accepted: {override}"
    assert message in proc.stderr, proc.stderr


def test_every_value_is_described_by_the_schema():
    """values.yaml and values.schema.json agree: every key has a schema entry with a description."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value, node, path):
        assert node.get("description") or not path, f"{path}: no description in values.schema.json"
        if path == ".policies":
            return  # generated from guardian/policy/config.py, documented in configs/policies/default.yaml
        if isinstance(value, dict) and "properties" in node:
            for k, v in value.items():
                assert k in node["properties"], f"{path}.{k}: not in values.schema.json"
                walk(v, node["properties"][k], f"{path}.{k}")

    walk(values, schema, "")


# ------------------------------------------------------------------ commands

@functools.cache
def _guardian_cli():
    import click
    import typer.main

    from guardian.app import cli

    cli._register()
    group = typer.main.get_command(cli.app)
    return group, click.Context(group, info_name="guardian")


def _parse_guardian_args(args: list[str]) -> tuple[str, dict]:
    """Parse ``guardian <args>`` with the real CLI without running it: (command, its params)."""
    group, ctx = _guardian_cli()
    name, *rest = args
    command = group.get_command(ctx, name)
    assert command is not None, f"`guardian {name}` is not a command"
    return name, command.make_context(name, rest, parent=ctx).params


@pytest.mark.parametrize("variant", VARIANTS)
def test_container_args_are_real_guardian_commands(render, variant):
    for dep in of_kind(render(variant), "Deployment"):
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        component = dep["metadata"]["labels"]["app.kubernetes.io/component"]
        name, _params = _parse_guardian_args(container["args"])
        assert name == ("api" if component == "api" else "run"), container["args"]


def test_collectors_run_in_exactly_one_pod_by_default(render):
    """Every `guardian run` process starts the collectors it is given; two would double every sample."""
    from guardian.settings import IngestSettings

    pods_with_collectors = 0
    for dep in of_kind(render("default"), "Deployment"):
        name, params = _parse_guardian_args(dep["spec"]["template"]["spec"]["containers"][0]["args"])
        if name != "run":
            continue
        collectors = params["collectors"]
        runs = IngestSettings().collectors if collectors is None else [c for c in collectors.split(",") if c]
        if runs:
            pods_with_collectors += dep["spec"]["replicas"]
    assert pods_with_collectors == 1
