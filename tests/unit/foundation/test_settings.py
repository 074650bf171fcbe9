from __future__ import annotations

import pytest
from pydantic import ValidationError

from guardian.settings import GuardianSettings


def test_environment_uses_prefix_and_nested_delimiter(monkeypatch) -> None:
    monkeypatch.setenv("GUARDIAN_KAFKA__BOOTSTRAP_SERVERS", "b1:9092")
    monkeypatch.setenv("GUARDIAN_TOPICS__PARTITIONS", "12")
    s = GuardianSettings()
    assert s.kafka.bootstrap_servers == "b1:9092"
    assert s.topics.partitions == 12


def test_guardian_variables_win_over_conventional_ones(monkeypatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "conventional:9092")
    monkeypatch.setenv("REDIS_URL", "redis://conventional:6379/0")
    assert GuardianSettings().kafka.bootstrap_servers == "conventional:9092"
    assert GuardianSettings().redis.url.get_secret_value() == "redis://conventional:6379/0"
    monkeypatch.setenv("GUARDIAN_KAFKA__BOOTSTRAP_SERVERS", "explicit:9092")
    assert GuardianSettings().kafka.bootstrap_servers == "explicit:9092"


def test_keyword_arguments_win_over_environment(monkeypatch) -> None:
    monkeypatch.setenv("GUARDIAN_TOPICS__METRICS", "from-env")
    assert GuardianSettings(topics={"metrics": "from-kwargs"}).topics.metrics == "from-kwargs"


def test_unknown_keys_are_rejected(monkeypatch) -> None:
    with pytest.raises(ValidationError, match="bootstrap_server"):
        GuardianSettings(kafka={"bootstrap_server": "typo:9092"})
    monkeypatch.setenv("GUARDIAN_REDIS__URI", "redis://typo")
    with pytest.raises(ValidationError, match="uri"):
        GuardianSettings()


def test_sasl_client_config() -> None:
    s = GuardianSettings(kafka={"bootstrap_servers": "b:1", "security_protocol": "SASL_PLAINTEXT",
                                "sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"})
    conf = s.kafka.client_config()
    assert conf == {"bootstrap.servers": "b:1", "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": "p"}


SECRETS = {"kafka": {"sasl_password": "kafka-pw-1"}, "redis": {"url": "redis://:redis-pw-2@r:6379/0"},
           "api": {"token": "gk_api-token-3"},
           "escalation": {"slack_webhook_url": "https://hooks.slack.example/T/B/slack-4", "webhook_secret": "hmac-5",
                          "pagerduty_routing_key": "pd-key-6", "agent_token": "agent-token-7"}}


def test_repr_and_dumps_hide_every_secret(monkeypatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    s = GuardianSettings(**SECRETS)
    shown = [repr(s), str(s), s.model_dump_json(), repr(s.model_dump()), repr(s.escalation), repr(s.redis)]
    for section in SECRETS.values():
        for value in section.values():
            for text in shown:
                assert value not in text
    assert "**********" in repr(s.escalation)


def test_secrets_reach_the_edge_that_sends_them(monkeypatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:env-pw@r:6379/0")
    s = GuardianSettings(kafka={"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "kafka-pw-1"})
    assert s.kafka.client_config()["sasl.password"] == "kafka-pw-1"
    assert s.redis.url.get_secret_value() == "redis://:env-pw@r:6379/0"
    assert "env-pw" not in repr(s)
