"""Topic ACL revoke: DENY ACLs for one principal on the named topics.

Kafka evaluates DENY before ALLOW, so adding a literal DENY binding revokes the
principal's access to one topic without touching the tenant's own (usually
prefixed) ALLOW bindings. The actuator only ever creates and deletes its own
exact bindings: ``(TOPIC, <topic>, LITERAL, <principal>, host "*", WRITE|READ, DENY)``.
A binding that already existed before ``apply`` (an operator's, or another
quarantine's) is recorded by ``observe`` and left in place by ``revert``.

Produce side = WRITE, consume side = READ.

>>> plan = AclActuator(admin=None).plan({"principal": "User:tenant-a", "topic": "tenant-a.orders"},
...                                     {"side": "produce"})
>>> plan.target, plan.params
({'principal': 'User:tenant-a', 'topics': 'tenant-a.orders'}, {'operations': ['WRITE']})
>>> [b.key() for b in deny_bindings(plan)]
[('TOPIC', 'tenant-a.orders', 'LITERAL', 'User:tenant-a', '*', 'WRITE', 'DENY')]
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar, Iterable, Mapping

from guardian.actuators.base import ActionPlan, Actuator
from guardian.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

SIDES = {"produce": ("WRITE",), "consume": ("READ",), "both": ("READ", "WRITE")}
OPERATIONS = ("READ", "WRITE")
_TOPIC_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
_PRINCIPAL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:.+$")


@dataclass(frozen=True, order=True)
class Acl:
    """One ACL binding as plain data (what the ledger records)."""

    resource_type: str
    name: str
    pattern_type: str
    principal: str
    host: str
    operation: str
    permission: str

    def key(self) -> tuple[str, ...]:
        return (self.resource_type, self.name, self.pattern_type, self.principal, self.host,
                self.operation, self.permission)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> "Acl":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    @classmethod
    def from_binding(cls, b: Any) -> "Acl":
        """From a confluent-kafka ``AclBinding``."""
        return cls(resource_type=b.restype.name, name=b.name, pattern_type=b.resource_pattern_type.name,
                   principal=b.principal, host=b.host, operation=b.operation.name,
                   permission=b.permission_type.name)

    def to_binding(self) -> Any:
        from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                           ResourceType)

        return AclBinding(ResourceType[self.resource_type], self.name, ResourcePatternType[self.pattern_type],
                          self.principal, self.host, AclOperation[self.operation],
                          AclPermissionType[self.permission])

    def to_exact_filter(self) -> Any:
        """A filter that matches this binding and nothing else (no ANY, no MATCH, no None)."""
        from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType,
                                           ResourcePatternType, ResourceType)

        return AclBindingFilter(ResourceType[self.resource_type], self.name,
                                ResourcePatternType[self.pattern_type], self.principal, self.host,
                                AclOperation[self.operation], AclPermissionType[self.permission])


def topics_of(plan: ActionPlan) -> list[str]:
    return plan.target["topics"].split(",")


def deny_bindings(plan: ActionPlan) -> list[Acl]:
    """The exact DENY bindings a plan adds, sorted. Pure."""
    principal = plan.target["principal"]
    return sorted(Acl("TOPIC", topic, "LITERAL", principal, "*", op, "DENY")
                  for topic in topics_of(plan) for op in plan.params["operations"])


def bindings_to_delete(plan: ActionPlan, before: Iterable[Acl]) -> list[Acl]:
    """The guardian's bindings that did not exist before ``apply``: the only ones revert deletes. Pure."""
    existed = set(before)
    return [b for b in deny_bindings(plan) if b not in existed]


def _convert(exc: BaseException, what: str) -> Exception:
    from confluent_kafka import KafkaException

    if isinstance(exc, KafkaException) and exc.args and hasattr(exc.args[0], "retriable"):
        err = exc.args[0]
        text = f"{what}: {err.name()}: {err.str()}"
        return TemporaryError(text) if err.retriable() else PermanentError(text)
    if isinstance(exc, TimeoutError):
        return TemporaryError(f"{what}: timed out")
    return PermanentError(f"{what}: {exc}")


