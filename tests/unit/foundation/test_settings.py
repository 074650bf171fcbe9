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
    assert GuardianSettings().redis.url == "redis://conventional:6379/0"
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
