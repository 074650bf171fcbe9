"""Quota throttle: AlterClientQuotas on a (user, client-id), (user, default client-id) or user entity.

The broker picks, per quota type, the most specific entity that has a value,
so a (user, client-id) quota overrides the cluster defaults for exactly one
client of one principal. That is the preferred entity: a quota at the plain
user level also makes the broker key that user's rate sensors by user only
(the ``client_id`` tag goes empty), which blinds per-client detection for the
whole principal while the throttle holds.

``observe`` records every quota value on the entity (``{}`` = no quota);
``revert`` puts back the previous value of each key the plan set and removes
the keys that did not exist, leaving keys the plan never touched alone.

Kafka enforces a quota on each broker separately. A plan for a client spread
over several brokers carries the per-broker value it sets (the rate key) and
the cluster-wide rate it means (``cluster_rate``, with ``broker_share``, the
largest share one broker carried: ``guardian.policy.decide.per_broker_quota``).
``verify`` reads the quota back from the cluster; ``measure`` reads the
client's rate back from every broker's metrics and sums it, to check that the
cluster-wide rate fell to about ``cluster_rate``.

Example (pure; no broker needed):

>>> plan = QuotaActuator(admin=None).plan({"principal": "User:tenant-a", "client_id": "loader"},
...                                       {"producer_byte_rate": 1048576})
>>> plan.target, plan.params["scope"], plan.params["producer_byte_rate"]
({'principal': 'User:tenant-a', 'user': 'tenant-a', 'client_id': 'loader'}, 'client', 1048576.0)
>>> revert_ops(plan, before={"producer_byte_rate": 5e6}, current={"producer_byte_rate": 1048576.0})
({'producer_byte_rate': 5000000.0}, [])
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

from guardian.actuators.base import ActionPlan, Actuator
from guardian.errors import PermanentError, TemporaryError

# The keys this actuator sets: bytes/s, percent of a broker thread, partition mutations/s (KIP-599).
RATE_KEYS = ("producer_byte_rate", "consumer_byte_rate", "request_percentage", "controller_mutation_rate")
SCOPES = ("client", "default_client", "user")
# What a translated plan adds: the cluster-wide rate it means and the share behind the per-broker value.
CLUSTER_KEYS = ("cluster_rate", "broker_share")
# rates(user, client_id or None, quota key) -> the client's measured rate on each broker now
ClientRates = Callable[[str, "str | None", str], Mapping[str, float]]
# Values compare equal within this relative tolerance (the broker stores doubles).
_REL_TOL = 1e-9


def _user_of(target: Mapping[str, str]) -> str:
    principal = target.get("principal")
    user = target.get("user")
    if principal is not None:
        ptype, sep, name = principal.partition(":")
        if not sep or ptype != "User" or not name:
            raise PermanentError(f"quota targets need a 'User:<name>' principal, got {principal!r}")
        if user is not None and user != name:
            raise PermanentError(f"target user {user!r} disagrees with principal {principal!r}")
        return name
    if not user:
        raise PermanentError("a quota target needs a principal ('User:<name>') or a user")
    return user


def _rate(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PermanentError(f"quota {key} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise PermanentError(f"quota {key} must be a positive finite number, got {value!r}")
    return v


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=_REL_TOL)


def entity_of(plan: ActionPlan):
    """The ``QuotaEntity`` a plan changes."""
    from guardian.clients.kafka_admin import QuotaEntity

    scope, user = plan.params["scope"], plan.target["user"]
    if scope == "client":
        return QuotaEntity.of(user=user, client_id=plan.target["client_id"])
    if scope == "default_client":
        return QuotaEntity.of(user=user, client_id=None)
    return QuotaEntity.of(user=user)


def rates_of(plan: ActionPlan) -> dict[str, float]:
    return {k: float(plan.params[k]) for k in RATE_KEYS if k in plan.params}


@dataclass(frozen=True)
class QuotaEffect:
    """What a quota plan does to its client's rate, measured on every broker (``QuotaActuator.measure``).

    >>> e = QuotaEffect("producer_byte_rate", target=900.0, per_broker=300.0, brokers={"b1": 310.0, "b2": 290.0, "b3": 280.0})
    >>> e.total, e.near(0.05), e.near(0.01)
    (880.0, True, False)
    """

    key: str
    target: float                 # the cluster-wide rate the plan means (its cluster_rate, else its quota value)
    per_broker: float             # the quota value each broker enforces
    brokers: dict[str, float]     # the client's measured rate on each broker (absent: no sensor there)

    @property
    def total(self) -> float:
        """The client's cluster-wide rate: the sum over brokers."""
        return math.fsum(self.brokers.values())

    def near(self, tolerance: float) -> bool:
        """The cluster-wide rate is within ``tolerance`` (relative) of the target."""
        return abs(self.total - self.target) <= tolerance * self.target

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "target": self.target, "per_broker": self.per_broker,
                "brokers": dict(self.brokers), "total": self.total}


