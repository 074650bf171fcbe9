"""A small client of the guardian's HTTP API (what the CLI uses).

Errors come back as the guardian's own error tree, built from the API's
problem details: 404 -> ``NotFoundError``, 401 -> ``AuthenticationError``,
403 -> ``AuthorizationError``, 409 -> ``ConflictError``, 429 ->
``RateLimitedError`` (with ``delay`` from Retry-After), 5xx and connection
failures -> ``TemporaryError``, other 4xx -> ``PermanentError``. Writes send
an Idempotency-Key (a fresh one per call unless given), so a retried call is
applied once.

``transport`` lets tests talk to an app in-process (``httpx.ASGITransport``)
or to a real server (the default).
"""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import httpx

from guardian.errors import (AuthenticationError, AuthorizationError, ConflictError, GuardianError, NotFoundError,
                             PermanentError, RateLimitedError, TemporaryError)


def error_from(response: httpx.Response) -> GuardianError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    msg = f"{response.status_code} {body.get('title', response.reason_phrase) if isinstance(body, dict) else ''}"
    msg = f"{msg}: {detail}" if detail else msg
    status = response.status_code
    if status == 404:
        return NotFoundError(msg)
    if status == 401:
        return AuthenticationError(msg)
    if status == 403:
        return AuthorizationError(msg)
    if status == 409:
        return ConflictError(msg)
    if status == 429:
        try:
            delay = float(response.headers.get("retry-after", "1"))
        except ValueError:
            delay = 1.0
        return RateLimitedError(msg, delay=delay)
    if status >= 500:
        return TemporaryError(msg)
    return PermanentError(msg)


class GuardianClient:
    def __init__(self, base_url: str, token: str, timeout_s: float = 15.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport,
                                  headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "GuardianClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- plumbing
    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
              idempotency_key: str | None = None, if_match: str | None = None) -> Any:
        headers = {}
        if method in ("POST", "DELETE"):
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        if if_match:
            headers["If-Match"] = if_match
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = self._http.request(method, path, params=clean, json=json, headers=headers)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"cannot reach the guardian API at {self._http.base_url}: {exc}") from exc
        if r.status_code >= 400:
            raise error_from(r)
        return r.json() if r.status_code != 204 and r.content else None

    def _pages(self, path: str, params: dict[str, Any], limit: int | None) -> Iterator[dict[str, Any]]:
        cursor, seen = None, 0
        while True:
            page = self._call("GET", path, params={**params, "cursor": cursor, "limit": 200 if limit is None
                                                   else min(200, max(1, limit - seen))})
            for item in page["items"]:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # ---------------------------------------------------------------- API
    def whoami(self) -> dict[str, Any]:
        return self._call("GET", "/v1/whoami")

    def quarantines(self, states: list[str] | None = None, principal: str | None = None,
                    policy: str | None = None, appealed: bool | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
        return list(self._pages("/v1/quarantines", {"state": states or None, "principal": principal,
                                                    "policy": policy, "appealed": appealed}, limit))

    def quarantine(self, qid: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/quarantines/{qid}")

    def appeal(self, qid: str, justification: str, requested_limit: float | None = None,
               until: float | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        return self._call("POST", f"/v1/quarantines/{qid}/appeal", idempotency_key=idempotency_key,
                          json={"justification": justification, "requested_limit": requested_limit, "until": until})

    def approve(self, qid: str, reason: str = "", raised_limit: float | None = None, until: float | None = None,
                expected_version: int | None = None) -> dict[str, Any]:
        return self._call("POST", f"/v1/quarantines/{qid}/approve",
                          json={"reason": reason, "raised_limit": raised_limit, "until": until,
                                "expected_version": expected_version})

    def deny(self, qid: str, reason: str, expected_version: int | None = None) -> dict[str, Any]:
        return self._call("POST", f"/v1/quarantines/{qid}/deny",
                          json={"reason": reason, "expected_version": expected_version})

    def release(self, qid: str, reason: str = "", expected_version: int | None = None) -> dict[str, Any]:
        return self._call("POST", f"/v1/quarantines/{qid}/release",
                          json={"reason": reason, "expected_version": expected_version})

    def extend(self, qid: str, seconds: float, reason: str = "",
               expected_version: int | None = None) -> dict[str, Any]:
        return self._call("POST", f"/v1/quarantines/{qid}/extend",
                          json={"seconds": seconds, "reason": reason, "expected_version": expected_version})

    def comment(self, qid: str, text: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/quarantines/{qid}/comments", json={"text": text})

    def propose(self, qid: str, action: str, reason: str, seconds: float | None = None) -> dict[str, Any]:
        return self._call("POST", f"/v1/quarantines/{qid}/proposals",
                          json={"action": action, "reason": reason, "seconds": seconds})

    def appeals(self, state: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return list(self._pages("/v1/appeals", {"state": state}, limit))

    def appeal_of(self, appeal_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/appeals/{appeal_id}")

    def pause(self, reason: str = "") -> dict[str, Any]:
        return self._call("POST", "/v1/pause", json={"reason": reason})

    def resume(self, reason: str = "") -> dict[str, Any]:
        return self._call("POST", "/v1/resume", json={"reason": reason})

    def decisions(self, start_ms: int | None = None, end_ms: int | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/decisions", params={"from": start_ms, "to": end_ms})
