"""The actuator contract.

An actuator does one kind of action against the cluster. ``plan`` is pure; the
rest talk to the cluster. Every method is idempotent under the plan's
``idempotency_key`` so a reconciler can replay any step after a crash:

* ``observe(plan)`` reads the state ``plan`` is about to change (recorded in
  the ledger before ``apply``);
* ``apply(plan)`` makes the change; applying twice equals applying once;
* ``verify(plan)`` reads the cluster back and says whether the change holds;
* ``revert(plan, before)`` restores exactly ``before`` and removes only what
  the guardian added; reverting twice equals reverting once.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class ActionPlan:
    """A fully resolved change: what kind, on which target, with which parameters."""

    kind: str                      # "quota" | "acl" | "pod"
    target: dict[str, str]         # workload identity the action hits (principal, client_id, topic, pod, namespace)
    params: dict[str, Any] = field(default_factory=dict)
    quarantine_id: str = ""

    @property
    def idempotency_key(self) -> str:
        body = json.dumps([self.kind, self.target, self.params, self.quarantine_id],
                          sort_keys=True, separators=(",", ":"))
        return f"{self.kind}:{hashlib.sha256(body.encode()).hexdigest()[:24]}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": dict(self.target), "params": dict(self.params),
                "quarantine_id": self.quarantine_id, "idempotency_key": self.idempotency_key}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ActionPlan":
        return cls(kind=d["kind"], target=dict(d["target"]), params=dict(d.get("params", {})),
                   quarantine_id=d.get("quarantine_id", ""))


class Actuator(ABC):
    """Base of every actuator; one module per actuator under ``guardian/actuators/``."""

    kind: ClassVar[str]

    @abstractmethod
    def plan(self, target: dict[str, str], params: dict[str, Any], quarantine_id: str = "") -> ActionPlan:
        """Resolve a target and parameters into a plan. Pure: no I/O."""

    @abstractmethod
    def observe(self, plan: ActionPlan) -> dict[str, Any]:
        """Read the current state of what ``plan`` would change."""

    @abstractmethod
    def apply(self, plan: ActionPlan) -> None:
        """Make the change. Idempotent."""

    @abstractmethod
    def verify(self, plan: ActionPlan) -> bool:
        """Read the cluster back: does the change hold?"""

    @abstractmethod
    def revert(self, plan: ActionPlan, before: dict[str, Any]) -> None:
        """Restore exactly ``before``; remove only what the guardian added. Idempotent."""
