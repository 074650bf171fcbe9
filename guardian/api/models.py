"""The API's request and response shapes (pydantic; they are the OpenAPI schema).

Times are Unix seconds (floats) as in the ledger, except the decisions feed,
which speaks Grafana's epoch milliseconds. Text that tenants wrote
(justifications, comments, client-ids) is returned as JSON strings and never
interpreted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from guardian.api.auth import Role

MAX_TEXT = 4000
_MAX_TS = 1e11          # year ~5138: rejects absurd times without overflow
_MAX_RATE = 1e13        # bytes/s or percent; far above any real quota
_MAX_EXTEND_S = 30 * 24 * 3600.0


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """RFC 9457 (formerly 7807) problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


# ---------------------------------------------------------------- quarantines

class PlanView(_Out):
    kind: str
    target: dict[str, str]
    params: dict[str, Any]
    rung: int | None = None
    status: str | None = Field(None, description="progress on the cluster: planned, applied, verified, reverted, "
                                                 "failed; null = not started")
    error: str | None = None
    effect: dict[str, Any] | None = Field(None, description="a verified throttle's effect on the client's "
                                                           "cluster-wide rate, judged once: result (effective, "
                                                           "not_effective, unmeasured, skipped), line, target, "
                                                           "per_broker, measured, brokers, window, moved")


class HistoryEntry(_Out):
    ts: float
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    by: str = ""
    reason: str = ""
    event: str | None = None


class Point(_Out):
    ts: float
    value: float


class Evidence(_Out):
    explanation: str
    signature: str | None = None
    severity: str | None = None
    confidence: float | None = None
    metric: str | None = None
    baseline: float | None = None
    observed: float | None = None
    ratio: float | None = None
    duration_s: float | None = None
    detector: str | None = None
    detected_at: float | None = None
    series: list[Point] = Field(default_factory=list, description="the metric around the detection")
    window_from: float | None = None
    window_to: float | None = None


AppealState = Literal["pending", "granted", "denied", "lapsed"]


class AppealView(_Out):
    id: str
    quarantine_id: str
    state: AppealState
    justification: str
    requested_limit: float | None = None
    until: float | None = None
    filed_by: str
    filed_at: float
    decided_by: str | None = None
    decided_at: float | None = None
    decision_note: str | None = None
    raised_limit: float | None = None
    raised_until: float | None = None


class QuarantineSummary(_Out):
    id: str
    state: str
    principal: str | None
    workload: dict[str, str]
    policy: str
    rung: int
    dry_run: bool
    created_at: float
    updated_at: float
    expires_at: float
    version: int
    explanation: str
    actions: list[PlanView]
    pending_approval: bool
    appeal: AppealView | None = None
    # what harm the engine saw when it decided: why it throttled, or why it only watches
    harm: dict[str, Any] | None = None


class QuarantineDetail(QuarantineSummary):
    evidence: Evidence | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    probation: dict[str, Any] | None = None


class QuarantinePage(_Out):
    items: list[QuarantineSummary]
    next_cursor: str | None = None


class AppealPage(_Out):
    items: list[AppealView]
    next_cursor: str | None = None


# ---------------------------------------------------------------- writes

class _Versioned(_In):
    expected_version: int | None = Field(None, ge=1, le=2**53,
                                         description="fail with 409 unless the quarantine still has this version "
                                                     "(the If-Match header does the same)")


class AppealIn(_In):
    justification: str = Field(min_length=1, max_length=MAX_TEXT)
    requested_limit: float | None = Field(None, gt=0, le=_MAX_RATE,
                                          description="the limit the tenant asks for, in the throttle's unit")
    until: float | None = Field(None, gt=0, le=_MAX_TS, description="until when the tenant needs it (Unix s)")


class ApproveIn(_Versioned):
    reason: str = Field("", max_length=MAX_TEXT)
    raised_limit: float | None = Field(None, gt=0, le=_MAX_RATE,
                                       description="instead of releasing, relax the throttle to this limit "
                                                   "until `until`; the original quota returns exactly afterwards")
    until: float | None = Field(None, gt=0, le=_MAX_TS)


class DenyIn(_Versioned):
    reason: str = Field(min_length=1, max_length=MAX_TEXT)


class ReleaseIn(_Versioned):
    reason: str = Field("", max_length=MAX_TEXT)


class ExtendIn(_Versioned):
    seconds: float = Field(gt=0, le=_MAX_EXTEND_S)
    reason: str = Field("", max_length=MAX_TEXT)


class CommentIn(_In):
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class ProposalIn(_In):
    action: Literal["approve", "deny", "release", "extend"]
    reason: str = Field(min_length=1, max_length=MAX_TEXT)
    seconds: float | None = Field(None, gt=0, le=_MAX_EXTEND_S, description="for extend")


class PauseIn(_In):
    reason: str = Field("", max_length=MAX_TEXT)


class PauseState(_Out):
    paused: bool
    by: str | None = None
    reason: str | None = None
    since: float | None = None


# ---------------------------------------------------------------- feed, tokens, misc

class Annotation(_Out):
    """One row of the decisions feed: a Grafana annotation (time/timeEnd in epoch ms) and a table row."""

    time: int
    timeEnd: int
    title: str
    text: str
    tags: list[str]
    quarantine_id: str
    event: str
    state: str
    by: str
    principal: str | None = None
    policy: str


class TokenIn(_In):
    role: Role
    principals: list[str] = Field(default_factory=list, max_length=50)
    name: str = Field("", max_length=200)


class TokenView(_Out):
    id: str
    role: Role
    principals: list[str]
    name: str
    created_at: float
    created_by: str


class TokenCreated(TokenView):
    token: str = Field(description="shown once; only its hash is stored")


class WhoAmI(_Out):
    token_id: str
    role: Role
    principals: list[str]
    name: str
    actions: list[str]


class Health(_Out):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
