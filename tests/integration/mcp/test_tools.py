"""Every MCP tool and resource, called with the SDK's client over stdio and streamable HTTP.

The data is real: quarantines decided by the runner engine, throttles applied
on the broker by the real quota actuator, the ledger in the real Redis. The
SRE verbs go through MCP and the runner converges them, so the quota on the
broker is read back after each.
"""

from __future__ import annotations

import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio
import pytest

from guardian.escalation.summary import build_record
from guardian.clients.kafka_admin import QuotaEntity
from guardian.mcp.runbooks import RUNBOOKS
from tests.integration.mcp.conftest import THROTTLE, Harness, ok, refused, resource_body, serve_http, stop

TOOLS = {"whoami", "list_quarantines", "get_quarantine", "explain_detection", "list_decisions", "list_appeals",
         "file_appeal", "add_comment", "propose_action", "approve_quarantine", "deny_quarantine",
         "release_quarantine", "extend_quarantine", "pause_guardian", "resume_guardian"}


@asynccontextmanager
async def connect(h: Harness, transport: str, url: str | None, token: str) -> AsyncIterator[Any]:
    if transport == "stdio":
        async with h.stdio(token) as c:
            yield c
    else:
        async with h.http(url, token) as c:
            yield c


def _quota(h: Harness, cid: str) -> dict[str, float]:
    return h.quota._admin.describe(QuotaEntity.of(user="tenant-a", client_id=cid))


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_every_tool_and_resource_against_the_real_ledger_and_broker(harness: Harness, transport: str) -> None:
    h = harness
    cid = f"mcp-{transport}-{uuid.uuid4().hex[:6]}"
    qa = h.quarantine("User:tenant-a", cid)
    qb = h.quarantine("User:tenant-b")
    assert _quota(h, cid) == {"producer_byte_rate": THROTTLE}
    agent = h.token("agent", "User:tenant-a", name=f"bot-{transport}")
    sre = h.token("sre", name=f"oncall-{transport}")
    served = serve_http(h.core) if transport == "http" else None
    url = served.url if served else None
    called: set[str] = set()

    async def tool(c: Any, name: str, args: dict[str, Any] | None = None) -> Any:
        called.add(name)
        return await c.call_tool(name, args or {})

    async def as_agent() -> None:
        async with connect(h, transport, url, agent) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert names == TOOLS
            uris = {str(r.uri) for r in (await c.list_resources()).resources}
            assert uris == {"guardian://policies/active"} | {rb.uri for rb in RUNBOOKS.values()}

            me = ok(await tool(c, "whoami"))
            assert me["role"] == "agent" and me["principals"] == ["User:tenant-a"]
            assert "quarantine:release" not in me["actions"] and "quarantine:propose" in me["actions"]

            listed = ok(await tool(c, "list_quarantines", {"state": ["active"]}))
            assert [q["id"] for q in listed] == [qa.id]           # tenant-b's quarantine is invisible

            got = ok(await tool(c, "get_quarantine", {"quarantine_id": qa.id}))
            assert got["state"] == "active" and got["workload"]["client_id"] == cid
            assert got["evidence"]["metric"] == "produce_byte_rate" and len(got["evidence"]["series"]) == 30
            assert got["actions"][0]["status"] == "verified"
            assert got["actions"][0]["params"]["producer_byte_rate"] == THROTTLE
            assert got["runbook"] == "guardian://runbooks/runaway_producer"

            ex = ok(await tool(c, "explain_detection", {"quarantine_id": qa.id}))
            text = "\n".join(ex["explanation"])
            assert "20 times its own normal" in text and "quota producer" in text
            assert f'client-id "{cid}"' in text and "Your token (agent) may:" in text
            assert ex["follow_up"]["tool"] == "get_quarantine"

            decisions = ok(await tool(c, "list_decisions", {"from_ms": 0}))
            assert decisions and {d["quarantine_id"] for d in decisions} == {qa.id}

            appeal = ok(await tool(c, "file_appeal", {"quarantine_id": qa.id,
                                                      "justification": "planned backfill",
                                                      "requested_limit": 1_000_000.0}))
            assert appeal["state"] == "pending" and appeal["filed_by"] == f"agent:bot-{transport}"
            pending = ok(await tool(c, "list_appeals", {"state": "pending"}))
            assert [a["id"] for a in pending] == [appeal["id"]]

            note = ok(await tool(c, "add_comment", {"quarantine_id": qa.id, "text": "owner paged"}))
            assert note["comment"]["event"] == "comment" and note["comment"]["reason"] == "owner paged"
            prop = ok(await tool(c, "propose_action", {"quarantine_id": qa.id, "action": "extend",
                                                       "reason": "backfill runs 2 more hours", "seconds": 7200}))
            assert prop["proposal"]["proposal"] == {"action": "extend", "seconds": 7200.0}

            pol = resource_body(await c.read_resource("guardian://policies/active"))
            assert pol["ok"] and "tenant-runaway" in [p["name"] for p in pol["data"]["policies"]["policies"]]
            assert pol["data"]["agent_grants"] == []
            rb = resource_body(await c.read_resource("guardian://runbooks/retry_storm"))
            assert rb["ok"] and rb["data"]["markdown"].startswith("# Runbook: Retry storm")

            # The verbs the role lacks are refused (the dedicated test covers each one and its audit).
            assert refused(await tool(c, "release_quarantine", {"quarantine_id": qa.id}))["type"] == "forbidden"

    async def as_sre() -> None:
        async with connect(h, transport, url, sre) as c:
            denied = ok(await tool(c, "deny_quarantine", {"quarantine_id": qa.id, "reason": "not agreed"}))
            assert denied["state"] == "active" and denied["appeal"]["state"] == "denied"
            before = h.ledger.get(qa.id).expires_at
            ext = ok(await tool(c, "extend_quarantine", {"quarantine_id": qa.id, "seconds": 600}))
            assert ext["expires_at"] >= before + 600 - 1
            paused = ok(await tool(c, "pause_guardian", {"reason": "maintenance"}))
            assert paused["paused"] and h.ledger.pause_state()["by"] == f"sre:oncall-{transport}"
            assert ok(await tool(c, "resume_guardian", {}))["paused"] is False
            assert h.ledger.pause_state() is None
            released = ok(await tool(c, "release_quarantine", {"quarantine_id": qb.id, "reason": "false positive"}))
            assert released["state"] == "released"

    async def appeal_again_and_approve() -> None:
        async with connect(h, transport, url, agent) as c:
            ok(await tool(c, "file_appeal", {"quarantine_id": qa.id, "justification": "backfill approved by PM"}))
        async with connect(h, transport, url, sre) as c:
            approved = ok(await tool(c, "approve_quarantine", {"quarantine_id": qa.id, "reason": "ok"}))
            assert approved["state"] == "released" and approved["appeal"]["state"] == "granted"

    try:
        anyio.run(as_agent)
        anyio.run(as_sre)
        h.runner.tick()
        assert _quota(h, cid) == {"producer_byte_rate": THROTTLE}   # a denied appeal leaves the throttle
        anyio.run(appeal_again_and_approve)
        h.runner.tick()   # the engine holding the lease reverts what the SRE approved through MCP
        assert _quota(h, cid) == {}
        assert h.ledger.get(qa.id).state.value == "released"
    finally:
        if served:
            stop(served)
    assert called == TOOLS
    # Every call was audited with the token's identity and the transport.
    audited = h.audit(transport=transport)
    assert {r["tool"] for r in audited} >= TOOLS
    assert {r["who"] for r in audited} == {f"agent:bot-{transport}", f"sre:oncall-{transport}"}


def test_an_escalation_records_follow_up_is_a_call_the_server_accepts(harness: Harness, served: Any) -> None:
    h = harness
    q = h.quarantine("User:tenant-a")
    record = build_record(h.ledger.get(q.id).to_dict(), event="created", now=time.time())
    fu = record["follow_up"]
    assert record["quarantine_id"] == q.id and fu["schema_version"] == 1 and fu["via"] == "mcp"
    agent = h.token("agent", "User:tenant-a", name="receiver")

    async def follow() -> None:
        async with h.http(served.url, agent) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert {fu["tool"]} | {n["tool"] for n in fu["next"]} <= names
            got = ok(await c.call_tool(fu["tool"], fu["arguments"]))
            assert got["id"] == q.id and got["state"] == "active"
            for step in fu["next"]:
                if step.get("needs") or step.get("role"):
                    continue   # the agent supplies a reason itself; SRE-only steps are not this token's
                assert ok(await c.call_tool(step["tool"], step["arguments"]))

    anyio.run(follow)
