"""The API against the real Redis (and, where a throttle is involved, the real broker).

Production topology in miniature: a *runner* engine with the real quota
actuator acts on the broker (it decided the quarantines, and its ``tick``
converges whatever the API wrote); the API app has its own engine over the
same ledger that never acts. Each test gets its own Redis key prefix.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest

from guardian.actuators.quota import QuotaActuator
from guardian.model.detection import Detection, Severity, Signature
from guardian.api.app import build_engine, create_app
from guardian.api.auth import Role, TokenStore
from guardian.engine.engine import ActionEngine
from guardian.model.quarantine import OPEN_STATES, Quarantine
from guardian.store.ledger import Ledger
from guardian.policy.config import default_policy_path, load_policy
from guardian.testing import without_harm_test
from guardian.settings import GuardianSettings

BASELINE = 100_000.0          # B/s: the workload's normal
THROTTLE = 2 * BASELINE       # the default policy throttles to twice the baseline


def detection(principal: str, client_id: str, now: float | None = None,
              brokers: dict[str, float] | None = None) -> Detection:
    """``brokers``: the client's rate on each broker (a client spread over several brokers)."""
    now = time.time() if now is None else now
    return Detection(id=f"det-{uuid.uuid4().hex[:12]}", ts=now, signature=Signature.RUNAWAY_PRODUCER,
                     severity=Severity.HIGH, confidence=0.9,
                     workload={"principal": principal, "client_id": client_id},
                     metric="produce_byte_rate", baseline=BASELINE, observed=20 * BASELINE, ratio=20.0,
                     duration_s=30.0, evidence=[(now - 30 + i, BASELINE if i < 20 else 20 * BASELINE)
                                                for i in range(30)], detector="test",
                     extra={"brokers": brokers} if brokers else {})


@dataclass
class Harness:
    settings: GuardianSettings
    ledger: Ledger
    runner: ActionEngine
    quota: QuotaActuator
    app: Any
    tokens: TokenStore
    client: Any
    made: list[str] = field(default_factory=list)

    def token(self, role: str, *principals: str, name: str = "") -> str:
        tok, _info = self.tokens.create(Role(role), principals, name=name or role, created_by="test",
                                        now=time.time())
        return tok

    @staticmethod
    def auth(token: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", **extra}

    def quarantine(self, principal: str = "User:tenant-a", client_id: str | None = None,
                   brokers: dict[str, float] | None = None) -> Quarantine:
        """A real quarantine: the runner decides a detection and throttles the client on the broker."""
        cid = client_id or f"api-{uuid.uuid4().hex[:8]}"
        d = self.runner.handle(detection(principal, cid, brokers=brokers))
        assert d.quarantine_id, d
        q = self.ledger.get(d.quarantine_id)
        assert q is not None and q.state.value == "active", (d, q)
        self.made.append(q.id)
        return q


def _cleanup(h: Harness) -> None:
    for q in h.ledger.list(states=OPEN_STATES):
        try:
            h.runner.release(q.id, "test", "cleanup")
        except Exception:  # noqa: BLE001 - best effort; the tick below retries reverts
            pass
    h.runner.tick()


@pytest.fixture
def settings(redis_url: str, unique: str) -> GuardianSettings:
    return GuardianSettings(redis={"url": redis_url, "prefix": f"test-api-{unique}:"},
                            api={"rate_per_s": 1000.0, "burst": 1000, "agent_rate_per_s": 1000.0,
                                 "agent_burst": 1000})


@pytest.fixture
def harness(settings: GuardianSettings, redis_client: Any, bootstrap: str) -> Iterator[Harness]:
    from fastapi.testclient import TestClient

    ledger = Ledger(redis_client, settings.redis.prefix)
    quota = QuotaActuator.from_bootstrap(bootstrap)
    # the runner stands for a guardian that acts on a detection: the harm test is tests/unit/engine/test_harm.py
    runner = ActionEngine(ledger, without_harm_test(load_policy(default_policy_path())), {"quota": quota},
                          name="runner")
    app = create_app(settings, engine=build_engine(settings, redis_client, time.time), redis_client=redis_client)
    h = Harness(settings=settings, ledger=ledger, runner=runner, quota=quota, app=app,
                tokens=TokenStore(redis_client, settings.redis.prefix), client=TestClient(app))
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


def serve(app: Any) -> Served:
    """Run ``app`` under uvicorn on a free loopback port in a thread; returns once it accepts."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                          access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", server, thread)


@pytest.fixture
def served(harness: Harness) -> Iterator[Served]:
    s = serve(harness.app)
    yield s
    s.server.should_exit = True
    s.thread.join(timeout=10)
