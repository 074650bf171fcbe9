"""The MCP server against the real Redis ledger and the real broker, through the SDK's own client.

Topology as in production: a *runner* engine with the real quota actuator
decides detections and throttles clients on the broker (its ``tick``
converges whatever the MCP verbs wrote); the MCP server has its own engine over
the same ledger that never acts. Two transports:

* stdio: ``python -m guardian.app.cli mcp --transport stdio`` spawned by the SDK's
  stdio client, configured only through the environment (Redis URL and key
  prefix, rate limits, ``GUARDIAN_MCP_TOKEN``);
* streamable HTTP: the same app ``guardian mcp --transport http`` serves, under
  uvicorn on a free loopback port, each request carrying its bearer header.

Each test gets its own Redis key prefix.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from guardian.actuators.quota import QuotaActuator
from guardian.model.detection import Detection, Severity, Signature
from guardian.api.auth import AccessPolicy, Role, TokenStore
from guardian.engine.engine import ActionEngine
from guardian.model.quarantine import OPEN_STATES, Quarantine
from guardian.store.ledger import Ledger
from guardian.mcp.core import McpCore
from guardian.policy.config import default_policy_path, load_policy
from guardian.testing import without_harm_test
from guardian.settings import GuardianSettings

ROOT = Path(__file__).resolve().parents[3]
BASELINE = 100_000.0          # B/s: the workload's normal
THROTTLE = 2 * BASELINE       # the default policy throttles to twice the baseline
RATE_ENV = {"GUARDIAN_API__RATE_PER_S": "1000", "GUARDIAN_API__BURST": "1000",
            "GUARDIAN_API__AGENT_RATE_PER_S": "1000", "GUARDIAN_API__AGENT_BURST": "1000"}


def detection(principal: str, client_id: str, now: float | None = None) -> Detection:
    now = time.time() if now is None else now
    return Detection(id=f"det-{uuid.uuid4().hex[:12]}", ts=now, signature=Signature.RUNAWAY_PRODUCER,
                     severity=Severity.HIGH, confidence=0.9,
                     workload={"principal": principal, "client_id": client_id},
                     metric="produce_byte_rate", baseline=BASELINE, observed=20 * BASELINE, ratio=20.0,
                     duration_s=30.0, evidence=[(now - 30 + i, BASELINE if i < 20 else 20 * BASELINE)
                                                for i in range(30)], detector="test")


def body(result: Any) -> dict[str, Any]:
    """The envelope of a tool result; the text block and the structured content must be the same JSON."""
    assert len(result.content) == 1 and result.content[0].type == "text"
    parsed = json.loads(result.content[0].text)
    assert parsed == result.structured_content
    assert parsed["schema"] == "kafka-workload-guardian/mcp-result" and parsed["schema_version"] == 1
    return parsed


def ok(result: Any) -> Any:
    b = body(result)
    assert b["ok"] is True and not result.is_error, b
    return b["data"]


def refused(result: Any) -> dict[str, Any]:
    b = body(result)
    assert b["ok"] is False and result.is_error, b
    return b["error"]


def resource_body(result: Any) -> dict[str, Any]:
    assert len(result.contents) == 1
    return json.loads(result.contents[0].text)


@dataclass
class Harness:
    settings: GuardianSettings
    redis_url: str
    ledger: Ledger
    runner: ActionEngine
    quota: QuotaActuator
    tokens: TokenStore
    core: McpCore
    made: list[str] = field(default_factory=list)

    def token(self, role: str, *principals: str, name: str = "") -> str:
        tok, _info = self.tokens.create(Role(role), principals, name=name or role, created_by="test",
                                        now=time.time())
        return tok

    def quarantine(self, principal: str = "User:tenant-a", client_id: str | None = None) -> Quarantine:
        """A real quarantine: the runner decides a detection and throttles the client on the broker."""
        cid = client_id or f"mcp-{uuid.uuid4().hex[:8]}"
        d = self.runner.handle(detection(principal, cid))
        assert d.quarantine_id, d
        q = self.ledger.get(d.quarantine_id)
        assert q is not None and q.state.value == "active", (d, q)
        self.made.append(q.id)
        return q

    def audit(self, **match: Any) -> list[dict[str, Any]]:
        """The MCP audit records (newest first) whose fields equal ``match``."""
        recs = [r for r in self.core.api.recent_audit(1000) if r.get("type") == "mcp"]
        return [r for r in recs if all(r.get(k) == v for k, v in match.items())]

    # ---------------------------------------------------------------- clients
    def stdio_env(self, token: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
        env.update(RATE_ENV)
        env.update({"GUARDIAN_REDIS__URL": self.redis_url, "GUARDIAN_REDIS__PREFIX": self.settings.redis.prefix,
                    "GUARDIAN_MCP_TOKEN": token, "PYTHONPATH": str(ROOT)}, **extra)
        return env

    @asynccontextmanager
    async def stdio(self, token: str, **extra_env: str) -> AsyncIterator[Any]:
        """An SDK client talking to ``python -m guardian.app.cli mcp --transport stdio`` as the bearer of ``token``."""
        from mcp import Client, StdioServerParameters

        params = StdioServerParameters(command=sys.executable,
                                       args=["-m", "guardian.app.cli", "mcp", "--transport", "stdio"],
                                       env=self.stdio_env(token, **extra_env), cwd=str(ROOT))
        async with Client(params, cache=None, read_timeout_seconds=60) as client:
            yield client

    @asynccontextmanager
    async def http(self, url: str, token: str | None) -> AsyncIterator[Any]:
        """An SDK client over streamable HTTP whose every request carries ``Authorization: Bearer <token>``."""
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http:
            async with Client(streamable_http_client(url, http_client=http), cache=None,
                              read_timeout_seconds=60) as client:
                yield client


def _cleanup(h: Harness) -> None:
    for q in h.ledger.list(states=OPEN_STATES):
        try:
            h.runner.release(q.id, "test", "cleanup")
        except Exception:  # noqa: BLE001 - best effort; the tick below retries reverts
            pass
    h.runner.tick()


@pytest.fixture
def settings(redis_url: str, unique: str) -> GuardianSettings:
    return GuardianSettings(redis={"url": redis_url, "prefix": f"test-mcp-{unique}:"},
                            api={"rate_per_s": 1000.0, "burst": 1000, "agent_rate_per_s": 1000.0,
                                 "agent_burst": 1000})


@pytest.fixture
def harness(settings: GuardianSettings, redis_client: Any, redis_url: str, bootstrap: str) -> Iterator[Harness]:
    ledger = Ledger(redis_client, settings.redis.prefix)
    quota = QuotaActuator.from_bootstrap(bootstrap)
    # the runner stands for a guardian that acts on a detection: the harm test is tests/unit/engine/test_harm.py
    runner = ActionEngine(ledger, without_harm_test(load_policy(default_policy_path())), {"quota": quota},
                          name="runner")
    h = Harness(settings=settings, redis_url=redis_url, ledger=ledger, runner=runner, quota=quota,
                tokens=TokenStore(redis_client, settings.redis.prefix),
                core=McpCore.build(settings, redis_client=redis_client))
    try:
        yield h
    finally:
        try:
            _cleanup(h)
        finally:
            quota.close()
            for key in redis_client.scan_iter(match=f"{settings.redis.prefix}*", count=500):
                redis_client.delete(key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    url: str
    server: Any
    thread: threading.Thread


def serve_http(core: McpCore) -> Served:
    """``guardian mcp --transport http``'s app under uvicorn on a free loopback port; returns once it accepts."""
    import uvicorn

    from guardian.mcp.server import http_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(http_app(core, host="127.0.0.1"), host="127.0.0.1", port=port,
                                          log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"mcp-http-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}/mcp", server, thread)


def stop(s: Served) -> None:
    s.server.should_exit = True
    s.thread.join(timeout=10)


@pytest.fixture
def served(harness: Harness) -> Iterator[Served]:
    s = serve_http(harness.core)
    yield s
    stop(s)


@pytest.fixture
def granted_core(harness: Harness) -> McpCore:
    """The same deployment with an access policy that explicitly grants agents release."""
    return McpCore.build(harness.settings, redis_client=harness.ledger.client,
                         access=AccessPolicy.of(["quarantine:release"]))
