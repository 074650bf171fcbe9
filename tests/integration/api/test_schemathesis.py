"""Schemathesis against the running API (uvicorn on a loopback port, real Redis, real broker).

Every operation of the published OpenAPI schema gets generated requests
(valid and invalid); each response must not be a server error and must match
the schema: status code documented, content type documented, body valid,
headers valid, invalid input rejected, auth enforced. Path ids of generated
valid requests are pointed at real seeded quarantines and appeals half of the
time, so the writes reach real records and not only 404s.

Bounded: ``MAX_EXAMPLES`` per operation keeps the whole module well under
two minutes on 2 cores.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any, Iterator

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.checks import (content_type_conformance, ignored_auth, negative_data_rejection, not_a_server_error,
                                 response_headers_conformance, response_schema_conformance,
                                 status_code_conformance)

from guardian.actuators.quota import QuotaActuator
from guardian.api.app import build_engine, create_app
from guardian.api.auth import Role, TokenStore
from guardian.engine.engine import ActionEngine
from guardian.model.quarantine import OPEN_STATES
from guardian.store.ledger import Ledger
from guardian.policy.config import default_policy_path, load_policy
from guardian.testing import without_harm_test
from guardian.settings import GuardianSettings
from tests.integration.api.conftest import detection, serve

MAX_EXAMPLES = 10
TENANT_EXAMPLES = 5
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection, ignored_auth]


class Fuzz:
    def __init__(self) -> None:
        self.url = ""
        self.token = ""
        self.tenant_token = ""
        self.qids: Iterator[str] = iter(())
        self.appeal_ids: Iterator[str] = iter(())


FUZZ = Fuzz()


@pytest.fixture(scope="module")
def api_schema(redis_url: str, bootstrap: str) -> Iterator[Any]:
    prefix = f"test-fuzz-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(redis_url)
    st = GuardianSettings(redis={"url": redis_url, "prefix": prefix},
                          api={"rate_per_s": 1e6, "burst": 1_000_000, "agent_rate_per_s": 1e6,
                               "agent_burst": 1_000_000})
    ledger = Ledger(client, prefix)
    quota = QuotaActuator.from_bootstrap(bootstrap)
    # the runner stands for a guardian that acts on a detection: the harm test is tests/unit/engine/test_harm.py
    runner = ActionEngine(ledger, without_harm_test(load_policy(default_policy_path())), {"quota": quota},
                          name="runner")
    qids, appeal_ids = [], []
    for i in range(4):
        d = runner.handle(detection("User:tenant-a", f"fuzz-{i}-{uuid.uuid4().hex[:6]}"))
        qids.append(d.quarantine_id)
    for qid in qids[:2]:
        q = runner.appeal(qid, "tenant:fuzz", "seeded appeal",
                          details={"id": f"{qid}.1", "justification": "seeded appeal", "requested_limit": None,
                                   "until": None, "previous": []})
        appeal_ids.append(q.appeal["id"])
    tokens = TokenStore(client, prefix)
    FUZZ.token, _ = tokens.create(Role.ADMIN, name="fuzz", now=time.time())
    FUZZ.tenant_token, _ = tokens.create(Role.TENANT, ["User:tenant-a"], name="fuzz-tenant", now=time.time())
    FUZZ.qids, FUZZ.appeal_ids = itertools.cycle(qids), itertools.cycle(appeal_ids)
    served = serve(create_app(st, engine=build_engine(st, client, time.time), redis_client=client))
    FUZZ.url = served.url
    try:
        loaded = schemathesis.openapi.from_url(f"{served.url}/v1/openapi.json")
        # The token is sent by the test (schemathesis would otherwise count a request whose
        # Authorization it dropped as invalid although the test re-adds it); unknown query
        # parameters are ignored by design (Grafana datasources add their own).
        loaded.config.generation.update(with_security_parameters=False, allow_extra_parameters=False)
        yield loaded
    finally:
        served.server.should_exit = True
        served.thread.join(timeout=10)
        for q in ledger.list(states=OPEN_STATES):
            try:
                runner.release(q.id, "test", "cleanup")
            except Exception:  # noqa: BLE001 - best effort; tick retries the reverts
                pass
        runner.tick()
        quota.close()
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            client.delete(key)
        client.close()


def _aim(case: Any) -> None:
    """Point half of the valid requests at real records (the rest stay random: mostly 404)."""
    if "qid" in case.path_parameters and hash(case.id) % 2 == 0:
        case.path_parameters["qid"] = next(FUZZ.qids)
    if "appeal_id" in case.path_parameters and hash(case.id) % 2 == 0:
        case.path_parameters["appeal_id"] = next(FUZZ.appeal_ids)


def test_api_conforms_to_its_schema(api_schema: Any) -> None:
    # schemathesis' pytest plugin (``from_fixture``) does not run on pytest 9 yet, so each
    # operation's strategies are driven by hypothesis here; the checks are schemathesis' own.
    failures: list[str] = []
    calls = {"n": 0}
    t0 = time.monotonic()
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    # An admin token reaches every code path; a tenant token (valid requests only) the scoped ones.
    passes = [(GenerationMode.POSITIVE, FUZZ.token, MAX_EXAMPLES), (GenerationMode.NEGATIVE, FUZZ.token, MAX_EXAMPLES),
              (GenerationMode.POSITIVE, FUZZ.tenant_token, TENANT_EXAMPLES)]
    for op in operations:
        for mode, token, examples in passes:
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                if mode is GenerationMode.POSITIVE:
                    _aim(case)
                calls["n"] += 1
                case.call_and_validate(base_url=FUZZ.url, headers={"Authorization": f"Bearer {token}"},
                                       checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                continue   # nothing to make invalid (no parameters, no body)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every operation's failure, then report all
                failures.append(f"{op.label} [{mode.value}, {'admin' if token == FUZZ.token else 'tenant'}]: {exc}")
    print(f"\nschemathesis: {len(operations)} operations, {calls['n']} requests, {len(failures)} failing, "
          f"{time.monotonic() - t0:.0f}s")
    assert not failures, "\n\n".join(failures)
