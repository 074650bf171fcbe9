"""Pod isolation: label a tenant's pod and cut its egress with a NetworkPolicy.

What the guardian adds, and all it removes on revert:

* one label on the pod, its key unique to the plan:
  ``guardian.kafka/quarantine-<token>: <quarantine id or "true">``;
* one NetworkPolicy ``guardian-quarantine-<token>`` in the pod's namespace
  selecting that label, with ``policyTypes: [Egress]`` and, by default, no
  egress allowed but DNS (``egress: deny-all``). ``egress: except-brokers``
  instead allows every address except ``broker_cidrs`` (see
  docs/kubernetes.md for why deny-all is the default);
* optionally (``scale_owner: true``) the pod's controller (Deployment,
  StatefulSet or bare ReplicaSet) scaled to zero; ``observe`` records the
  previous replica count and revert restores it.

Order of ``apply``: NetworkPolicy, then label, then scale. Until the label
lands the policy selects nothing, so isolation starts at one write; a crash
anywhere leaves a state that ``apply`` converges from and ``revert`` cleans.

Which pod runs which Kafka client: tenants annotate their pods with
``guardian.kafka/client-id`` (comma-separated ids or glob patterns) and/or
``guardian.kafka/principal`` (e.g. ``User:tenant-a``); ``find_pods`` reads
them. Everything from ``plan`` down to ``egress_policies_selecting`` is pure.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from guardian.actuators.base import ActionPlan, Actuator
from guardian.errors import PermanentError, TemporaryError

CLIENT_ID_ANNOTATION = "guardian.kafka/client-id"
PRINCIPAL_ANNOTATION = "guardian.kafka/principal"
QUARANTINE_LABEL_PREFIX = "guardian.kafka/quarantine-"
POLICY_NAME_PREFIX = "guardian-quarantine-"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kafka-workload-guardian"}
PLAN_ANNOTATION = "guardian.kafka/idempotency-key"
QUARANTINE_ANNOTATION = "guardian.kafka/quarantine-id"
POD_ANNOTATION = "guardian.kafka/pod"
OWNER_ANNOTATION = "guardian.kafka/scaled-owner"   # "<Kind>/<name>", read back if the pod is gone

EGRESS_MODES = ("deny-all", "except-brokers")
DEFAULT_PARAMS: dict[str, Any] = {"egress": "deny-all", "broker_cidrs": [], "scale_owner": False}
SCALABLE_KINDS = ("Deployment", "StatefulSet", "ReplicaSet")

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9._-]")


# --------------------------------------------------------------------------- pure

def plan_token(plan: ActionPlan) -> str:
    """The 24 hex digits of the plan's idempotency key: names the label and the policy."""
    return plan.idempotency_key.split(":", 1)[1]


def quarantine_label(plan: ActionPlan) -> tuple[str, str]:
    """(key, value) of the label the plan puts on the pod. One key per plan, so two
    quarantines of one pod never remove each other's label."""
    value = _LABEL_VALUE_BAD.sub("-", plan.quarantine_id)[:63].strip("-_.")
    return QUARANTINE_LABEL_PREFIX + plan_token(plan), value or "true"


def network_policy_name(plan: ActionPlan) -> str:
    return POLICY_NAME_PREFIX + plan_token(plan)


def network_policy_manifest(plan: ActionPlan, owner: str | None = None) -> dict[str, Any]:
    """The NetworkPolicy that cuts the labelled pod's egress (plain dict, API field names)."""
    key, value = quarantine_label(plan)
    dns_ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    egress: list[dict[str, Any]] = [{"ports": dns_ports}]  # DNS to anywhere; nothing else
    if plan.params["egress"] == "except-brokers":
        v4 = [c for c in plan.params["broker_cidrs"] if ipaddress.ip_network(c).version == 4]
        v6 = [c for c in plan.params["broker_cidrs"] if ipaddress.ip_network(c).version == 6]
        egress.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": v4}} if v4 else {"ipBlock": {"cidr": "0.0.0.0/0"}},
                              {"ipBlock": {"cidr": "::/0", "except": v6}} if v6 else {"ipBlock": {"cidr": "::/0"}}]})
    annotations = {PLAN_ANNOTATION: plan.idempotency_key, POD_ANNOTATION: plan.target["pod"]}
    if plan.quarantine_id:
        annotations[QUARANTINE_ANNOTATION] = plan.quarantine_id
    if owner:
        annotations[OWNER_ANNOTATION] = owner
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": network_policy_name(plan), "namespace": plan.target["namespace"],
                         "labels": dict(MANAGED_BY), "annotations": annotations},
            "spec": {"podSelector": {"matchLabels": {key: value}},
                     "policyTypes": ["Egress"], "egress": egress}}