class AclActuator(Actuator):
    """Revoke a principal's produce and/or consume access to topics with DENY ACLs.

    ``admin`` is a confluent-kafka ``AdminClient`` on a listener allowed to alter ACLs.
    """

    kind: ClassVar[str] = "acl"

    def __init__(self, admin: Any, timeout_s: float = 30.0, settle_timeout_s: float = 10.0,
                 poll_s: float = 0.05, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._admin = admin
        self._timeout = timeout_s
        self._settle_timeout = settle_timeout_s
        self._poll = poll_s
        self._sleep, self._clock = sleep, clock

    @classmethod
    def from_config(cls, conf: Mapping[str, Any], timeout_s: float = 30.0) -> "AclActuator":
        from confluent_kafka.admin import AdminClient

        return cls(AdminClient(dict(conf)), timeout_s=timeout_s)

    # -- pure ---------------------------------------------------------------------------------
    def plan(self, target: dict[str, str], params: dict[str, Any], quarantine_id: str = "") -> ActionPlan:
        """``target``: ``principal`` plus ``topic`` or ``topics`` (comma-separated; or ``params["topics"]``).

        ``params``: ``side`` (``produce`` | ``consume`` | ``both``) or ``operations``
        (a list of ``WRITE``/``READ``); default produce.
        """
        principal = target.get("principal") or ""
        if not _PRINCIPAL_RE.match(principal):
            raise PermanentError(f"an ACL target needs a principal like 'User:<name>', got {principal!r}")
        unknown = set(params) - {"side", "operations", "topics"}
        if unknown:
            raise PermanentError(f"unknown ACL parameter(s) {sorted(unknown)}; known: side, operations, topics")
        names: list[str] = []
        for raw in (target.get("topic"), target.get("topics")):
            if raw:
                names.extend(raw.split(","))
        extra = params.get("topics") or []
        if isinstance(extra, str):
            extra = extra.split(",")
        names.extend(extra)
        topics = sorted({t.strip() for t in names if t.strip()})
        if not topics:
            raise PermanentError("an ACL plan needs at least one topic")
        for t in topics:
            if not _TOPIC_RE.match(t):
                raise PermanentError(f"not a valid Kafka topic name: {t!r}")
        if "operations" in params and "side" in params:
            raise PermanentError("give either 'side' or 'operations', not both")
        if "operations" in params:
            ops = params["operations"]
            if isinstance(ops, str):
                ops = [ops]
            ops = sorted({str(o).upper() for o in ops})
            bad = [o for o in ops if o not in OPERATIONS]
            if bad or not ops:
                raise PermanentError(f"ACL operations must be among {', '.join(OPERATIONS)}, got {params['operations']!r}")
        else:
            side = params.get("side", "produce")
            if side not in SIDES:
                raise PermanentError(f"ACL side must be one of {', '.join(SIDES)}, got {side!r}")
            ops = sorted(SIDES[side])
        return ActionPlan(kind=self.kind, target={"principal": principal, "topics": ",".join(topics)},
                          params={"operations": ops}, quarantine_id=quarantine_id)

    # -- cluster I/O --------------------------------------------------------------------------
    def describe(self, plan: ActionPlan) -> list[Acl]:
        """Every ACL that applies to the plan's principal on its topics (literal, prefixed, wildcard)."""
        from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType,
                                           ResourcePatternType, ResourceType)

        self._check(plan)
        found: set[Acl] = set()
        for topic in topics_of(plan):
            flt = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.MATCH,
                                   plan.target["principal"], None, AclOperation.ANY, AclPermissionType.ANY)
            found.update(Acl.from_binding(b) for b in self._result(self._admin.describe_acls(
                flt, request_timeout=self._timeout), f"describe ACLs of {topic}"))
        return sorted(found)

    def observe(self, plan: ActionPlan) -> dict[str, Any]:
        return {"acls": [a.to_dict() for a in self.describe(plan)]}

    def apply(self, plan: ActionPlan) -> None:
        self._check(plan)
        # Creating a binding that exists is a no-op on the broker: apply is idempotent.
        futures = self._admin.create_acls([b.to_binding() for b in deny_bindings(plan)],
                                          request_timeout=self._timeout)
        for binding, fut in futures.items():
            self._result(fut, f"create ACL {binding}")
        # ACLs go through the controller; wait until this broker's authorizer serves them.
        self._settle(plan, lambda present: all(b in present for b in deny_bindings(plan)), "apply")

    def verify(self, plan: ActionPlan) -> bool:
        present = set(self.describe(plan))
        return all(b in present for b in deny_bindings(plan))

    def revert(self, plan: ActionPlan, before: dict[str, Any]) -> None:
        if not isinstance(before.get("acls"), list):
            raise PermanentError("recorded ACL state has no 'acls' list; cannot tell which DENY bindings "
                                 "existed before, so nothing is deleted")
        self._check(plan)
        existed = [Acl.from_dict(d) for d in before["acls"]]
        doomed = bindings_to_delete(plan, existed)
        if not doomed:
            return
        futures = self._admin.delete_acls([b.to_exact_filter() for b in doomed], request_timeout=self._timeout)
        for flt, fut in futures.items():
            deleted = [Acl.from_binding(b) for b in self._result(fut, f"delete ACL {flt}")]
            stray = [d for d in deleted if d not in doomed]
            if stray:  # cannot happen with exact filters; say so loudly if a broker ever disagrees
                log.error("exact ACL filter %s deleted unexpected bindings %s", flt, stray)
        self._settle(plan, lambda present: not any(b in present for b in doomed), "revert")

    def _settle(self, plan: ActionPlan, holds: Callable[[set[Acl]], bool], step: str) -> None:
        deadline = self._clock() + self._settle_timeout
        while not holds(set(self.describe(plan))):
            if self._clock() >= deadline:
                raise TemporaryError(f"ACL {step} for {plan.target['principal']} on {plan.target['topics']} "
                                     f"not visible after {self._settle_timeout:.0f}s; retrying is safe (idempotent)")
            self._sleep(self._poll)

    def _result(self, fut: Any, what: str) -> Any:
        try:
            return fut.result(timeout=self._timeout)
        except Exception as exc:  # noqa: BLE001 - converted at the edge
            raise _convert(exc, what) from exc

    def _check(self, plan: ActionPlan) -> None:
        if plan.kind != self.kind:
            raise PermanentError(f"{type(self).__name__} cannot run a {plan.kind!r} plan")
        if self._admin is None:
            raise PermanentError("this AclActuator was built without an admin client (plan only)")
