"""Detections: what a detector emits and the policy engine consumes.

Pure data. Every detection explains itself (metric, baseline, observed,
ratio, duration and the samples behind it) so a human or an agent can judge it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Signature(str, Enum):
    """The named runaway patterns."""

    RUNAWAY_PRODUCER = "runaway_producer"
    RETRY_STORM = "retry_storm"
    RUNAWAY_CONSUMER = "runaway_consumer"
    LAG_EXPLOSION = "lag_explosion"
    REBALANCE_STORM = "rebalance_storm"
    PARTITION_STORM = "partition_storm"
    CONNECTION_STORM = "connection_storm"
    ANOMALY = "anomaly"  # a generic anomaly on one metric, no named pattern


class Severity(str, Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return ["low", "medium", "high", "critical"].index(self.value)


@dataclass(frozen=True)
class Detection:
    """One runaway finding for one workload.

    ``workload`` is the ``Workload.as_dict()`` of the offender; ``evidence`` holds
    ``(ts, value)`` pairs of the samples behind the finding.
    """

    id: str
    ts: float
    signature: Signature
    severity: Severity
    confidence: float
    workload: dict[str, str]
    metric: str
    baseline: float
    observed: float
    ratio: float
    duration_s: float
    evidence: list[tuple[float, float]] = field(default_factory=list)
    detector: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def explain(self) -> str:
        who = self.workload.get("principal", "?")
        cid = self.workload.get("client_id")
        who = f"{who} client-id {cid}" if cid else who
        return (f"{self.signature.value} ({self.severity.value}, confidence {self.confidence:.2f}): "
                f"{who} {self.metric} = {self.observed:.4g} vs baseline {self.baseline:.4g} "
                f"({self.ratio:.1f}x) for {self.duration_s:.0f}s")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["signature"] = self.signature.value
        d["severity"] = self.severity.value
        d["evidence"] = [list(p) for p in self.evidence]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Detection":
        d = dict(d)
        d["signature"] = Signature(d["signature"])
        d["severity"] = Severity(d["severity"])
        d["evidence"] = [tuple(p) for p in d.get("evidence", [])]
        return cls(**d)