def pod_identity(annotations: dict[str, str] | None) -> tuple[list[str], str | None]:
    """(client-id patterns, principal) a pod declares through its annotations."""
    annotations = annotations or {}
    ids = [p.strip() for p in annotations.get(CLIENT_ID_ANNOTATION, "").split(",") if p.strip()]
    principal = annotations.get(PRINCIPAL_ANNOTATION, "").strip() or None
    return ids, principal


def pod_matches(annotations: dict[str, str] | None, client_id: str | None = None,
                principal: str | None = None) -> bool:
    """Does a pod with these annotations run this workload?

    Every identity the pod declares and the query names must agree (client-id
    by exact id or glob pattern, principal exactly), and at least one must
    have been compared: an unannotated pod never matches.
    """
    ids, pod_principal = pod_identity(annotations)
    compared = 0
    if client_id is not None and ids:
        if not any(fnmatch.fnmatchcase(client_id, pattern) for pattern in ids):
            return False
        compared += 1
    if principal is not None and pod_principal is not None:
        if principal != pod_principal:
            return False
        compared += 1
    return compared > 0


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels and matchExpressions); an empty selector matches all."""
    selector, labels = selector or {}, labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def egress_policies_selecting(pod_labels: dict[str, str], policies: list[dict[str, Any]]) -> list[str]:
    """Names of NetworkPolicies (not the guardian's) that select the pod and allow some egress.

    NetworkPolicies only add allowances, so any of these that reaches the
    brokers defeats the quarantine policy: ``observe`` reports them.
    """
    names = []
    for np in policies:
        meta, spec = np.get("metadata") or {}, np.get("spec") or {}
        if (meta.get("name") or "").startswith(POLICY_NAME_PREFIX):
            continue
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
        if "Egress" in types and spec.get("egress") and selector_matches(spec.get("podSelector"), pod_labels):
            names.append(meta.get("name", ""))
    return sorted(names)


def _normalise_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise PermanentError(f"pod isolation: unknown parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(DEFAULT_PARAMS)}")
    out = {**DEFAULT_PARAMS, **params}
    if out["egress"] not in EGRESS_MODES:
        raise PermanentError(f"pod isolation: egress must be one of {EGRESS_MODES}, not {out['egress']!r}")
    try:
        cidrs = sorted({str(ipaddress.ip_network(c, strict=False)) for c in out["broker_cidrs"]})
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"pod isolation: bad broker_cidrs {out['broker_cidrs']!r}: {exc}") from exc
    if out["egress"] == "except-brokers" and not cidrs:
        raise PermanentError("pod isolation: egress 'except-brokers' needs broker_cidrs")
    return {"egress": out["egress"], "broker_cidrs": cidrs, "scale_owner": bool(out["scale_owner"])}


# --------------------------------------------------------------------------- errors

@contextmanager
def _kube_errors(what: str) -> Iterator[None]:
    """Convert kubernetes-client and transport errors into the guardian's error tree."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    try:
        yield
    except ApiException as exc:
        raise api_error(exc, what) from exc
    except (Urllib3Error, OSError) as exc:
        raise TemporaryError(f"{what}: Kubernetes API unreachable: {exc}", delay=2.0) from exc


def api_error(exc: Any, what: str) -> PermanentError | TemporaryError:
    """Map an ``ApiException`` by HTTP status: 409/429/5xx/no status retry, the rest do not."""
    status = getattr(exc, "status", None) or 0
    message = f"{what}: Kubernetes API answered {status} {getattr(exc, 'reason', '')}".rstrip()
    if status in (401, 403):
        return PermanentError(f"{message} (the guardian's RBAC does not allow this)")
    if status == 429 or status >= 500 or status == 0:
        retry_after = (getattr(exc, "headers", None) or {}).get("Retry-After")
        delay = float(retry_after) if retry_after and str(retry_after).isdigit() else 2.0
        return TemporaryError(message, delay=delay)
    if status == 409:
        return TemporaryError(f"{message} (changed concurrently; retry)", delay=0.5)
    return PermanentError(message)


def _status(exc: Exception) -> int | None:
    cause = exc.__cause__
    return getattr(cause, "status", None)


# --------------------------------------------------------------------------- actuator

@dataclass(frozen=True)
class PodRef:
    namespace: str
    pod: str
    uid: str


class PodActuator(Actuator):
    """Isolates one pod per plan through the Kubernetes API (official client).

    ``api_client`` is a ``kubernetes.client.ApiClient``; build it with
    ``PodActuator.from_kubeconfig`` or in-cluster config at the wiring edge.
    """

    kind = "pod"

    def __init__(self, api_client: Any, field_manager: str = "kafka-workload-guardian",
                 request_timeout_s: float = 10.0) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(api_client)
        self._net = client.NetworkingV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._api_client = api_client
        self._fm = field_manager
        self._timeout = request_timeout_s

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None, **kwargs: Any) -> "PodActuator":
        """From a kubeconfig file (``path``, else ``$KUBECONFIG`` or ~/.kube/config), or, with no
        path inside a pod, from the pod's service account."""
        import os

        from kubernetes import client, config

        try:
            if path is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)
                return cls(client.ApiClient(cfg), **kwargs)
            return cls(config.new_client_from_config(config_file=path, context=context), **kwargs)
        except config.ConfigException as exc:
            raise PermanentError(f"no usable Kubernetes credentials: {exc}") from exc

    def close(self) -> None:
        self._api_client.close()

    # -- pure ------------------------------------------------------------
    def plan(self, target: dict[str, str], params: dict[str, Any], quarantine_id: str = "") -> ActionPlan:
        namespace, pod = target.get("namespace", ""), target.get("pod", "")
        if not _DNS1123_LABEL.match(namespace):
            raise PermanentError(f"pod isolation: target needs a valid namespace, got {namespace!r}")
        if not _DNS1123_SUBDOMAIN.match(pod):
            raise PermanentError(f"pod isolation: target needs a valid pod name, got {pod!r}")
        kept = {k: str(v) for k, v in target.items() if k in ("namespace", "pod", "uid", "client_id", "principal")}
        return ActionPlan(kind=self.kind, target=kept, params=_normalise_params(params), quarantine_id=quarantine_id)

    # -- mapping ---------------------------------------------------------
    def find_pods(self, namespaces: list[str], client_id: str | None = None,
                  principal: str | None = None, label_selector: str | None = None) -> list[PodRef]:
        """The pods in ``namespaces`` whose annotations say they run this Kafka workload."""
        found = []
        for ns in namespaces:
            with _kube_errors(f"listing pods in {ns}"):
                pods = self._core.list_namespaced_pod(ns, label_selector=label_selector,
                                                      _request_timeout=self._timeout)
            for p in pods.items:
                if p.metadata.deletion_timestamp is None and pod_matches(p.metadata.annotations, client_id, principal):
                    found.append(PodRef(ns, p.metadata.name, p.metadata.uid))
        return sorted(found, key=lambda r: (r.namespace, r.pod))

    # -- cluster ---------------------------------------------------------
    def observe(self, plan: ActionPlan) -> dict[str, Any]:
        ns, name = plan.target["namespace"], plan.target["pod"]
        key, _ = quarantine_label(plan)
        pod = self._read_pod(plan)
        policy = self._read_policy(plan)
        before: dict[str, Any] = {
            "pod_exists": pod is not None,
            "pod_uid": pod.metadata.uid if pod else None,
            "label": ((pod.metadata.labels or {}).get(key) if pod else None),
            "network_policy_exists": policy is not None,
            "owner": None,
            "tenant_egress_policies": [],
        }
        if pod is not None:
            with _kube_errors(f"listing NetworkPolicies in {ns}"):
                nps = self._net.list_namespaced_network_policy(ns, _request_timeout=self._timeout)
            before["tenant_egress_policies"] = egress_policies_selecting(
                pod.metadata.labels or {}, [self._api_client.sanitize_for_serialization(n) for n in nps.items])
        if plan.params["scale_owner"]:
            owner = self._owner_from(pod, policy)
            if owner is not None:
                before["owner"] = {"kind": owner[0], "name": owner[1], "replicas": self._get_replicas(ns, *owner)}
        return before

    def apply_steps(self, plan: ActionPlan) -> list[tuple[str, Callable[[], None]]]:
        """The steps of ``apply`` in order, each idempotent (exposed so tests can crash between them)."""
        steps = [("network_policy", lambda: self._ensure_policy(plan)),
                 ("label", lambda: self._ensure_label(plan))]
        if plan.params["scale_owner"]:
            steps.append(("scale_owner", lambda: self._ensure_scaled_down(plan)))
        return steps

    def apply(self, plan: ActionPlan) -> None:
        for _, step in self.apply_steps(plan):
            step()

    def verify(self, plan: ActionPlan) -> bool:
        key, value = quarantine_label(plan)
        policy = self._read_policy(plan)
        if policy is None or not self._policy_as_desired(plan, policy):
            return False
        pod = self._read_pod(plan)
        if plan.params["scale_owner"]:
            owner = self._owner_from(pod, policy)
            if owner is None or self._get_replicas(plan.target["namespace"], *owner) != 0:
                return False
            if pod is None:  # its controller removed it: nothing left to label
                return True
        return pod is not None and (pod.metadata.labels or {}).get(key) == value

    def revert(self, plan: ActionPlan, before: dict[str, Any]) -> None:
        ns, name = plan.target["namespace"], plan.target["pod"]
        key, _ = quarantine_label(plan)
        if before.get("label") is None:
            try:
                with _kube_errors(f"removing the quarantine label from pod {ns}/{name}"):
                    self._core.patch_namespaced_pod(name, ns, {"metadata": {"labels": {key: None}}},
                                                    field_manager=self._fm, _request_timeout=self._timeout)
            except PermanentError as exc:
                if _status(exc) != 404:
                    raise
        if not before.get("network_policy_exists"):
            try:
                with _kube_errors(f"deleting NetworkPolicy {ns}/{network_policy_name(plan)}"):
                    self._net.delete_namespaced_network_policy(network_policy_name(plan), ns,
                                                               _request_timeout=self._timeout)
            except PermanentError as exc:
                if _status(exc) != 404:
                    raise
        owner = before.get("owner")
        if owner and owner.get("replicas"):
            try:
                current = self._get_replicas(ns, owner["kind"], owner["name"])
            except PermanentError as exc:
                if _status(exc) == 404:
                    return
                raise
            # Only undo our own zero: if someone scaled it since, theirs wins.
            if current == 0:
                self._set_replicas(ns, owner["kind"], owner["name"], owner["replicas"])

    # -- steps -----------------------------------------------------------
    def _ensure_policy(self, plan: ActionPlan) -> None:
        ns = plan.target["namespace"]
        pod, current = self._read_pod(plan), self._read_policy(plan)
        if pod is None and current is None:
            # Nothing written yet and no pod to isolate: fail before the first write.
            uid = plan.target.get("uid")
            raise PermanentError(f"pod {ns}/{plan.target['pod']} is gone" + (f" or was replaced (uid is no longer {uid})"
                                                                               if uid else ""))
        owner = None
        if plan.params["scale_owner"]:
            found = self._owner_from(pod, current)
            owner = f"{found[0]}/{found[1]}" if found else None
        desired = network_policy_manifest(plan, owner)
        if current is None:
            try:
                with _kube_errors(f"creating NetworkPolicy {ns}/{desired['metadata']['name']}"):
                    self._net.create_namespaced_network_policy(ns, desired, field_manager=self._fm,
                                                               _request_timeout=self._timeout)
                return
            except TemporaryError as exc:
                if _status(exc) != 409:  # created meanwhile (another apply): check it below
                    raise
                current = self._read_policy(plan)
        if current is None:
            raise TemporaryError(f"NetworkPolicy {ns}/{desired['metadata']['name']} vanished while applying")
        ann = current.metadata.annotations or {}
        if ann.get(PLAN_ANNOTATION) != plan.idempotency_key:
            raise PermanentError(f"NetworkPolicy {ns}/{current.metadata.name} exists and is not this plan's "
                                 f"({PLAN_ANNOTATION}={ann.get(PLAN_ANNOTATION)!r}); refusing to take it over")
        if not self._policy_as_desired(plan, current):
            patch = [{"op": "replace", "path": "/spec", "value": desired["spec"]}]
            with _kube_errors(f"repairing NetworkPolicy {ns}/{current.metadata.name}"):
                self._net.patch_namespaced_network_policy(current.metadata.name, ns, patch, field_manager=self._fm,
                                                          _request_timeout=self._timeout)

    def _ensure_label(self, plan: ActionPlan) -> None:
        ns, name = plan.target["namespace"], plan.target["pod"]
        key, value = quarantine_label(plan)
        meta: dict[str, Any] = {"labels": {key: value}}
        if plan.target.get("uid"):
            meta["uid"] = plan.target["uid"]  # precondition: never label a namesake that replaced the pod
        try:
            with _kube_errors(f"labelling pod {ns}/{name}"):
                self._core.patch_namespaced_pod(name, ns, {"metadata": meta}, field_manager=self._fm,
                                                _request_timeout=self._timeout)
        except PermanentError as exc:
            # A uid in the patch that differs from the stored one is refused as an immutable-field change.
            if _status(exc) == 422 and "metadata.uid" in str(getattr(exc.__cause__, "body", "")):
                raise PermanentError(f"pod {ns}/{name} was replaced (uid is no longer {plan.target['uid']}); "
                                     "not labelling its successor") from exc
            # With scale_owner the controller deletes the pod once scaled down; a re-apply finds it gone.
            if not (_status(exc) == 404 and plan.params["scale_owner"] and self._read_policy(plan) is not None):
                raise

    def _ensure_scaled_down(self, plan: ActionPlan) -> None:
        owner = self._owner_from(self._read_pod(plan), self._read_policy(plan))
        if owner is None:
            raise PermanentError(f"pod {plan.target['namespace']}/{plan.target['pod']} has no controller the "
                                 f"guardian can scale ({', '.join(SCALABLE_KINDS)})")
        if self._get_replicas(plan.target["namespace"], *owner) != 0:
            self._set_replicas(plan.target["namespace"], owner[0], owner[1], 0)

    # -- reads -----------------------------------------------------------
    def _read_pod(self, plan: ActionPlan) -> Any | None:
        ns, name = plan.target["namespace"], plan.target["pod"]
        try:
            with _kube_errors(f"reading pod {ns}/{name}"):
                pod = self._core.read_namespaced_pod(name, ns, _request_timeout=self._timeout)
        except PermanentError as exc:
            if _status(exc) == 404:
                return None
            raise
        uid = plan.target.get("uid")
        return None if uid and pod.metadata.uid != uid else pod

    def _read_policy(self, plan: ActionPlan) -> Any | None:
        ns, name = plan.target["namespace"], network_policy_name(plan)
        try:
            with _kube_errors(f"reading NetworkPolicy {ns}/{name}"):
                return self._net.read_namespaced_network_policy(name, ns, _request_timeout=self._timeout)
        except PermanentError as exc:
            if _status(exc) == 404:
                return None
            raise

    def _policy_as_desired(self, plan: ActionPlan, policy: Any) -> bool:
        desired = network_policy_manifest(plan)["spec"]
        current = self._api_client.sanitize_for_serialization(policy.spec)
        return _without_empty(current) == _without_empty(desired)

    def _owner_from(self, pod: Any | None, policy: Any | None) -> tuple[str, str] | None:
        """The scalable controller of the pod: ReplicaSet -> its Deployment, StatefulSet, bare ReplicaSet.

        Falls back to what the NetworkPolicy recorded when the pod is gone.
        """
        if pod is None:
            recorded = ((policy.metadata.annotations or {}).get(OWNER_ANNOTATION) if policy is not None else None)
            if recorded and "/" in recorded:
                kind, name = recorded.split("/", 1)
                return kind, name
            return None
        ref = next((r for r in pod.metadata.owner_references or [] if r.controller), None)
        if ref is None or ref.kind not in ("ReplicaSet", "StatefulSet"):
            return None
        if ref.kind == "ReplicaSet":
            with _kube_errors(f"reading ReplicaSet {pod.metadata.namespace}/{ref.name}"):
                rs = self._apps.read_namespaced_replica_set(ref.name, pod.metadata.namespace,
                                                            _request_timeout=self._timeout)
            parent = next((r for r in rs.metadata.owner_references or [] if r.controller), None)
            if parent is not None:
                return (parent.kind, parent.name) if parent.kind == "Deployment" else None
        return ref.kind, ref.name

    def _scale_api(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        apis = {"Deployment": (self._apps.read_namespaced_deployment_scale, self._apps.patch_namespaced_deployment_scale),
                "StatefulSet": (self._apps.read_namespaced_stateful_set_scale,
                                self._apps.patch_namespaced_stateful_set_scale),
                "ReplicaSet": (self._apps.read_namespaced_replica_set_scale,
                               self._apps.patch_namespaced_replica_set_scale)}
        if kind not in apis:
            raise PermanentError(f"cannot scale a {kind}; scalable owners: {', '.join(SCALABLE_KINDS)}")
        return apis[kind]

    def _get_replicas(self, ns: str, kind: str, name: str) -> int:
        read, _ = self._scale_api(kind)
        with _kube_errors(f"reading the scale of {kind} {ns}/{name}"):
            return int(read(name, ns, _request_timeout=self._timeout).spec.replicas or 0)

    def _set_replicas(self, ns: str, kind: str, name: str, replicas: int) -> None:
        _, patch = self._scale_api(kind)
        with _kube_errors(f"scaling {kind} {ns}/{name} to {replicas}"):
            patch(name, ns, {"spec": {"replicas": replicas}}, field_manager=self._fm, _request_timeout=self._timeout)


def _without_empty(value: Any) -> Any:
    """Drop None/empty members so a spec read back compares equal to the one sent."""
    if isinstance(value, dict):
        return {k: _without_empty(v) for k, v in value.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value
