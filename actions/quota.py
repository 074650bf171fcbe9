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
from typing import Any, Callable, ClassVar, Mapping

from actions.base import ActionPlan, Actuator
from guardian.errors import PermanentError, TemporaryError

# The keys this actuator sets: bytes/s, percent of a broker thread, partition mutations/s (KIP-599).
RATE_KEYS = ("producer_byte_rate", "consumer_byte_rate", "request_percentage", "controller_mutation_rate")
SCOPES = ("client", "default_client", "user")
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
    from guardian.kafka_admin import QuotaEntity

    scope, user = plan.params["scope"], plan.target["user"]
    if scope == "client":
        return QuotaEntity.of(user=user, client_id=plan.target["client_id"])
    if scope == "default_client":
        return QuotaEntity.of(user=user, client_id=None)
    return QuotaEntity.of(user=user)


def rates_of(plan: ActionPlan) -> dict[str, float]:
    return {k: float(plan.params[k]) for k in RATE_KEYS if k in plan.params}


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

    ``admin`` is a ``guardian.kafka_admin.ClientQuotaAdmin`` (or anything with its
    ``describe``/``alter``); ``plan`` never touches it.
    """

    kind: ClassVar[str] = "quota"

    def __init__(self, admin: Any, settle_timeout_s: float = 10.0, poll_s: float = 0.05,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._admin = admin
        self._settle_timeout = settle_timeout_s
        self._poll = poll_s
        self._sleep, self._clock = sleep, clock

    @classmethod
    def from_bootstrap(cls, bootstrap_servers: str, **kafka_python_config: Any) -> "QuotaActuator":
        from guardian.kafka_admin import ClientQuotaAdmin

        return cls(ClientQuotaAdmin(bootstrap_servers, **kafka_python_config))

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()

    # -- pure ---------------------------------------------------------------------------------
    def plan(self, target: dict[str, str], params: dict[str, Any], quarantine_id: str = "") -> ActionPlan:
        """Resolve ``target`` (principal or user, optional client_id) and rates into a plan.

        ``params``: any of ``producer_byte_rate``, ``consumer_byte_rate`` (bytes/s),
        ``request_percentage`` and ``controller_mutation_rate`` (partitions created or deleted /s); ``scope`` is ``client`` (default when the target names a
        client-id), ``default_client`` (every client-id of the user, each on its own) or
        ``user`` (default otherwise: all the user's clients together).
        """
        user = _user_of(target)
        client_id = target.get("client_id")
        unknown = set(params) - set(RATE_KEYS) - {"scope"}
        if unknown:
            raise PermanentError(f"unknown quota parameter(s) {sorted(unknown)}; "
                                 f"known: {', '.join(RATE_KEYS)}, scope")
        rates = {k: _rate(k, params[k]) for k in RATE_KEYS if k in params}
        if not rates:
            raise PermanentError(f"a quota plan needs at least one of {', '.join(RATE_KEYS)}")
        scope = params.get("scope") or ("client" if client_id is not None else "user")
        if scope not in SCOPES:
            raise PermanentError(f"quota scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if scope == "client" and client_id is None:
            raise PermanentError("quota scope 'client' needs a client_id in the target")
        resolved = {"principal": f"User:{user}", "user": user}
        if scope == "client":
            resolved["client_id"] = client_id  # type: ignore[assignment]
        return ActionPlan(kind=self.kind, target=resolved, params={"scope": scope, **rates},
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
