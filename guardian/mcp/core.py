"""What the MCP tools do, synchronously and without the protocol: authenticate, limit, authorise, act, audit.

Every call goes through :meth:`McpCore.call`, in this order:

1. authenticate the bearer token against the API's token store (no cache: a
   revoked token fails on its next call);
2. spend one unit of the token's rate budget in the API's Redis token bucket
   (the same bucket as its HTTP requests: MCP is not a second budget);
3. ask ``guardian.api.auth`` (``require``) whether the role may do the tool's
   action at all; the review service then asks again for the quarantine
   itself, which hides other tenants' records ("not found", never "forbidden");
4. act through the API's ``ReviewService`` (the engine's verbs, the ledger);
5. audit the call with the token's identity into the same outbox and recent
   list as the API (``GET /v1/audit`` shows MCP calls as ``type: "mcp"``).

Answers are envelopes from :mod:`guardian.mcp.envelope`; refusals are answers
too (``ok: false`` with an ``error``), never exceptions.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from guardian.api.app import ApiContext, build_engine
from guardian.api.limits import IdempotencyStore, RateLimiter
from guardian.api.service import DetectionEvidence, InvalidRequestError, ReviewService, appeal_state
from guardian.api.auth import AccessPolicy, Action, Identity, TokenStore, authorize, normalize_principal
from guardian.model.quarantine import QState, Quarantine
from guardian.errors import (AuthenticationError, AuthorizationError, ConfigError, ConflictError, GuardianError,
                             NotFoundError, PermanentError, RateLimitedError, TemporaryError)
from guardian.escalation.summary import action_text, blast_radius, follow_up, principal_text, quote
from guardian.mcp.envelope import render
from guardian.mcp.runbooks import RUNBOOKS, runbook
from guardian.settings import GuardianSettings, redis_url_for

log = logging.getLogger(__name__)

# (error class, type, audit result); the first match wins, so subclasses come first.
_ERRORS: list[tuple[type[GuardianError], str, str]] = [
    (NotFoundError, "not_found", "refused"),
    (AuthenticationError, "unauthenticated", "refused"),
    (AuthorizationError, "forbidden", "refused"),
    (RateLimitedError, "rate_limited", "refused"),
    (ConflictError, "conflict", "refused"),
    (InvalidRequestError, "invalid", "refused"),
    (ConfigError, "invalid", "refused"),
    (TemporaryError, "unavailable", "error"),
    (PermanentError, "invalid", "refused"),
]
MAX_AUDITED_ARG = 200
POLICIES_URI = "guardian://policies/active"


class Answer:
    """One tool or resource answer: the text block and the structured content (the same JSON)."""

    __slots__ = ("text", "body", "ok")

    def __init__(self, text: str, body: dict[str, Any]) -> None:
        self.text, self.body, self.ok = text, body, bool(body.get("ok"))


def bearer(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _audited_args(args: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in args.items():
        if v is None:
            continue
        out[k] = v if isinstance(v, (int, float, bool)) else str(v)[:MAX_AUDITED_ARG]
    return out


def _fmt(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return quote(x)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def who_text(workload: dict[str, Any]) -> str:
    """The workload in words, every tenant-chosen value quoted and escaped."""
    parts = [principal_text(workload.get("principal")) if workload.get("principal") else "an unknown principal"]
    for key, label in (("client_id", "client-id"), ("group", "group"), ("topic", "topic"), ("pod", "pod")):
        if workload.get(key) is not None:
            parts.append(f"{label} {quote(workload[key])}")
    return " ".join(parts)


def safe_explanation(q: Quarantine) -> str:
    """``Detection.explain`` with the tenant's values quoted: a sentence an agent cannot mistake for orders."""
    d = q.detection or {}
    if not d:
        return f"no detection recorded for {who_text(q.workload)}"
    return (f"{quote(d.get('signature'), 32)[1:-1]} ({quote(d.get('severity'), 16)[1:-1]}, confidence "
            f"{_fmt(d.get('confidence'))}): {who_text(q.workload)} {quote(d.get('metric'), 48)} = "
            f"{_fmt(d.get('observed'))} vs baseline {_fmt(d.get('baseline'))} ({_fmt(d.get('ratio'))}x) "
            f"for {_fmt(d.get('duration_s'))}s")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class McpCore:
    api: ApiContext
    policy_source: str = ""

    @classmethod
    def build(cls, settings: GuardianSettings, *, engine: Any | None = None, redis_client: Any | None = None,
              clock: Callable[[], float] = time.time, access: AccessPolicy | None = None) -> "McpCore":
        """The same wiring as the API (``create_app``): its engine, token store, rate limiter and audit."""
        from guardian.policy.config import default_policy_path

        if redis_client is None:
            if engine is not None:
                redis_client = engine.ledger.client
            else:
                import redis

                redis_client = redis.Redis.from_url(redis_url_for(settings), socket_timeout=5,
                                                    socket_connect_timeout=5)
        if engine is None:
            engine = build_engine(settings, redis_client, clock)
        prefix = engine.ledger.prefix
        service = ReviewService(engine=engine, access=access or AccessPolicy.of(settings.api.agent_grants),
                                series_source=DetectionEvidence(), scan_limit=settings.api.scan_limit)
        api = ApiContext(settings=settings, redis=redis_client, service=service,
                         tokens=TokenStore(redis_client, prefix), limiter=RateLimiter(redis_client, prefix),
                         idempotency=IdempotencyStore(redis_client, prefix, settings.api.idempotency_ttl_s),
                         clock=clock)
        return cls(api=api, policy_source=str(settings.policy_file or default_policy_path()))

    @property
    def service(self) -> ReviewService:
        return self.api.service

    # ---------------------------------------------------------------- the one path
    def authenticate(self, token: str | None) -> Identity:
        return self.api.tokens.authenticate(token)

    def call(self, tool: str, token: str | None, transport: str, action: Action,
             fn: Callable[[Identity], tuple[Any, dict[str, Any] | None]], args: dict[str, Any] | None = None,
             target: str | None = None) -> Answer:
        """Run one tool (or resource read) for the bearer of ``token``; never raises a ``GuardianError``."""
        args = args or {}
        started = self.api.clock()
        who: Identity | None = None
        result, reason = "ok", None
        try:
            who = self.authenticate(token)
            rate, burst = self.api.rate_for(who)
            verdict = self.api.limiter.hit(f"tok:{who.token_id}", rate, burst, self.api.clock())
            if not verdict.allowed:
                raise RateLimitedError(f"token {who.token_id} is over its rate limit of {rate:g}/s (burst {burst})",
                                       delay=verdict.retry_after_s)
            self.service.require(who, action)   # the role may do this at all (resource checks follow)
            data, extra = fn(who)
            return Answer(*render(tool, data, extra=extra))
        except GuardianError as exc:
            kind, result = next(((k, r) for cls, k, r in _ERRORS if isinstance(exc, cls)), ("internal", "error"))
            reason = str(exc)
            error: dict[str, Any] = {"type": kind, "message": reason}
            if isinstance(exc, RateLimitedError):
                error["retry_after_s"] = round(exc.delay, 3)
            return Answer(*render(tool, error=error))
        except Exception:  # noqa: BLE001 - one bad call must not end the session; the log has the trace
            log.exception("MCP tool %s failed", tool)
            result, reason = "error", "internal error"
            return Answer(*render(tool, error={"type": "internal", "message": "internal error; see the server log"}))
        finally:
            self._audit(tool, transport, who, result, reason, args, target, started)

    def refused_at_the_door(self, transport: str, what: str, reason: str) -> None:
        """Audit a request the transport refused before any tool ran (no or a bad token)."""
        self._audit(what, transport, None, "refused", reason, {}, None, self.api.clock())

    def _audit(self, tool: str, transport: str, who: Identity | None, result: str, reason: str | None,
               args: dict[str, Any], target: str | None, started: float) -> None:
        rec = {"id": f"mcp:{uuid.uuid4().hex}", "ts": started, "type": "mcp", "transport": transport,
               "key": who.token_id if who else "anonymous", "who": who.label if who else "anonymous",
               "role": who.role.value if who else None, "principals": list(who.principals) if who else [],
               "tool": tool, "target": target, "arguments": _audited_args(args), "result": result}
        if reason:
            rec["reason"] = reason[:500]
        try:
            self.api.audit(rec)
        except Exception:  # noqa: BLE001 - the call is done; a lost audit line must be loud, not fatal
            log.exception("could not audit MCP %s (%s)", tool, result)

    # ---------------------------------------------------------------- shaping
    def quarantine_view(self, q: Quarantine, full: bool) -> dict[str, Any]:
        from guardian.api.routes import detail, summary_fields
        from guardian.api.models import QuarantineSummary

        model = detail(self.api, q) if full else QuarantineSummary(**summary_fields(q, self.service.actions_of(q)))
        view = model.model_dump(mode="json", by_alias=True)
        view["explanation"] = safe_explanation(q)
        if view.get("evidence"):
            view["evidence"]["explanation"] = view["explanation"]
        if full:
            view["appeals"] = [self.appeal_view(q, a) for a in ([q.appeal] + list(q.appeal.get("previous") or [])
                                                               if q.appeal else [])]
            sig = (q.detection or {}).get("signature")
            rb = runbook(sig) if sig else None
            view["runbook"] = rb.uri if rb else None
        return view

    @staticmethod
    def appeal_view(q: Quarantine, a: dict[str, Any]) -> dict[str, Any]:
        from guardian.api.routes import appeal_view

        return appeal_view(q, a).model_dump(mode="json", by_alias=True)

    # ---------------------------------------------------------------- tools
    def whoami(self, who: Identity) -> tuple[Any, None]:
        access = self.service.access
        acts = sorted(a.value for a in Action if authorize(who, a, None, access).allowed)
        return {"token_id": who.token_id, "role": who.role.value, "principals": list(who.principals),
                "name": who.name, "actions": acts}, None

    def list_quarantines(self, who: Identity, states: list[str] | None, principal: str | None,
                         appealed: bool | None, cursor: str | None, limit: int) -> tuple[Any, dict[str, Any]]:
        try:
            st = [QState(s) for s in states] if states else None
        except ValueError:
            raise InvalidRequestError(f"state must be one of {', '.join(s.value for s in QState)}") from None
        if principal is not None and principal.strip():
            principal = normalize_principal(principal)
        items, nxt = self.service.list_quarantines(who, states=st, principal=principal, appealed=appealed,
                                                   cursor=cursor, limit=limit)
        return [self.quarantine_view(q, full=False) for q in items], {"next_cursor": nxt}

    def get_quarantine(self, who: Identity, qid: str) -> tuple[Any, None]:
        q = self.service.load(who, qid, Action.QUARANTINE_READ)
        return self.quarantine_view(q, full=True), None

    def explain_detection(self, who: Identity, qid: str) -> tuple[Any, None]:
        q = self.service.load(who, qid, Action.QUARANTINE_READ)
        d = q.detection or {}
        sig = d.get("signature")
        rb = runbook(sig) if sig else None
        lines = [f"Finding: {safe_explanation(q)}."]
        if d:
            n = len(d.get("evidence") or [])
            lines.append(f"In plain words: the metric {quote(d.get('metric'), 48)} of {who_text(q.workload)} ran at "
                         f"{_fmt(d.get('observed'))}, {_fmt(d.get('ratio'))} times its own normal of "
                         f"{_fmt(d.get('baseline'))}, for {_fmt(d.get('duration_s'))} seconds"
                         + (f" ({n} samples behind it; get_quarantine has the series)." if n else "."))
        if rb is not None:
            lines.append(f"What the pattern means: {rb.meaning} Runbook: {rb.uri}")
        actions = q.desired
        if q.dry_run:
            lines.append("Action: none; the policy runs in dry-run, so the cluster was not changed.")
        elif actions:
            lines.append(f"Action: {'; '.join(action_text(a) for a in actions[:4])} (policy {quote(q.policy, 40)}, "
                         f"rung {q.rung}).")
            lines.append(f"Who it affects: {blast_radius(actions)['text']}.")
        else:
            lines.append("Action: none applied yet.")
        state = f"State: {q.state.value}"
        if not q.state.terminal:
            state += f", ends {_iso(q.expires_at)} unless extended or released"
        if q.state is QState.AWAITING_APPROVAL or q.pending_rung is not None:
            state += "; an action awaits an SRE's approval"
        if q.state is QState.WATCHING:
            state += "; watched, not acted on: no harm was seen (an SRE's approval turns it into a quarantine)"
        if q.harm and q.harm.get("line"):
            lines.append(f"Harm: {quote(q.harm['line'], 400)[1:-1]}.")
        if q.appeal:
            state += f"; appeal {q.appeal.get('id', '')} is {appeal_state(q.appeal, q)}"
        lines.append(state + ".")
        allowed = [a.value for a in (Action.APPEAL_FILE, Action.QUARANTINE_COMMENT, Action.QUARANTINE_PROPOSE,
                                     Action.QUARANTINE_APPROVE, Action.QUARANTINE_DENY, Action.QUARANTINE_RELEASE,
                                     Action.QUARANTINE_EXTEND) if self.service.allowed(who, a)]
        lines.append(f"Your token ({who.role.value}) may: {', '.join(allowed) or 'only read'}.")
        event = {QState.APPEALED: "appealed", QState.AWAITING_APPROVAL: "awaiting_approval", QState.WATCHING: "watch",
                 QState.RELEASED: "released", QState.EXPIRED: "expired"}.get(q.state, "created")
        return {"quarantine_id": q.id, "state": q.state.value, "signature": sig, "explanation": lines,
                "numbers": {k: d.get(k) for k in ("metric", "observed", "baseline", "ratio", "duration_s",
                                                  "severity", "confidence") if k in d},
                "runbook": rb.uri if rb else None, "follow_up": follow_up(q.id, event)}, None

    def list_decisions(self, who: Identity, from_ms: int | None, to_ms: int | None,
                       limit: int) -> tuple[Any, None]:
        end = to_ms if to_ms is not None else int(self.api.clock() * 1000)
        start = from_ms if from_ms is not None else max(0, end - 24 * 3600 * 1000)
        if start > end:
            raise InvalidRequestError("`from_ms` is after `to_ms`")
        return self.service.decisions(who, start, end, limit), None

    def list_appeals(self, who: Identity, state: str | None, cursor: str | None,
                     limit: int) -> tuple[Any, dict[str, Any]]:
        rows, nxt = self.service.list_appeals(who, state, cursor, limit)
        return [self.appeal_view(q, a) for q, a in rows], {"next_cursor": nxt}

    def file_appeal(self, who: Identity, qid: str, justification: str, requested_limit: float | None,
                    until: float | None) -> tuple[Any, None]:
        q, a = self.service.file_appeal(who, qid, justification, requested_limit, until)
        return self.appeal_view(q, a), None

    def add_comment(self, who: Identity, qid: str, text: str) -> tuple[Any, None]:
        q = self.service.comment(who, qid, text)
        return {"quarantine_id": q.id, "version": q.version, "comment": q.history[-1]}, None

    def propose_action(self, who: Identity, qid: str, action: str, reason: str,
                       seconds: float | None) -> tuple[Any, None]:
        q = self.service.propose(who, qid, action, reason, seconds)
        return {"quarantine_id": q.id, "version": q.version, "proposal": q.history[-1],
                "note": "recorded for a human to decide; nothing changed on the cluster"}, None

    def approve(self, who: Identity, qid: str, reason: str, raised_limit: float | None, until: float | None,
                expected_version: int | None) -> tuple[Any, None]:
        q = self.service.approve(who, qid, reason, raised_limit, until, expected_version)
        return self.quarantine_view(q, full=True), None

    def deny(self, who: Identity, qid: str, reason: str, expected_version: int | None) -> tuple[Any, None]:
        return self.quarantine_view(self.service.deny(who, qid, reason, expected_version), full=True), None

    def release(self, who: Identity, qid: str, reason: str, expected_version: int | None) -> tuple[Any, None]:
        return self.quarantine_view(self.service.release(who, qid, reason, expected_version), full=True), None

    def extend(self, who: Identity, qid: str, seconds: float, reason: str,
               expected_version: int | None) -> tuple[Any, None]:
        q = self.service.extend(who, qid, seconds, reason, expected_version)
        return self.quarantine_view(q, full=True), None

    def pause(self, who: Identity, reason: str) -> tuple[Any, None]:
        st = self.service.pause(who, reason)
        return {"paused": True, "by": st.get("by"), "reason": st.get("reason"), "since": st.get("ts")}, None

    def resume(self, who: Identity, reason: str) -> tuple[Any, None]:
        self.service.resume(who, reason)
        return {"paused": False}, None

    # ---------------------------------------------------------------- resources
    def policies(self, who: Identity) -> tuple[Any, None]:
        engine = self.service.engine
        return {"source": self.policy_source,
                "agent_grants": sorted(a.value for a in self.service.access.agent_grants),
                "policies": engine.policies.model_dump(mode="json", by_alias=True)}, None

    @staticmethod
    def runbook_text(signature: str) -> tuple[Any, None]:
        rb = runbook(signature)
        if rb is None:
            raise NotFoundError(f"no runbook for signature {signature!r}; known: "
                                f"{', '.join(s.value for s in RUNBOOKS)}")
        return {"signature": rb.signature.value, "title": rb.title, "markdown": rb.markdown()}, None

