"""Slack incoming-webhook contract, against a real local HTTP receiver."""

from __future__ import annotations

from guardian.escalation.dispatch import EscalationDispatcher
from guardian.escalation.senders import SlackChannel
from tests.integration.escalation.conftest import FAST_RETRY
from tests.integration.escalation.helpers import escalation


def test_slack_gets_headline_and_plain_text_summary(receiver):
    esc = escalation(workload={"principal": "User:tenant-a", "client_id": "<!here> & co"})
    with EscalationDispatcher([SlackChannel(receiver.url("/services/T/B/X"))], retry=FAST_RETRY) as d:
        assert d.submit(esc) == 1
        assert d.flush()
    [got] = receiver.on("/services/T/B/X")
    assert got.headers["content-type"] == "application/json"
    body = got.json()
    assert set(body) == {"text", "blocks", "unfurl_links", "unfurl_media"}
    assert body["text"].startswith("[guardian] THROTTLED User:\"tenant-a\" client-id \"&lt;!here&gt; &amp; co\"")
    assert "<!here>" not in got.body.decode()
    text = body["blocks"][0]["text"]
    assert text["type"] == "plain_text" and len(text["text"].splitlines()) <= 12
    assert d.stats()["slack"]["sent"] == 1


def test_slack_5xx_is_retried_until_it_lands(receiver):
    receiver.script("/slack", [500, 503])
    with EscalationDispatcher([SlackChannel(receiver.url("/slack"))], retry=FAST_RETRY) as d:
        d.submit(escalation())
        assert d.flush()
    assert [r.status for r in receiver.on("/slack")] == [500, 503, 200]
    assert len({r.body for r in receiver.on("/slack")}) == 1  # the same message each time
    st = d.stats()["slack"]
    assert (st["sent"], st["retried"], st["failed"]) == (1, 2, 0)


def test_slack_4xx_is_not_retried(receiver):
    receiver.script("/slack", [], default=404)  # e.g. a revoked webhook
    with EscalationDispatcher([SlackChannel(receiver.url("/slack"))], retry=FAST_RETRY) as d:
        d.submit(escalation())
        assert d.flush()
    assert len(receiver.on("/slack")) == 1
    st = d.stats()["slack"]
    assert (st["failed"], st["retried"], st["last_error"]) == (1, 0, "HTTP 404")
