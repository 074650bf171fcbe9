"""Pure pieces of the API: cursors, error mapping both ways, If-Match, the published OpenAPI document."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from guardian.api.limits import IdempotencyMismatchError, Verdict, fingerprint
from guardian.api.problems import from_error
from guardian.api.routes import _expected
from guardian.api.service import (InvalidRequestError, appeal_state, decode_cursor, encode_cursor, paginate)
from guardian.clients.api import error_from
from guardian.model.quarantine import QState, Quarantine
from guardian.errors import (AuthenticationError, AuthorizationError, ConflictError, NotFoundError, PermanentError,
                             RateLimitedError, TemporaryError)


def test_cursor_pages_cover_everything_once_even_with_equal_timestamps():
    rows = [(float(ts), f"q-{i:02d}", i) for i, ts in enumerate([5, 5, 5, 4, 9, 1, 5])]
    seen, cursor = [], None
    while True:
        page, cursor = paginate(rows, cursor, 2)
        seen += page
        if cursor is None:
            break
    assert sorted(seen) == list(range(7)) and len(seen) == 7
    assert seen[0] == 4   # newest first
    assert decode_cursor(encode_cursor(5.0, "q-01")) == (5.0, "q-01")
    for junk in ("!!", "e30", encode_cursor(1, "x")[:-3] + "###"):
        with pytest.raises(InvalidRequestError):
            decode_cursor(junk)


@pytest.mark.parametrize("exc,status,header", [
    (NotFoundError("no quarantine q-1"), 404, None),
    (AuthenticationError("revoked"), 401, "www-authenticate"),
    (AuthorizationError("tenant may not"), 403, None),
    (ConflictError("changed"), 409, None),
    (IdempotencyMismatchError("reused"), 422, None),
    (InvalidRequestError("bad"), 422, None),
    (PermanentError("bad"), 422, None),
    (RateLimitedError("slow down", delay=1.2), 429, "retry-after"),
    (TemporaryError("redis down", delay=3), 503, "retry-after"),
])
def test_errors_map_to_problem_details_and_back(exc, status, header):
    resp = from_error(exc)
    assert resp.status_code == status and resp.media_type == "application/problem+json"
    body = json.loads(resp.body)
    assert body["status"] == status and body["detail"] == str(exc)
    if header:
        assert header in resp.headers
    if isinstance(exc, RateLimitedError):
        assert resp.headers["retry-after"] == "2"   # rounded up, never 0
    # The client turns the problem back into the same branch of the error tree.
    back = error_from(httpx.Response(status, headers=dict(resp.headers), content=resp.body))
    expected = {422: PermanentError, 503: TemporaryError}.get(status, type(exc))
    assert isinstance(back, expected) and str(exc) in str(back)


def test_if_match_parsing():
    assert _expected(None, None) is None
    assert _expected(4, None) == 4
    assert _expected(None, '"7"') == 7 and _expected(None, 'W/"7"') == 7 and _expected(7, "7") == 7
    for bad in ('"v7"', '"*"', '"-1"', '"' + "9" * 20 + '"'):
        with pytest.raises(InvalidRequestError):
            _expected(None, bad)
    with pytest.raises(InvalidRequestError, match="disagree"):
        _expected(3, '"4"')


def test_fingerprint_depends_on_method_path_and_body_only():
    a = fingerprint("post", "/v1/x", {"a": 1, "b": [1, 2]})
    assert a == fingerprint("POST", "/v1/x", {"b": [1, 2], "a": 1})
    assert a != fingerprint("POST", "/v1/y", {"a": 1, "b": [1, 2]})
    assert a != fingerprint("POST", "/v1/x", {"a": 2, "b": [1, 2]})
    assert Verdict(False, 0.01).retry_after_header == "1" and Verdict(False, 2.5).retry_after_header == "3"


def _q(state: QState, appeal: dict | None) -> Quarantine:
    now = time.time()
    return Quarantine(id="q-1", workload={"principal": "User:a"}, workload_key="principal=User:a", policy="p",
                      state=state, rung=0, dry_run=False, created_at=now, updated_at=now, rung_at=now,
                      expires_at=now + 60, appeal=appeal)


def test_appeal_states():
    pending = {"id": "q-1.1", "decision": None}
    q = _q(QState.APPEALED, pending)
    assert appeal_state(q.appeal, q) == "pending"
    assert appeal_state({"decision": "denied"}, _q(QState.ACTIVE, None)) == "denied"
    assert appeal_state({"decision": "granted"}, _q(QState.RELEASED, None)) == "granted"
    expired = _q(QState.EXPIRED, pending)
    assert appeal_state(expired.appeal, expired) == "lapsed"


def test_the_openapi_document_is_versioned_secured_and_documents_problems():
    import redis

    from guardian.api.app import create_app
    from guardian.settings import GuardianSettings

    # A client that is never used: building the app does no I/O.
    app = create_app(GuardianSettings(), redis_client=redis.Redis(host="127.0.0.1", port=1))
    spec = app.openapi()
    assert spec["info"]["version"] == "1.0.0"
    paths = spec["paths"]
    assert set(paths) - {"/healthz", "/readyz"} and all(p.startswith("/v1/") for p in paths
                                                         if p not in ("/healthz", "/readyz"))
    for path, ops in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            assert op["security"] == [{"HTTPBearer": []}], (method, path)
            for code in ("401", "422", "429"):
                content = op["responses"][code]["content"]
                assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
            if method == "post":
                names = {p["name"] for p in op.get("parameters", [])}
                assert "Idempotency-Key" in names, path
    assert {"time", "timeEnd", "title", "text", "tags"} <= set(spec["components"]["schemas"]["Annotation"]["properties"])


def test_cli_until_accepts_seconds_iso_times_and_durations():
    from guardian.api.cli import _until
    from guardian.errors import ConfigError

    assert _until(None) is None
    assert _until("1900000000") == 1_900_000_000.0
    assert _until("2030-01-01T00:00:00Z") == 1_893_456_000.0
    assert _until("2030-01-01T00:00:00") == 1_893_456_000.0   # naive = UTC
    t = time.time()
    assert t + 6 * 3600 - 1 <= _until("6h") <= time.time() + 6 * 3600 + 1
    assert t + 90 - 1 <= _until("1.5m") <= time.time() + 90 + 1
    with pytest.raises(ConfigError):
        _until("next tuesday")
