"""What each channel would send: built purely, checked without a network."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from guardian.errors import ConfigError
from guardian.escalation.summary import Links, escalation_for
from guardian.escalation.senders import (AgentChannel, PagerDutyChannel, SignedWebhookChannel, SlackChannel,
                                         sign, slack_escape, verify_signature)
from tests.unit.escalation.records import T0, detection, quarantine


def esc(event="quarantined", **q):
    return escalation_for(quarantine(**q), detection(), event=event, now=T0, links=Links("https://g"))


def test_slack_sends_the_headline_and_the_summary_as_plain_text_with_control_characters_escaped():
    e = esc(workload={"principal": "User:tenant-a", "client_id": "<!channel> & <@U123>"})
    req = SlackChannel("https://hooks.example/services/T/B/secret").request(e, T0)
    body = json.loads(req.body)
    assert req.url == "https://hooks.example/services/T/B/secret"
    assert body["text"] == slack_escape(e.headline) and "<!channel>" not in body["text"]
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in body["text"]
    block = body["blocks"][0]
    assert block["type"] == "section" and block["text"]["type"] == "plain_text"
    assert block["text"]["text"] == slack_escape(e.text)
    assert body["unfurl_links"] is False


def test_signed_webhook_signature_is_hmac_sha256_over_timestamp_and_body():
    secret = "s3cr3t"
    req = SignedWebhookChannel("https://hook", secret).request(esc(), T0 + 42.7)
    ts = req.headers["X-Guardian-Timestamp"]
    assert ts == str(int(T0 + 42.7))
    expected = "v1=" + hmac.new(secret.encode(), ts.encode() + b"." + req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Guardian-Signature"] == expected
    assert json.loads(req.body)["schema_version"] == 1
    assert req.headers["X-Guardian-Event"] == "quarantined"
    assert req.headers["X-Guardian-Delivery"].startswith("q-7f3a:quarantined:")


def test_verify_signature_rejects_tampering_wrong_secret_and_stale_timestamps():
    body, ts = b'{"a":1}', int(T0)
    sig = sign("k", ts, body)
    assert verify_signature("k", body, str(ts), sig, now=T0 + 10)
    assert not verify_signature("k", body + b" ", str(ts), sig, now=T0)
    assert not verify_signature("other", body, str(ts), sig, now=T0)
    assert not verify_signature("k", body, str(ts), sig, now=T0 + 301)
    assert not verify_signature("k", body, "not-a-number", sig, now=T0)
    assert not verify_signature("k", body, str(ts), "", now=T0)


def test_pagerduty_trigger_has_the_events_v2_shape_and_dedups_on_the_quarantine():
    req = PagerDutyChannel("R0UTING", url="https://pd.example/v2/enqueue").request(esc(), T0)
    body = json.loads(req.body)
    assert req.url == "https://pd.example/v2/enqueue"
    assert body["routing_key"] == "R0UTING" and body["event_action"] == "trigger" and body["dedup_key"] == "q-7f3a"
    p = body["payload"]
    assert set(p) >= {"summary", "source", "severity", "timestamp", "custom_details"}
    assert p["severity"] == "error"  # a "high" detection
    assert p["summary"] == esc().headline and p["timestamp"] == "2023-11-14T22:13:20Z"
    assert p["custom_details"]["record"]["quarantine_id"] == "q-7f3a"
    assert {"href": "https://g/v1/quarantines/q-7f3a/appeal", "text": "appeal"} in body["links"]


def test_pagerduty_resolves_on_release_with_only_the_dedup_key():
    body = json.loads(PagerDutyChannel("R").request(esc("released"), T0).body)
    assert body == {"routing_key": "R", "event_action": "resolve", "dedup_key": "q-7f3a"}


@pytest.mark.parametrize("severity, pd", [("critical", "critical"), ("high", "error"), ("medium", "warning"),
                                          ("low", "info"), ("bogus", "warning")])
def test_pagerduty_severity_mapping(severity, pd):
    e = escalation_for(quarantine(), detection(severity=severity), event="quarantined", now=T0)
    assert json.loads(PagerDutyChannel("R").request(e, T0).body)["payload"]["severity"] == pd


def test_pagerduty_summary_respects_the_1024_character_limit():
    e = escalation_for(quarantine(), detection(), event="quarantined", now=T0)
    e.record["summary"]["headline"] = "x" * 5000
    assert len(json.loads(PagerDutyChannel("R").request(e, T0).body)["payload"]["summary"]) == 1024


def test_agent_gets_the_record_with_a_bearer_token():
    req = AgentChannel("https://agent/hook", "tok-123").request(esc(), T0)
    assert req.headers["Authorization"] == "Bearer tok-123"
    assert json.loads(req.body) == esc().record


def test_channels_filter_by_event_and_by_the_escalations_own_channel_list():
    slack = SlackChannel("https://h", events={"quarantined"})
    assert slack.accepts(esc("quarantined")) and not slack.accepts(esc("released"))
    e = esc()
    only_pd = type(e)(e.record, channels=frozenset({"pagerduty"}))
    assert not SlackChannel("https://h").accepts(only_pd) and PagerDutyChannel("R").accepts(only_pd)


@pytest.mark.parametrize("make", [lambda: SignedWebhookChannel("https://h", ""), lambda: PagerDutyChannel(""),
                                  lambda: AgentChannel("https://h", "")])
def test_channels_refuse_empty_credentials(make):
    with pytest.raises(ConfigError):
        make()