def revert_ops(plan: ActionPlan, before: Mapping[str, float],
               current: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
    """What to set and what to remove so the plan's keys are back to ``before``. Pure.

    Keys the plan did not set are never touched; keys already back where they were
    produce no operation, so a second revert is a no-op.
    """
    to_set: dict[str, float] = {}
    to_remove: list[str] = []
    for key in rates_of(plan):
        was, now = before.get(key), current.get(key)
        if was is None:
            if now is not None:
                to_remove.append(key)
        elif not _same(float(was), now):
            to_set[key] = float(was)
    return to_set, to_remove


class QuotaActuator(Actuator):
    """Throttle a workload with client quotas (bytes/s produce or fetch, % of request time).

    ``admin`` is a ``guardian.clients.kafka_admin.ClientQuotaAdmin`` (or anything with its
    ``describe``/``alter``); ``plan`` never touches it.
    """

    kind: ClassVar[str] = "quota"

    def __init__(self, admin: Any, settle_timeout_s: float = 10.0, poll_s: float = 0.05,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, rates: ClientRates | None = None) -> None:
        self._admin = admin
        self._rates = rates   # e.g. guardian.ingest.prometheus.ClientRates over every broker's exporter
        self._settle_timeout = settle_timeout_s
        self._poll = poll_s
        self._sleep, self._clock = sleep, clock

    @classmethod
    def from_bootstrap(cls, bootstrap_servers: str, rates: ClientRates | None = None,
                       **kafka_python_config: Any) -> "QuotaActuator":
        from guardian.clients.kafka_admin import ClientQuotaAdmin

        return cls(ClientQuotaAdmin(bootstrap_servers, **kafka_python_config), rates=rates)

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()

    # -- pure ---------------------------------------------------------------------------------
    def plan(self, target: dict[str, str], params: dict[str, Any], quarantine_id: str = "") -> ActionPlan:
        """Resolve ``target`` (principal or user, optional client_id) and rates into a plan.

        ``params``: any of ``producer_byte_rate``, ``consumer_byte_rate`` (bytes/s),
        ``request_percentage`` and ``controller_mutation_rate`` (partitions created or deleted /s); ``scope`` is ``client`` (default when the target names a
        client-id), ``default_client`` (every client-id of the user, each on its own) or
        ``user`` (default otherwise: all the user's clients together). A plan translated from a
        cluster-wide rate also carries ``cluster_rate`` and ``broker_share`` (one rate key only).
        """
        user = _user_of(target)
        client_id = target.get("client_id")
        unknown = set(params) - set(RATE_KEYS) - {"scope", *CLUSTER_KEYS}
        if unknown:
            raise PermanentError(f"unknown quota parameter(s) {sorted(unknown)}; "
                                 f"known: {', '.join(RATE_KEYS)}, scope, {', '.join(CLUSTER_KEYS)}")
        rates = {k: _rate(k, params[k]) for k in RATE_KEYS if k in params}
        if not rates:
            raise PermanentError(f"a quota plan needs at least one of {', '.join(RATE_KEYS)}")
        cluster = {k: _rate(k, params[k]) for k in CLUSTER_KEYS if k in params}
        if cluster:
            if set(cluster) != set(CLUSTER_KEYS) or len(rates) != 1:
                raise PermanentError("cluster_rate and broker_share come together, with exactly one rate key")
            if cluster["broker_share"] > 1.0:
                raise PermanentError(f"broker_share is a share of the client's rate (0 to 1], "
                                     f"got {cluster['broker_share']}")
        scope = params.get("scope") or ("client" if client_id is not None else "user")
        if scope not in SCOPES:
            raise PermanentError(f"quota scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if scope == "client" and client_id is None:
            raise PermanentError("quota scope 'client' needs a client_id in the target")
        resolved = {"principal": f"User:{user}", "user": user}
        if scope == "client":
            resolved["client_id"] = client_id  # type: ignore[assignment]
        return ActionPlan(kind=self.kind, target=resolved, params={"scope": scope, **rates, **cluster},
                          quarantine_id=quarantine_id)

    # -- cluster I/O --------------------------------------------------------------------------
    def observe(self, plan: ActionPlan) -> dict[str, Any]:
        """Every quota value on the plan's entity now (``quotas == {}``: no quota at all)."""
        self._check(plan)
        entity = entity_of(plan)
        return {"entity": str(entity), "quotas": dict(self._admin.describe(entity))}

    def apply(self, plan: ActionPlan) -> None:
        """Set the rates and wait until the broker serves them (quotas propagate through the controller)."""
        self._check(plan)
        entity, rates = entity_of(plan), rates_of(plan)
        self._admin.alter(entity, rates)
        self._settle(entity, lambda cur: all(_same(v, cur.get(k)) for k, v in rates.items()), "apply")

    def verify(self, plan: ActionPlan) -> bool:
        self._check(plan)
        current = self._admin.describe(entity_of(plan))
        return all(_same(v, current.get(k)) for k, v in rates_of(plan).items())

    def measure(self, plan: ActionPlan) -> QuotaEffect:
        """The client's rate on every broker now, against the cluster-wide rate the plan means.

        Reads metrics, not quotas: the sum over brokers is what the client really does cluster-wide
        (one broker's figure is only its share). Needs the ``rates`` reader and a plan with one rate key
        on one client (scope ``client``) or one user (scope ``user``)."""
        if plan.kind != self.kind:
            raise PermanentError(f"{type(self).__name__} cannot measure a {plan.kind!r} plan")
        if self._rates is None:
            raise PermanentError("this QuotaActuator has no rates reader (the brokers' metrics URLs)")
        rates = rates_of(plan)
        if len(rates) != 1 or plan.params["scope"] == "default_client":
            raise PermanentError("measure needs a plan with one rate key on one client or one user")
        (key, value), = rates.items()
        per_broker = dict(self._rates(plan.target["user"], plan.target.get("client_id"), key))
        target = float(plan.params.get("cluster_rate", value))
        return QuotaEffect(key=key, target=target, per_broker=value, brokers=per_broker)

    def revert(self, plan: ActionPlan, before: dict[str, Any]) -> None:
        self._check(plan)
        entity = entity_of(plan)
        if before.get("entity") not in (None, str(entity)):
            raise PermanentError(f"recorded state is for {before.get('entity')!r}, the plan changes {entity}")
        previous = before.get("quotas")
        if not isinstance(previous, Mapping):
            raise PermanentError("recorded quota state has no 'quotas' mapping; cannot restore exactly")
        to_set, to_remove = revert_ops(plan, previous, self._admin.describe(entity))
        if to_set or to_remove:
            self._admin.alter(entity, to_set, to_remove)
            self._settle(entity, lambda cur: revert_ops(plan, previous, cur) == ({}, []), "revert")

    def _settle(self, entity: Any, holds: Callable[[Mapping[str, float]], bool], step: str) -> None:
        """Poll DescribeClientQuotas until ``holds``; a broker that lags behind is a TemporaryError."""
        deadline = self._clock() + self._settle_timeout
        while not holds(self._admin.describe(entity)):
            if self._clock() >= deadline:
                raise TemporaryError(f"quota {step} on {entity} not visible after {self._settle_timeout:.0f}s; "
                                     "retrying is safe (idempotent)")
            self._sleep(self._poll)

    def _check(self, plan: ActionPlan) -> None:
        if plan.kind != self.kind:
            raise PermanentError(f"{type(self).__name__} cannot run a {plan.kind!r} plan")
        if self._admin is None:
            raise PermanentError("this QuotaActuator was built without an admin client (plan only)")
