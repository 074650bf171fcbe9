"""The engine's records: quarantines, action records and decisions. Pure data, JSON round-trips.

A ``Quarantine`` is the *desired* state: while it is ``active`` or ``appealed``
every plan in ``desired`` must hold on the cluster; once ``released`` or
``expired`` none may. An ``ActionRecord`` is the *progress* of one plan
(planned with the state observed before apply, applied, verified, reverted,
failed). The reconciler drives progress towards the desired state, which is
what makes a restart after a crash at any step converge.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class QState(str, Enum):
    PROPOSED = "proposed"                    # decided, nothing applied (dry-run quarantines stay here)
    WATCHING = "watching"                    # a runaway that hurts nobody (yet): recorded, nothing applied
    AWAITING_APPROVAL = "awaiting_approval"  # a rung needs a human before it acts
    ACTIVE = "active"                        # the actions hold on the cluster
    APPEALED = "appealed"                    # the tenant appealed; actions still hold
    RELEASED = "released"                    # reverted by a human (or an appeal granted)
    EXPIRED = "expired"                      # reverted at TTL

    @property
    def terminal(self) -> bool:
        return self in (QState.RELEASED, QState.EXPIRED)

    @property
    def enforcing(self) -> bool:
        """The cluster must carry this quarantine's actions."""
        return self in (QState.ACTIVE, QState.APPEALED)


OPEN_STATES = (QState.PROPOSED, QState.WATCHING, QState.AWAITING_APPROVAL, QState.ACTIVE, QState.APPEALED)


class StepStatus(str, Enum):
    PLANNED = "planned"      # plan resolved and the state before apply recorded
    APPLIED = "applied"
    VERIFIED = "verified"
    REVERTED = "reverted"
    FAILED = "failed"        # a permanent error; needs a human


@dataclass
class Quarantine:
    id: str
    workload: dict[str, str]       # the offender's identity as detected
    workload_key: str              # principal+client-id (or narrowest identity) it is keyed by
    policy: str
    state: QState
    rung: int                      # highest ladder rung decided (index)
    dry_run: bool
    created_at: float
    updated_at: float
    rung_at: float                 # when the current rung was decided (cool-down and TTL start)
    expires_at: float
    desired: list[dict[str, Any]] = field(default_factory=list)   # ActionPlan.to_dict() with "rung"
    pending_rung: int | None = None   # an escalation waiting for approval
    pending: list[dict[str, Any]] = field(default_factory=list)   # its plans, moved to desired on approval
    traffic: float = 0.0              # workload's byte rate at detection (share-of-traffic cap)
    throttles: bool = False           # does it hold a throttle (counts against the share cap)
    detection: dict[str, Any] = field(default_factory=dict)       # the detection behind the latest rung
    detections: int = 1
    appeal: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)   # {ts, from, to, by, reason}
    harm: dict[str, Any] | None = None   # guardian.policy.harm.Harm.to_dict() of the latest decision
    version: int = 0

    @property
    def tenant(self) -> str | None:
        p = self.workload.get("principal")
        return p.split(":", 1)[1] if p and ":" in p else p

    @property
    def counts_for_caps(self) -> bool:
        """A watch changes nothing on the cluster, so it never takes a place under the caps."""
        return not self.dry_run and not self.state.terminal and self.state is not QState.WATCHING

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Quarantine":
        d = dict(d)
        d["state"] = QState(d["state"])
        return cls(**d)


@dataclass
class ActionRecord:
    key: str                        # ActionPlan.idempotency_key
    quarantine_id: str
    rung: int
    plan: dict[str, Any]            # ActionPlan.to_dict()
    status: StepStatus
    before: dict[str, Any] | None = None    # Actuator.observe() before apply
    attempts: int = 0
    error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)   # {ts, status}
    version: int = 0
    effect: dict[str, Any] | None = None    # a verified throttle's effect, judged once (guardian.policy.effect)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ActionRecord":
        d = dict(d)
        d["status"] = StepStatus(d["status"])
        return cls(**d)


class Outcome(str, Enum):
    """What the engine decided about one detection."""

    NO_POLICY = "no_policy"                    # no policy matches the workload
    NOT_REACTING = "not_reacting"              # signature, severity or confidence below the policy's bar
    PROTECTED = "protected"                    # a protected principal: never touched
    PAUSED = "paused"                          # the global pause switch is on
    CAPPED = "capped"                          # a concurrency or traffic-share cap holds
    INSUFFICIENT_EVIDENCE = "insufficient_evidence"
    UNPLANNABLE = "unplannable"                # the rung needs identity the detection lacks
    WATCH = "watch"                            # a runaway that hurts nobody: recorded and escalated, no action
    QUARANTINED = "quarantined"                # new quarantine (or a watch that now hurts), acting now
    AWAITING_APPROVAL = "awaiting_approval"    # new quarantine, waiting for a human
    SHADOW = "shadow"                          # dry-run: recorded what it would do
    ESCALATED = "escalated"                    # next rung, acting now
    ESCALATION_AWAITING_APPROVAL = "escalation_awaiting_approval"
    COOLING_DOWN = "cooling_down"              # already quarantined; next rung not yet due
    TOP_RUNG = "top_rung"                      # already on the last rung
    UNDER_REVIEW = "under_review"              # appealed or awaiting approval: no escalation
    NOT_LEADER = "not_leader"                  # this engine does not hold the lease


@dataclass
class Decision:
    outcome: Outcome
    reason: str
    detection_id: str
    workload: dict[str, str]
    ts: float
    policy: str | None = None
    rung: int | None = None
    quarantine_id: str | None = None
    dry_run: bool = False
    intents: list[dict[str, Any]] = field(default_factory=list)   # {kind, target, params} before actuator.plan
    harm: dict[str, Any] | None = None   # guardian.policy.harm.Harm.to_dict(), when the harm test ran

    @property
    def acts(self) -> bool:
        return self.outcome in (Outcome.QUARANTINED, Outcome.ESCALATED)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outcome"] = self.outcome.value
        return d


def quarantine_id_for(detection_id: str, workload_key: str) -> str:
    """Deterministic, so a redelivered detection cannot open a second quarantine."""
    return "q-" + hashlib.sha256(f"{detection_id}|{workload_key}".encode()).hexdigest()[:16]


def workload_key(workload: dict[str, str]) -> str:
    """What a quarantine is keyed by: principal + client-id, else the narrowest identity known."""
    parts = [f"{k}={workload[k]}" for k in ("principal", "client_id") if workload.get(k)]
    if not parts:
        parts = [f"{k}={workload[k]}" for k in ("group", "pod", "topic") if workload.get(k)]
    return "|".join(parts) or "cluster"
