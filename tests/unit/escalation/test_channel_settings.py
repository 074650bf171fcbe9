"""Escalation channels from GUARDIAN_ESCALATION__*: each mistake is a ConfigError naming the variable
(and never echoing a secret), so `guardian run` says what to fix instead of ending in a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from guardian.errors import ConfigError
from guardian.escalation.senders import (AgentChannel, PagerDutyChannel, SignedWebhookChannel, SlackChannel,
                                         channels_from_settings)
from guardian.settings import EscalationSettings

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("values, names", [
    ({"webhook_url": "https://hooks.example/g"}, ["GUARDIAN_ESCALATION__WEBHOOK_SECRET",
                                                  "GUARDIAN_ESCALATION__WEBHOOK_URL"]),
    ({"webhook_url": "hooks.example/g", "webhook_secret": "s3cret"}, ["GUARDIAN_ESCALATION__WEBHOOK_URL"]),
    ({"agent_url": "https://agent.example/hook"}, ["GUARDIAN_ESCALATION__AGENT_TOKEN",
                                                   "GUARDIAN_ESCALATION__AGENT_URL"]),
    ({"agent_url": "ftp://agent.example", "agent_token": "t0ken"}, ["GUARDIAN_ESCALATION__AGENT_URL"]),
    ({"pagerduty_url": "https://pd.example/v2/enqueue"}, ["GUARDIAN_ESCALATION__PAGERDUTY_ROUTING_KEY",
                                                          "GUARDIAN_ESCALATION__PAGERDUTY_URL"]),
    ({"pagerduty_routing_key": "R0UTE", "pagerduty_url": "pd.example"}, ["GUARDIAN_ESCALATION__PAGERDUTY_URL"]),
    ({"slack_webhook_url": "T000/B000/XXXX"}, ["GUARDIAN_ESCALATION__SLACK_WEBHOOK_URL"]),
])
def test_each_channel_mistake_names_its_setting(values, names):
    with pytest.raises(ConfigError) as err:
        channels_from_settings(EscalationSettings(**values))
    for name in names:
        assert name in str(err.value)
    for secret in ("s3cret", "t0ken", "R0UTE", "T000/B000/XXXX"):
        assert secret not in str(err.value)


def test_a_complete_configuration_builds_every_channel():
    channels = channels_from_settings(EscalationSettings(
        slack_webhook_url="https://hooks.slack.example/T/B/X", webhook_url="https://hooks.example/g",
        webhook_secret="s", pagerduty_routing_key="R", agent_url="https://agent.example", agent_token="t"))
    assert [type(c) for c in channels] == [SlackChannel, SignedWebhookChannel, PagerDutyChannel, AgentChannel]
    assert channels_from_settings(EscalationSettings()) == []


def test_guardian_run_says_what_is_wrong_and_exits_2_without_a_traceback():
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
    env.update(GUARDIAN_ESCALATION__WEBHOOK_URL="https://hooks.example/g",
               KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", REDIS_URL="redis://127.0.0.1:1/0")
    proc = subprocess.run([sys.executable, "-m", "guardian.app.cli", "run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "GUARDIAN_ESCALATION__WEBHOOK_SECRET" in proc.stderr
    assert "Traceback" not in proc.stderr
