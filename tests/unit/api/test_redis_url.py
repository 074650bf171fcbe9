"""Production code never falls back to the dev stack's Redis: without GUARDIAN_REDIS__URL or
REDIS_URL it stops with a ConfigError that says what to set."""

from __future__ import annotations

import pytest

from guardian.settings import redis_url_for
from guardian.errors import ConfigError
from guardian.settings import GuardianSettings


@pytest.fixture
def no_dev_stack(monkeypatch):
    from guardian_dev import stack

    def refuse(self):
        raise AssertionError("production code asked the dev stack for its endpoints")

    monkeypatch.setattr(stack.DevStack, "endpoints", refuse)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("GUARDIAN_REDIS__URL", raising=False)


def test_a_missing_redis_url_is_a_config_error_naming_both_variables(no_dev_stack):
    with pytest.raises(ConfigError) as err:
        redis_url_for(GuardianSettings())
    assert "GUARDIAN_REDIS__URL" in str(err.value) and "REDIS_URL" in str(err.value)


def test_the_configured_url_is_used(no_dev_stack, monkeypatch):
    assert redis_url_for(GuardianSettings(redis={"url": "redis://:pw@r:6379/2"})) == "redis://:pw@r:6379/2"
    monkeypatch.setenv("REDIS_URL", "redis://conventional:6379/0")
    assert redis_url_for(GuardianSettings()) == "redis://conventional:6379/0"


def test_the_api_and_the_engine_wiring_refuse_to_start_without_redis(no_dev_stack):
    from guardian.api.app import build_context

    with pytest.raises(ConfigError):
        build_context(GuardianSettings())


def test_the_dev_stack_hands_its_redis_over_as_redis_url(no_dev_stack, monkeypatch):
    """What the demo and the drill do for their guardian subprocess (``env.update(ep.exports())``)."""
    from guardian_dev.stack import Endpoints

    for key, value in Endpoints(redis_url="redis://127.0.0.1:16379/0").exports().items():
        monkeypatch.setenv(key, value)
    assert redis_url_for(GuardianSettings()) == "redis://127.0.0.1:16379/0"
