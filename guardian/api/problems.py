"""Every error as RFC 9457 problem details (``application/problem+json``).

The guardian's error tree maps onto status codes in one table; FastAPI's
validation errors, Starlette's 404/405 and anything unexpected (500) go
through the same shape, so a client parses one error format everywhere.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from guardian.api.limits import IdempotencyMismatchError
from guardian.api.service import InvalidRequestError
from guardian.errors import (AuthenticationError, AuthorizationError, ConfigError, ConflictError, GuardianError,
                             NotFoundError, PermanentError, RateLimitedError, TemporaryError)

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:kafka-workload-guardian:problem:"   # + slug; the slugs are listed in docs/api.md

# (error class, status, type slug, title); the first match wins, so subclasses come first.
ERROR_TABLE: list[tuple[type[GuardianError], int, str, str]] = [
    (NotFoundError, 404, "not-found", "Not found"),
    (AuthenticationError, 401, "unauthenticated", "Authentication required"),
    (AuthorizationError, 403, "forbidden", "Forbidden"),
    (ConflictError, 409, "conflict", "Conflict"),
    (IdempotencyMismatchError, 422, "idempotency-key-reused", "Idempotency-Key reused"),
    (InvalidRequestError, 422, "invalid-request", "Invalid request"),
    (ConfigError, 422, "invalid-request", "Invalid request"),
    (RateLimitedError, 429, "rate-limited", "Too many requests"),
    (TemporaryError, 503, "unavailable", "Temporarily unavailable"),
    (PermanentError, 422, "invalid-request", "Invalid request"),
]
_STATUS_TITLES = {400: "Bad request", 401: "Authentication required", 403: "Forbidden", 404: "Not found",
                  405: "Method not allowed", 406: "Not acceptable", 409: "Conflict", 413: "Payload too large",
                  415: "Unsupported media type", 422: "Invalid request", 429: "Too many requests",
                  500: "Internal server error", 503: "Temporarily unavailable"}


def problem(status: int, detail: str | None, request: Request | None = None, *, slug: str | None = None,
            title: str | None = None, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug if slug else "about:blank",
        "title": title or _STATUS_TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
        rid = getattr(request.state, "request_id", None)
        if rid:
            body["request_id"] = rid
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers,
                        media_type=PROBLEM_MEDIA_TYPE)


def from_error(exc: GuardianError, request: Request | None = None) -> JSONResponse:
    for cls, status, slug, title in ERROR_TABLE:
        if isinstance(exc, cls):
            headers: dict[str, str] = {}
            if status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="guardian"'
            if isinstance(exc, TemporaryError):
                headers["Retry-After"] = str(max(1, int(-(-float(exc.delay) // 1))))
            return problem(status, str(exc), request, slug=slug, title=title, headers=headers or None)
    return problem(500, "unexpected error", request, slug="internal")  # pragma: no cover - table is total


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        # ``input`` echoes what the client sent (as data); ``ctx`` may hold exception objects.
        out.append({"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")),
                    "type": str(err.get("type", ""))})
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(GuardianError)
    async def _guardian(request: Request, exc: GuardianError) -> JSONResponse:
        return from_error(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, "the request does not match the schema", request, slug="invalid-request",
                       errors=_validation_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        if exc.status_code == 400:  # a body that does not even parse is invalid input like any other
            return problem(422, detail, request, slug="invalid-request")
        return problem(exc.status_code, detail, request, headers=dict(exc.headers or {}) or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "an unexpected error occurred; it was logged", request, slug="internal")


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error codes, all problem details."""
    return {code: {"model": _problem_model(), "description": _STATUS_TITLES.get(code, "Error"),
                   "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for code in codes}


def _problem_model() -> Any:
    from guardian.api.models import Problem

    return Problem
