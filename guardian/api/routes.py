"""The ``/v1`` routes and the health probes.

Handlers are plain ``def`` (FastAPI runs them in a thread pool) because the
ledger and Redis calls are synchronous. Each handler authenticates through
``identity`` (which also spends the token's rate budget), lets the review
service authorise and act, and shapes the answer with the models.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from guardian.api.limits import fingerprint
from guardian.api.models import (Annotation, AppealIn, AppealPage, AppealView, ApproveIn, CommentIn, DenyIn,
                                 ExtendIn, Health, PauseIn, PauseState, PlanView, ProposalIn, QuarantineDetail,
                                 QuarantinePage, QuarantineSummary, ReleaseIn, TokenCreated, TokenIn, TokenView,
                                 WhoAmI)
from guardian.api.problems import responses
from guardian.api.service import InvalidRequestError, appeal_state, explain, principal_of
from guardian.api.auth import ROLE_ACTIONS, AGENT_GRANTABLE, Action, Identity, Role, authorize, normalize_principal
from guardian.model.quarantine import QState, Quarantine
from guardian.errors import ConfigError, NotFoundError, RateLimitedError

bearer = HTTPBearer(auto_error=False, description="a token from `guardian tokens create`")

READ_ERRORS = responses(401, 403, 422, 429, 503)
ITEM_ERRORS = responses(401, 403, 404, 422, 429, 503)
WRITE_ERRORS = responses(401, 403, 404, 409, 422, 429, 503)

QID = Path(min_length=1, max_length=80, description="quarantine id (q-...)")


def ctx_of(request: Request) -> Any:
    return request.app.state.ctx


def identity(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Identity:
    """Authenticate the bearer token (no cache: a revoked token fails at once) and spend one request."""
    ctx = ctx_of(request)
    who = ctx.tokens.authenticate(cred.credentials if cred is not None else None)
    request.state.identity = who
    rate, burst = ctx.rate_for(who)
    verdict = ctx.limiter.hit(f"tok:{who.token_id}", rate, burst, ctx.clock())
    if not verdict.allowed:
        raise RateLimitedError(f"token {who.token_id} is over its rate limit of {rate:g}/s (burst {burst})",
                               delay=verdict.retry_after_s)
    return who


IdempotencyKey = Header(None, alias="Idempotency-Key", min_length=1, max_length=200,
                        description="repeat a write safely: the same key and body return the first response")
IfMatch = Header(None, alias="If-Match", max_length=100, description="the quarantine's ETag (its version)")


def _expected(body_version: int | None, if_match: str | None) -> int | None:
    if if_match is None:
        return body_version
    raw = if_match.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    if not raw.isdigit() or len(raw) > 16:
        raise InvalidRequestError("If-Match must be the ETag this API returned, e.g. \"3\"")
    version = int(raw)
    if body_version is not None and body_version != version:
        raise InvalidRequestError("If-Match and expected_version disagree")
    return version


def _idempotent(request: Request, who: Identity, key: str | None, body: Any,
                produce: Callable[[], tuple[int, Any, dict[str, str]]]) -> Response:
    """Run ``produce`` once per (token, Idempotency-Key); repeats replay the stored answer."""
    ctx = ctx_of(request)
    if key is None:
        status, payload, headers = produce()
        return JSONResponse(payload, status_code=status, headers=headers)
    fp = fingerprint(request.method, request.url.path, body)
    stored = ctx.idempotency.begin(who.token_id, key, fp)
    if stored is not None:
        return JSONResponse(stored.body, status_code=stored.status, headers={"Idempotent-Replayed": "true"})
    try:
        status, payload, headers = produce()
    except BaseException:
        ctx.idempotency.abandon(who.token_id, key)
        raise
    ctx.idempotency.finish(who.token_id, key, fp, status, payload)
    return JSONResponse(payload, status_code=status, headers=headers)


# ---------------------------------------------------------------- shaping

def appeal_view(q: Quarantine, a: dict[str, Any]) -> AppealView:
    return AppealView(
        id=str(a.get("id") or f"{q.id}.1"), quarantine_id=q.id, state=appeal_state(a, q),
        justification=str(a.get("justification", a.get("reason", ""))),
        requested_limit=a.get("requested_limit"), until=a.get("until"),
        filed_by=str(a.get("by", "")), filed_at=float(a.get("ts", 0.0)),
        decided_by=a.get("decided_by"), decided_at=a.get("decided_at"), decision_note=a.get("note"),
        raised_limit=a.get("raised_limit"), raised_until=a.get("raised_until"))


def summary_fields(q: Quarantine, records: dict[str, Any]) -> dict[str, Any]:
    plans = []
    for p in q.desired:
        rec = records.get(p.get("idempotency_key", ""))
        plans.append(PlanView(kind=p.get("kind", ""), target={k: str(v) for k, v in p.get("target", {}).items()},
                              params=p.get("params", {}), rung=p.get("rung"),
                              status=rec.status.value if rec else None, error=rec.error if rec else None,
                              effect=rec.effect if rec else None))
    return dict(id=q.id, state=q.state.value, principal=principal_of(q), workload=dict(q.workload),
                policy=q.policy, rung=q.rung, dry_run=q.dry_run, created_at=q.created_at,
                updated_at=q.updated_at, expires_at=q.expires_at, version=q.version, explanation=explain(q),
                actions=plans,
                pending_approval=q.state in (QState.AWAITING_APPROVAL, QState.WATCHING) or q.pending_rung is not None,
                harm=q.harm,
                appeal=appeal_view(q, q.appeal) if q.appeal else None)


def detail(ctx: Any, q: Quarantine) -> QuarantineDetail:
    svc = ctx.service
    return QuarantineDetail(**summary_fields(q, svc.actions_of(q)), evidence=svc.evidence(q),
                            history=q.history, probation=svc.probation(q))


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True)


def _etag(q: Quarantine) -> dict[str, str]:
    return {"ETag": f'"{q.version}"'}


# ---------------------------------------------------------------- health

health = APIRouter(tags=["health"])


@health.get("/healthz", response_model=Health, summary="the process answers")
def healthz() -> Health:
    return Health(status="ok")


@health.get("/readyz", response_model=Health, summary="Redis answers and the ledger is readable",
            responses={503: {"model": Health, "description": "not ready"}})
def readyz(request: Request) -> Response:
    ctx = ctx_of(request)
    checks: dict[str, str] = {}
    try:
        checks["redis"] = "ok" if ctx.redis.ping() else "no PONG"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which
        checks["redis"] = f"error: {type(exc).__name__}"
    try:
        ctx.ledger.pause_state()
        checks["ledger"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["ledger"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(_dump(body), status_code=200 if ok else 503)


# ---------------------------------------------------------------- v1

v1 = APIRouter(prefix="/v1")


@v1.get("/whoami", response_model=WhoAmI, responses=READ_ERRORS, tags=["auth"])
def whoami(request: Request, who: Identity = Depends(identity)) -> WhoAmI:
    access = ctx_of(request).service.access
    acts = sorted(a.value for a in Action if authorize(who, a, None, access).allowed)
    return WhoAmI(token_id=who.token_id, role=who.role, principals=list(who.principals), name=who.name,
                  actions=acts)


@v1.get("/quarantines", response_model=QuarantinePage, responses=READ_ERRORS, tags=["quarantines"],
        summary="quarantines this token may see, newest first")
def list_quarantines(
    request: Request,
    state: list[QState] | None = Query(None, description="repeat for several"),
    principal: str | None = Query(None, max_length=300, description="e.g. User:tenant-a"),
    policy: str | None = Query(None, max_length=200),
    action: str | None = Query(None, max_length=20, description="quota, acl or pod"),
    appealed: bool | None = Query(None, description="only (or no) quarantines with a pending appeal"),
    cursor: str | None = Query(None, max_length=500),
    limit: int = Query(50, ge=1, le=200),
    who: Identity = Depends(identity),
) -> QuarantinePage:
    ctx = ctx_of(request)
    if principal is not None:
        principal = normalize_principal(principal) if principal.strip() else principal
    items, nxt = ctx.service.list_quarantines(who, states=state, principal=principal, policy=policy, action=action,
                                              appealed=appealed, cursor=cursor, limit=limit)
    return QuarantinePage(items=[QuarantineSummary(**summary_fields(q, ctx.service.actions_of(q))) for q in items],
                          next_cursor=nxt)


@v1.get("/quarantines/{qid}", response_model=QuarantineDetail, responses=ITEM_ERRORS, tags=["quarantines"],
        summary="one quarantine with its evidence, actions and history")
def get_quarantine(request: Request, response: Response, qid: str = QID,
                   who: Identity = Depends(identity)) -> QuarantineDetail:
    ctx = ctx_of(request)
    q = ctx.service.load(who, qid, Action.QUARANTINE_READ)
    response.headers.update(_etag(q))
    return detail(ctx, q)


@v1.post("/quarantines/{qid}/appeal", status_code=201, response_model=AppealView, responses=WRITE_ERRORS,
         tags=["appeals"], summary="file an appeal (tenant, agent, sre)")
def file_appeal(request: Request, qid: str = QID, body: AppealIn = Body(...),
                idempotency_key: str | None = IdempotencyKey, who: Identity = Depends(identity)) -> Response:
    ctx = ctx_of(request)

    def produce() -> tuple[int, Any, dict[str, str]]:
        q, a = ctx.service.file_appeal(who, qid, body.justification, body.requested_limit, body.until)
        return 201, _dump(appeal_view(q, a)), {"Location": f"/v1/appeals/{a['id']}"}

    return _idempotent(request, who, idempotency_key, _dump(body), produce)


def _decision_route(verb: str, model: type, summary: str) -> None:
    def handler(request: Request, qid: str = QID, body: Any = Body(...),
                idempotency_key: str | None = IdempotencyKey, if_match: str | None = IfMatch,
                who: Identity = Depends(identity)) -> Response:
        ctx = ctx_of(request)
        expected = _expected(body.expected_version, if_match)

        def produce() -> tuple[int, Any, dict[str, str]]:
            svc = ctx.service
            if verb == "approve":
                q = svc.approve(who, qid, body.reason, body.raised_limit, body.until, expected)
            elif verb == "deny":
                q = svc.deny(who, qid, body.reason, expected)
            elif verb == "release":
                q = svc.release(who, qid, body.reason, expected)
            else:
                q = svc.extend(who, qid, body.seconds, body.reason, expected)
            return 200, _dump(detail(ctx, q)), _etag(q)

        return _idempotent(request, who, idempotency_key, _dump(body), produce)

    handler.__annotations__["body"] = model
    handler.__name__ = f"{verb}_quarantine"
    v1.post(f"/quarantines/{{qid}}/{verb}", response_model=QuarantineDetail, responses=WRITE_ERRORS,
            tags=["review"], summary=summary, operation_id=f"{verb}_quarantine")(handler)


_decision_route("approve", ApproveIn, "grant the pending appeal (optionally a raised limit until a time) "
                                      "or let an action awaiting approval act")
_decision_route("deny", DenyIn, "deny the pending appeal (the throttle stays) or reject an awaiting action")
_decision_route("release", ReleaseIn, "revert every action now; probation starts")
_decision_route("extend", ExtendIn, "push the expiry back")


@v1.post("/quarantines/{qid}/comments", status_code=201, response_model=QuarantineDetail, responses=WRITE_ERRORS,
         tags=["review"], summary="add a comment to the quarantine's history")
def comment(request: Request, qid: str = QID, body: CommentIn = Body(...),
            idempotency_key: str | None = IdempotencyKey, who: Identity = Depends(identity)) -> Response:
    ctx = ctx_of(request)

    def produce() -> tuple[int, Any, dict[str, str]]:
        q = ctx.service.comment(who, qid, body.text)
        return 201, _dump(detail(ctx, q)), _etag(q)

    return _idempotent(request, who, idempotency_key, _dump(body), produce)


@v1.post("/quarantines/{qid}/proposals", status_code=201, response_model=QuarantineDetail,
         responses=WRITE_ERRORS, tags=["review"], summary="propose an action for a human to approve (agents)")
def propose(request: Request, qid: str = QID, body: ProposalIn = Body(...),
            idempotency_key: str | None = IdempotencyKey, who: Identity = Depends(identity)) -> Response:
    ctx = ctx_of(request)

    def produce() -> tuple[int, Any, dict[str, str]]:
        q = ctx.service.propose(who, qid, body.action, body.reason, body.seconds)
        return 201, _dump(detail(ctx, q)), _etag(q)

    return _idempotent(request, who, idempotency_key, _dump(body), produce)


@v1.get("/appeals", response_model=AppealPage, responses=READ_ERRORS, tags=["appeals"],
        summary="appeals this token may see, newest first")
def list_appeals(request: Request,
                 state: str | None = Query(None, pattern="^(pending|granted|denied|lapsed)$"),
                 cursor: str | None = Query(None, max_length=500), limit: int = Query(50, ge=1, le=200),
                 who: Identity = Depends(identity)) -> AppealPage:
    rows, nxt = ctx_of(request).service.list_appeals(who, state, cursor, limit)
    return AppealPage(items=[appeal_view(q, a) for q, a in rows], next_cursor=nxt)


@v1.get("/appeals/{appeal_id}", response_model=AppealView, responses=ITEM_ERRORS, tags=["appeals"])
def get_appeal(request: Request, appeal_id: str = Path(min_length=1, max_length=100),
               who: Identity = Depends(identity)) -> AppealView:
    q, a = ctx_of(request).service.find_appeal(who, appeal_id)
    return appeal_view(q, a)


def _pause_state(ctx: Any) -> PauseState:
    st = ctx.ledger.pause_state()
    if not st:
        return PauseState(paused=False)
    return PauseState(paused=True, by=st.get("by"), reason=st.get("reason"), since=st.get("ts"))


@v1.get("/pause", response_model=PauseState, responses=READ_ERRORS, tags=["guardian"])
def pause_state(request: Request, who: Identity = Depends(identity)) -> PauseState:
    ctx = ctx_of(request)
    ctx.service.require(who, Action.PAUSE_READ)
    return _pause_state(ctx)


@v1.post("/pause", response_model=PauseState, responses=WRITE_ERRORS, tags=["guardian"],
         summary="stop acting: no new actions apply until resumed (reverts still run)")
def pause(request: Request, body: PauseIn = Body(PauseIn()), idempotency_key: str | None = IdempotencyKey,
          who: Identity = Depends(identity)) -> Response:
    ctx = ctx_of(request)

    def produce() -> tuple[int, Any, dict[str, str]]:
        ctx.service.pause(who, body.reason)
        return 200, _dump(_pause_state(ctx)), {}

    return _idempotent(request, who, idempotency_key, _dump(body), produce)


@v1.post("/resume", response_model=PauseState, responses=WRITE_ERRORS, tags=["guardian"])
def resume(request: Request, body: PauseIn = Body(PauseIn()), idempotency_key: str | None = IdempotencyKey,
           who: Identity = Depends(identity)) -> Response:
    ctx = ctx_of(request)

    def produce() -> tuple[int, Any, dict[str, str]]:
        ctx.service.resume(who, body.reason)
        return 200, _dump(_pause_state(ctx)), {}

    return _idempotent(request, who, idempotency_key, _dump(body), produce)


_MAX_MS = 10**15


@v1.get("/decisions", response_model=list[Annotation], responses=READ_ERRORS, tags=["decisions"],
        summary="state changes, comments and proposals between from and to, as Grafana annotations")
def decisions(request: Request,
              from_ms: int | None = Query(None, alias="from", ge=0, le=_MAX_MS, description="epoch ms; default to-24h"),
              to_ms: int | None = Query(None, alias="to", ge=0, le=_MAX_MS, description="epoch ms; default now"),
              limit: int = Query(1000, ge=1, le=10000), who: Identity = Depends(identity)) -> list[Annotation]:
    ctx = ctx_of(request)
    end = to_ms if to_ms is not None else int(ctx.clock() * 1000)
    start = from_ms if from_ms is not None else max(0, end - 24 * 3600 * 1000)
    if start > end:
        raise InvalidRequestError("`from` is after `to`")
    return [Annotation(**r) for r in ctx.service.decisions(who, start, end, limit)]


@v1.get("/policies", response_model=dict[str, Any], responses=READ_ERRORS, tags=["guardian"],
        summary="the policies the engine runs")
def policies(request: Request, who: Identity = Depends(identity)) -> dict[str, Any]:
    ctx = ctx_of(request)
    ctx.service.require(who, Action.POLICY_READ)
    return ctx.engine.policies.model_dump(mode="json", by_alias=True)


@v1.get("/audit", response_model=list[dict[str, Any]], responses=READ_ERRORS, tags=["guardian"],
        summary="the most recent API requests (who, what, result)")
def audit(request: Request, limit: int = Query(100, ge=1, le=1000),
          who: Identity = Depends(identity)) -> list[dict[str, Any]]:
    ctx = ctx_of(request)
    ctx.service.require(who, Action.AUDIT_READ)
    return ctx.recent_audit(limit)


# ---------------------------------------------------------------- tokens (admin)

def _token_view(info: Any) -> TokenView:
    return TokenView(id=info.id, role=info.role, principals=list(info.principals), name=info.name,
                     created_at=info.created_at, created_by=info.created_by)


@v1.get("/tokens", response_model=list[TokenView], responses=READ_ERRORS, tags=["tokens"])
def list_tokens(request: Request, who: Identity = Depends(identity)) -> list[TokenView]:
    ctx = ctx_of(request)
    ctx.service.require(who, Action.TOKENS_MANAGE)
    return [_token_view(i) for i in ctx.tokens.list()]


@v1.post("/tokens", status_code=201, response_model=TokenCreated, responses=WRITE_ERRORS, tags=["tokens"])
def create_token(request: Request, body: TokenIn = Body(...), idempotency_key: str | None = IdempotencyKey,
                 who: Identity = Depends(identity)) -> Response:
    ctx = ctx_of(request)
    ctx.service.require(who, Action.TOKENS_MANAGE)

    def produce() -> tuple[int, Any, dict[str, str]]:
        try:
            token, info = ctx.tokens.create(body.role, body.principals, body.name, who.label, ctx.clock())
        except ConfigError as exc:
            raise InvalidRequestError(str(exc)) from None
        request.state.audit_note = f"created token {info.id} ({info.role.value})"
        return 201, _dump(TokenCreated(**_dump(_token_view(info)), token=token)), {}

    return _idempotent(request, who, idempotency_key, _dump(body), produce)


@v1.delete("/tokens/{token_id}", status_code=204, responses=ITEM_ERRORS, tags=["tokens"])
def revoke_token(request: Request, token_id: str = Path(min_length=1, max_length=64),
                 who: Identity = Depends(identity)) -> Response:
    ctx = ctx_of(request)
    ctx.service.require(who, Action.TOKENS_MANAGE)
    if not ctx.tokens.revoke(token_id):
        raise NotFoundError(f"no token {token_id}")
    request.state.audit_note = f"revoked token {token_id}"
    return Response(status_code=204)


__all__ = ["health", "v1", "ROLE_ACTIONS", "AGENT_GRANTABLE", "Role"]
