"""PagerDuty Events API v2 contract: trigger while quarantined, resolve on release, one alert per quarantine."""

from __future__ import annotations

from guardian.escalation.dispatch import EscalationDispatcher
from guardian.escalation.senders import PagerDutyChannel
from tests.integration.escalation.conftest import FAST_RETRY
from tests.integration.escalation.helpers import escalation


def test_trigger_then_resolve_share_the_quarantine_as_dedup_key(receiver):
    receiver.script("/v2/enqueue", [], default=202)
    pd = PagerDutyChannel("ROUTING-KEY-32-CHARS-xxxxxxxxxxxx", url=receiver.url("/v2/enqueue"))
    with EscalationDispatcher([pd], retry=FAST_RETRY) as d:
        d.submit(escalation("quarantined", qid="q-pd-1"))
        d.submit(escalation("escalated", qid="q-pd-1"))
        d.submit(escalation("released", qid="q-pd-1"))
        assert d.flush()
    trig, esc2, res = [r.json() for r in receiver.on("/v2/enqueue")]
    assert trig["event_action"] == esc2["event_action"] == "trigger" and res["event_action"] == "resolve"
    assert trig["dedup_key"] == esc2["dedup_key"] == res["dedup_key"] == "q-pd-1"
    assert trig["routing_key"] == "ROUTING-KEY-32-CHARS-xxxxxxxxxxxx"
    payload = trig["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "kafka-workload-guardian"
    assert payload["summary"].startswith("[guardian] THROTTLED") and len(payload["summary"]) <= 1024
    assert payload["custom_details"]["record"]["quarantine_id"] == "q-pd-1"
    assert trig["client_url"] == "https://guardian.example.com/v1/quarantines/q-pd-1"
    assert esc2["payload"]["summary"].startswith("[guardian] ESCALATED")
    assert set(res) == {"routing_key", "event_action", "dedup_key"}
    assert d.stats()["pagerduty"]["sent"] == 3


def test_rate_limited_and_unavailable_answers_are_retried(receiver):
    receiver.script("/v2/enqueue", [429, 500], default=202, retry_after="0")
    with EscalationDispatcher([PagerDutyChannel("K", url=receiver.url("/v2/enqueue"))], retry=FAST_RETRY) as d:
        d.submit(escalation())
        assert d.flush()
    assert [r.status for r in receiver.on("/v2/enqueue")] == [429, 500, 202]
    assert d.stats()["pagerduty"]["sent"] == 1


def test_a_rejected_event_is_not_retried(receiver):
    receiver.script("/v2/enqueue", [], default=400)  # PagerDuty: invalid event
    with EscalationDispatcher([PagerDutyChannel("K", url=receiver.url("/v2/enqueue"))], retry=FAST_RETRY) as d:
        d.submit(escalation())
        assert d.flush()
    assert len(receiver.on("/v2/enqueue")) == 1 and d.stats()["pagerduty"]["failed"] == 1
