"""Agent endpoint contract: the JSON record with a bearer token."""

from __future__ import annotations

import json

from guardian.escalation.dispatch import EscalationDispatcher
from guardian.escalation.senders import AgentChannel
from tests.integration.escalation.conftest import FAST_RETRY
from tests.integration.escalation.helpers import escalation


def test_agent_receives_the_record_with_its_bearer_token(receiver):
    esc = escalation()
    with EscalationDispatcher([AgentChannel(receiver.url("/agent"), "agent-token-1")], retry=FAST_RETRY) as d:
        d.submit(esc)
        assert d.flush()
    [got] = receiver.on("/agent")
    assert got.headers["authorization"] == "Bearer agent-token-1"
    assert got.json() == json.loads(json.dumps(esc.record))
    assert got.headers["x-guardian-delivery"] == esc.delivery_id


def test_agent_5xx_is_retried_and_gives_up_after_the_bound(receiver):
    receiver.script("/agent", [], default=503)
    with EscalationDispatcher([AgentChannel(receiver.url("/agent"), "t")], retry=FAST_RETRY) as d:
        d.submit(escalation())
        assert d.flush()
    assert len(receiver.on("/agent")) == FAST_RETRY.max_attempts
    st = d.stats()["agent"]
    assert (st["sent"], st["failed"], st["retried"]) == (0, 1, FAST_RETRY.max_attempts - 1)


def test_an_unreachable_agent_is_a_counted_failure_without_leaking_the_token(receiver):
    dead = receiver.url("/agent").replace(str(receiver.server.server_address[1]), "1")  # nothing listens on port 1
    with EscalationDispatcher([AgentChannel(dead, "secret-token")], retry=FAST_RETRY) as d:
        d.submit(escalation())
        assert d.flush()
    st = d.stats()["agent"]
    assert st["failed"] == 1 and "secret-token" not in (st["last_error"] or "")
    assert "ConnectError" in st["last_error"]
