"""``create_app(settings, ...)``: the FastAPI application and its wiring.

Nothing is built at import time. The app keeps one ``ApiContext`` (Redis
client, ledger, engine, review service, token store, rate limiter,
idempotency store, clock) on ``app.state.ctx``; tests pass their own engine,
Redis client and clock.

The API process never acts on the cluster: its engine has no actuators and
never holds the action lease, so its verbs only write the ledger and the
engine that holds the lease (``guardian run``) converges the cluster. Pass an
``engine`` with actuators to run both in one process.

Every request under ``/v1`` is audited (who, what, result) into the ledger's
audit outbox (drained to ``guardian.decisions``) and a capped recent list
served at ``GET /v1/audit``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

from guardian.api.limits import IdempotencyStore, RateLimiter
from guardian.api.service import DetectionEvidence, ReviewService, SeriesSource
from guardian.api.auth import AccessPolicy, Identity, Role, TokenStore
from guardian.settings import GuardianSettings, redis_url_for

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class SpectatorLease:
    """The lease of an engine that never acts: it never takes the lease and never converges."""

    renew_every_s = 1.0

    def ensure(self) -> bool:
        return False

    def held(self) -> bool:
        return False

    def fence(self) -> None:
        return None


@dataclass
class ApiContext:
    settings: GuardianSettings
    redis: Any
    service: ReviewService
    tokens: TokenStore
    limiter: RateLimiter
    idempotency: IdempotencyStore
    clock: Callable[[], float]

    @property
    def engine(self) -> Any:
        return self.service.engine

    @property
    def ledger(self) -> Any:
        return self.service.engine.ledger

    @property
    def prefix(self) -> str:
        return self.ledger.prefix

    def rate_for(self, who: Identity) -> tuple[float, int]:
        api = self.settings.api
        if who.role is Role.AGENT:
            return api.agent_rate_per_s, api.agent_burst
        return api.rate_per_s, api.burst

    def audit(self, record: dict[str, Any]) -> None:
        """Into the outbox (the durable trail) and the capped recent list, in one round trip."""
        raw = json.dumps(record, sort_keys=True, separators=(",", ":"))
        keep = self.settings.api.audit_keep
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(self.ledger.k("outbox"), raw)
            if keep > 0:
                pipe.lpush(self.ledger.k("api", "audit"), raw)
                pipe.ltrim(self.ledger.k("api", "audit"), 0, keep - 1)
            pipe.execute()

    def recent_audit(self, limit: int) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.redis.lrange(self.ledger.k("api", "audit"), 0, limit - 1)]


def build_engine(settings: GuardianSettings, redis_client: Any, clock: Callable[[], float]) -> Any:
    """An engine for the API process: the real ledger and policies, no actuators, never the lease."""
    from guardian.engine.engine import ActionEngine
    from guardian.store.ledger import Ledger
    from guardian.policy.config import default_policy_path, load_policy

    policies = load_policy(settings.policy_file or default_policy_path())
    ledger = Ledger(redis_client, prefix=settings.redis.prefix)
    return ActionEngine(ledger, policies, actuators={}, lease=SpectatorLease(), clock=clock, name="guardian-api")


def build_context(settings: GuardianSettings | None = None, *, engine: Any | None = None,
                  redis_client: Any | None = None, clock: Callable[[], float] = time.time,
                  access: AccessPolicy | None = None, series_source: SeriesSource | None = None) -> ApiContext:
    """Everything the API needs, without HTTP: the MCP server builds the same context and calls
    ``ctx.tokens.authenticate``, ``ctx.limiter.hit``, ``ctx.service.<verb>`` and ``ctx.audit``."""
    settings = settings or GuardianSettings()
    if redis_client is None:
        if engine is not None:
            redis_client = engine.ledger.client
        else:
            import redis

            redis_client = redis.Redis.from_url(redis_url_for(settings), socket_timeout=5, socket_connect_timeout=5)
    if engine is None:
        engine = build_engine(settings, redis_client, clock)
    prefix = engine.ledger.prefix
    access = access or AccessPolicy.of(settings.api.agent_grants)
    service = ReviewService(engine=engine, access=access, series_source=series_source or DetectionEvidence(),
                            scan_limit=settings.api.scan_limit)
    return ApiContext(settings=settings, redis=redis_client, service=service,
                      tokens=TokenStore(redis_client, prefix), limiter=RateLimiter(redis_client, prefix),
                      idempotency=IdempotencyStore(redis_client, prefix, settings.api.idempotency_ttl_s),
                      clock=clock)


def create_app(settings: GuardianSettings | None = None, *, engine: Any | None = None, redis_client: Any | None = None,
               clock: Callable[[], float] = time.time, access: AccessPolicy | None = None,
               series_source: SeriesSource | None = None, metrics: Any | None = None) -> FastAPI:
    """The API. ``engine`` defaults to ``build_engine``; ``redis_client`` to ``settings.redis.url``.

    ``metrics`` is a ``GuardianMetrics``; without one the API makes its own (component ``api``) with
    the ledger's scrape-time collector, served on ``/metrics``."""
    ctx = build_context(settings, engine=engine, redis_client=redis_client, clock=clock, access=access,
                        series_source=series_source)
    if metrics is None:
        from prometheus_client import CollectorRegistry

        from guardian.metrics import GuardianMetrics

        metrics = GuardianMetrics(CollectorRegistry(), ledger=ctx.service.engine.ledger, clock=clock,
                                  component="api")

    from guardian.api import problems, routes

    app = FastAPI(
        title="Kafka workload guardian API",
        version=API_VERSION,
        description=("Tenants see why a workload was sequestered and appeal; SREs review, approve, deny, "
                     "release, extend and pause. Errors are RFC 9457 problem details. Writes accept an "
                     "`Idempotency-Key` header. Authenticate with `Authorization: Bearer <token>` "
                     "(issued by `guardian tokens create`)."),
        openapi_url="/v1/openapi.json", docs_url="/v1/docs", redoc_url=None,
    )
    app.state.ctx = ctx
    problems.install(app)
    app.include_router(routes.health)
    app.include_router(routes.v1)

    @app.get("/metrics", include_in_schema=False)
    def _metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def _request_context(request: Request, call_next: Any) -> Any:
        rid = request.headers.get("x-request-id", "")
        request.state.request_id = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
        request.state.identity = None
        request.state.audit_note = None
        started = ctx.clock()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            if request.url.path.startswith("/v1/") and request.url.path not in ("/v1/openapi.json", "/v1/docs"):
                await run_in_threadpool(_audit_request, ctx, request, status, started)
            # The route template, never the raw path, keeps the label bounded.
            route = getattr(request.scope.get("route"), "path", "")
            metrics.observe_request(route, request.method, status, max(0.0, ctx.clock() - started))
        response.headers["X-Request-ID"] = request.state.request_id
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.url.path.startswith("/v1/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def _audit_request(ctx: ApiContext, request: Request, status: int, started: float) -> None:
    who: Identity | None = request.state.identity
    rec = {
        "id": f"api:{request.state.request_id}:{started!r}", "ts": started, "type": "api",
        "key": who.token_id if who else "anonymous",
        "who": who.label if who else "anonymous", "role": who.role.value if who else None,
        "principals": list(who.principals) if who else [],
        "method": request.method, "path": request.url.path, "status": status,
        "result": "ok" if status < 400 else ("refused" if status < 500 else "error"),
        "request_id": request.state.request_id,
    }
    if request.state.audit_note:
        rec["note"] = request.state.audit_note
    try:
        ctx.audit(rec)
    except Exception:  # noqa: BLE001 - the request is done; a lost audit line must be loud, not fatal
        log.exception("could not audit %s %s (%s)", request.method, request.url.path, status)
