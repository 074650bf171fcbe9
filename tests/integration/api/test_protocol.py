"""HTTP behaviour: problem details, idempotency, optimistic concurrency, rate limits, health, audit, feed."""

from __future__ import annotations

import threading
import time

import httpx
import redis

from guardian.api.app import build_engine, create_app
from guardian.settings import GuardianSettings
from tests.integration.api.conftest import detection


def _is_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["title"] and "type" in body
    return body


def test_errors_are_problem_details_everywhere(harness):
    h, c = harness, harness.client
    sre = h.token("sre")
    _is_problem(c.get("/v1/quarantines"), 401)
    _is_problem(c.get("/v1/quarantines", headers={"Authorization": "Bearer gk_nope"}), 401)
    _is_problem(c.get("/v1/nothing-here", headers=h.auth(sre)), 404)
    body = _is_problem(c.delete("/v1/quarantines", headers=h.auth(sre)), 405)
    assert body["instance"] == "/v1/quarantines"
    body = _is_problem(c.post("/v1/quarantines/q-1/extend", headers=h.auth(sre), json={"seconds": -5}), 422)
    assert body["errors"][0]["loc"] == ["body", "seconds"]
    _is_problem(c.post("/v1/quarantines/q-1/deny", headers=h.auth(sre), content=b"{not json",
                       ), 422)
    _is_problem(c.get("/v1/quarantines", params={"cursor": "garbage!"}, headers=h.auth(sre)), 422)
    _is_problem(c.get("/v1/decisions", params={"from": 10, "to": 5}, headers=h.auth(sre)), 422)
    r = c.get("/v1/quarantines", headers={**h.auth(sre), "X-Request-ID": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42"


def test_idempotency_key_replays_the_first_answer(harness):
    h, c = harness, harness.client
    q = h.quarantine("User:tenant-a")
    sre = h.token("sre")
    hdr = h.auth(sre, **{"Idempotency-Key": "comment-1"})
    first = c.post(f"/v1/quarantines/{q.id}/comments", headers=hdr, json={"text": "looking"})
    again = c.post(f"/v1/quarantines/{q.id}/comments", headers=hdr, json={"text": "looking"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    comments = [e for e in h.ledger.get(q.id).history if e.get("event") == "comment"]
    assert len(comments) == 1
    _is_problem(c.post(f"/v1/quarantines/{q.id}/comments", headers=hdr, json={"text": "other"}), 422)
    # Another token's identical key is its own key.
    other = c.post(f"/v1/quarantines/{q.id}/comments", headers=h.auth(h.token("sre"), **{"Idempotency-Key":
                                                                                       "comment-1"}),
                   json={"text": "looking"})
    assert other.status_code == 201 and other.headers.get("idempotent-replayed") is None
    # A failed write frees its key: retrying after the cause is fixed works.
    key = h.auth(sre, **{"Idempotency-Key": "deny-1"})
    _is_problem(c.post(f"/v1/quarantines/{q.id}/deny", headers=key, json={"reason": "no appeal yet"}), 409)
    c.post(f"/v1/quarantines/{q.id}/appeal", headers=h.auth(sre), json={"justification": "filed for them"})
    assert c.post(f"/v1/quarantines/{q.id}/deny", headers=key, json={"reason": "no appeal yet"}).status_code == 200


def test_two_sres_deciding_the_same_appeal_one_wins_the_other_conflicts(harness, served):
    h = harness
    for _round in range(3):
        q = h.quarantine("User:tenant-a")
        tenant = h.token("tenant", "tenant-a")
        with httpx.Client(base_url=served.url) as c:
            assert c.post(f"/v1/quarantines/{q.id}/appeal", headers=h.auth(tenant),
                          json={"justification": "x"}).status_code == 201
        alice, bob = h.token("sre", name="alice"), h.token("sre", name="bob")
        barrier = threading.Barrier(2)
        results: dict[str, httpx.Response] = {}

        def decide(name: str, token: str, verb: str, body: dict) -> None:
            with httpx.Client(base_url=served.url, timeout=30) as c:
                barrier.wait()
                results[name] = c.post(f"/v1/quarantines/{q.id}/{verb}", headers=h.auth(token), json=body)

        threads = [threading.Thread(target=decide, args=("alice", alice, "approve", {"reason": "fine"})),
                   threading.Thread(target=decide, args=("bob", bob, "deny", {"reason": "no"}))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results.values())
        assert codes == [200, 409], {k: (v.status_code, v.text[:200]) for k, v in results.items()}
        winner = next(k for k, v in results.items() if v.status_code == 200)
        final = h.ledger.get(q.id)
        assert final.appeal["decision"] == ("granted" if winner == "alice" else "denied")
        assert final.appeal["decided_by"] == f"sre:{winner}"
        h.runner.tick()

    # A stale version loses too, even without a race.
    q = h.quarantine("User:tenant-a")
    sre = h.token("sre")
    with httpx.Client(base_url=served.url) as c:
        etag = c.get(f"/v1/quarantines/{q.id}", headers=h.auth(sre)).headers["etag"]
        assert c.post(f"/v1/quarantines/{q.id}/comments", headers=h.auth(sre), json={"text": "bump"}).status_code == 201
        r = c.post(f"/v1/quarantines/{q.id}/extend", headers=h.auth(sre, **{"If-Match": etag}), json={"seconds": 60})
        _is_problem(r, 409)


def test_rate_limit_answers_429_with_retry_after(harness, redis_client):
    h = harness
    tight = GuardianSettings(redis=h.settings.redis.model_dump(),
                             api={"rate_per_s": 0.5, "burst": 3, "agent_rate_per_s": 0.5, "agent_burst": 2})
    now = [1_000_000.0]
    app = create_app(tight, engine=build_engine(tight, redis_client, time.time), clock=lambda: now[0])
    from fastapi.testclient import TestClient

    c = TestClient(app)
    sre, other = h.token("sre"), h.token("sre")
    codes = [c.get("/v1/whoami", headers=h.auth(sre)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = c.get("/v1/whoami", headers=h.auth(sre))
    body = _is_problem(r, 429)
    assert r.headers["retry-after"] == "2" and "rate limit" in body["detail"]
    assert c.get("/v1/whoami", headers=h.auth(other)).status_code == 200   # per token
    now[0] += 2.0   # one token back after 1 / 0.5 s
    assert c.get("/v1/whoami", headers=h.auth(sre)).status_code == 200
    assert c.get("/v1/whoami", headers=h.auth(sre)).status_code == 429
    agent = h.token("agent")
    assert [c.get("/v1/whoami", headers=h.auth(agent)).status_code for _ in range(3)] == [200, 200, 429]


def test_health_and_readiness(harness):
    h, c = harness, harness.client
    assert c.get("/healthz").json() == {"status": "ok", "checks": {}}
    r = c.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"redis": "ok", "ledger": "ok"}
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, socket_timeout=0.5)
    from fastapi.testclient import TestClient

    broken = TestClient(create_app(h.settings, engine=build_engine(h.settings, dead, time.time), redis_client=dead))
    r = broken.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert r.json()["checks"]["redis"].startswith("error")
    assert broken.get("/healthz").status_code == 200


def test_every_request_is_audited_into_the_ledger_outbox(harness):
    h, c = harness, harness.client
    q = h.quarantine("User:tenant-a")
    tenant = h.token("tenant", "tenant-a", name="team-a")
    c.get(f"/v1/quarantines/{q.id}", headers=h.auth(tenant))
    c.post(f"/v1/quarantines/{q.id}/release", headers=h.auth(tenant), json={})
    c.get("/v1/whoami")
    api = [r for r in h.ledger.outbox_peek(10_000) if r["type"] == "api"]
    seen = [(r["who"], r["method"], r["path"], r["status"], r["result"]) for r in api]
    assert ("tenant:team-a", "GET", f"/v1/quarantines/{q.id}", 200, "ok") in seen
    assert ("tenant:team-a", "POST", f"/v1/quarantines/{q.id}/release", 403, "refused") in seen
    assert ("anonymous", "GET", "/v1/whoami", 401, "refused") in seen
    assert all(r["id"].startswith("api:") and r["ts"] > 0 for r in api)


def test_decisions_feed_is_shaped_for_grafana(harness):
    h, c = harness, harness.client
    t0 = int(time.time() * 1000) - 1
    q = h.quarantine("User:tenant-a")
    sre = h.token("sre")
    c.post(f"/v1/quarantines/{q.id}/comments", headers=h.auth(sre), json={"text": "watching"})
    c.post(f"/v1/quarantines/{q.id}/release", headers=h.auth(sre), json={"reason": "false alarm"})
    t1 = int(time.time() * 1000) + 1
    rows = c.get("/v1/decisions", params={"from": t0, "to": t1}, headers=h.auth(sre)).json()
    mine = [r for r in rows if r["quarantine_id"] == q.id]
    assert [r["event"] for r in mine] == ["transition", "transition", "comment", "transition"]
    assert [r["state"] for r in mine] == ["proposed", "active", "active", "released"]
    active = mine[1]
    assert set(active) >= {"time", "timeEnd", "title", "text", "tags"}
    assert t0 <= active["time"] <= active["timeEnd"] == mine[3]["time"] <= t1   # a region: active until released
    assert "active" in active["tags"] and "quota" in active["tags"]
    assert mine[3]["text"].endswith("false alarm") and mine[3]["timeEnd"] == mine[3]["time"]
    later = {"from": t1 + 10_000, "to": t1 + 20_000}
    assert c.get("/v1/decisions", params=later, headers=h.auth(sre)).json() == []


def test_pagination_with_cursor(harness):
    h, c = harness, harness.client
    made = {h.quarantine("User:tenant-a").id for _ in range(5)}
    sre = h.token("sre")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = c.get("/v1/quarantines", params=params, headers=h.auth(sre)).json()
        seen += [q["id"] for q in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 5 and set(seen) == made
    active = c.get("/v1/quarantines", params={"state": ["active"], "action": "quota"}, headers=h.auth(sre)).json()
    assert {q["id"] for q in active["items"]} == made


def test_pause_and_resume(harness):
    h, c = harness, harness.client
    sre = h.token("sre", name="carol")
    r = c.post("/v1/pause", headers=h.auth(sre), json={"reason": "broker upgrade"})
    assert r.status_code == 200 and r.json()["paused"] and r.json()["by"] == "sre:carol"
    assert h.ledger.pause_state()["reason"] == "broker upgrade"
    d = h.runner.handle(detection("User:tenant-a", "paused-client"))
    assert d.outcome.value == "paused"
    r = c.post("/v1/resume", headers=h.auth(sre), json={})
    assert r.status_code == 200 and not r.json()["paused"]
    assert c.get("/v1/pause", headers=h.auth(h.token("tenant", "tenant-a"))).json() == {
        "paused": False, "by": None, "reason": None, "since": None}


def test_metrics_endpoint_counts_requests_by_route_template_and_reads_the_ledger(harness):
    h, c = harness, harness.client
    q = h.quarantine("User:tenant-a")
    tenant = h.token("tenant", "tenant-a", name="team-a")
    for _ in range(3):
        assert c.get(f"/v1/quarantines/{q.id}", headers=h.auth(tenant)).status_code == 200
    c.get("/v1/quarantines/does-not-exist", headers=h.auth(tenant))
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    from prometheus_client.parser import text_string_to_metric_families

    samples = [s for fam in text_string_to_metric_families(r.text) for s in fam.samples]
    counts = {(s.labels["route"], s.labels["status"]): s.value for s in samples
              if s.name == "guardian_api_request_duration_seconds_count"}
    # Both ids fall under one route template: the label never carries a raw path.
    assert counts[("/v1/quarantines/{qid}", "2xx")] >= 3
    assert counts[("/v1/quarantines/{qid}", "4xx")] >= 1
    assert not any(q.id in route for route, _ in counts)
    assert any(s.name == "guardian_ledger_up" and s.value == 1 for s in samples)
