"""The testing kit's actuator contract (guardian/testing.py): the recording actuator passes it, and
an actuator that breaks a promise is caught by the check that names it."""

from __future__ import annotations

import pytest

from guardian.actuators.base import ActionPlan
from guardian.testing import (RecordingActuator, check_actuator, check_apply_twice_equals_apply_once,
                              check_revert_after_apply_restores)

TARGET = {"principal": "User:tenant-a", "client_id": "loader"}


def test_the_recording_actuator_keeps_the_contract():
    cluster: dict = {"other": {"producer_byte_rate": 5.0}}
    act = RecordingActuator("quota", state=cluster)
    plan = act.plan(TARGET, {"producer_byte_rate": 1024.0}, "q-1")
    check_actuator(act, plan, fresh=lambda: RecordingActuator("quota", state=cluster))
    assert cluster == {"other": {"producer_byte_rate": 5.0}}, "the checks leave the cluster as found"


def test_revert_restores_a_value_the_tenant_had():
    act = RecordingActuator("quota")
    plan = act.plan(TARGET, {"producer_byte_rate": 1024.0})
    act.state[act._target(plan)] = {"producer_byte_rate": 9e6, "consumer_byte_rate": 7e6}
    check_actuator(act, plan)
    assert act.state[act._target(plan)] == {"producer_byte_rate": 9e6, "consumer_byte_rate": 7e6}


class Accumulating(RecordingActuator):
    """Broken: each apply halves the rate again (not idempotent)."""

    def apply(self, plan: ActionPlan) -> None:
        values = self.state.setdefault(self._target(plan), {})
        values["producer_byte_rate"] = values.get("producer_byte_rate", 2048.0) / 2


class Forgetful(RecordingActuator):
    """Broken: revert drops the keys instead of restoring what was there."""

    def revert(self, plan: ActionPlan, before: dict) -> None:
        self.state.pop(self._target(plan), None)


def test_a_non_idempotent_apply_is_caught():
    act = Accumulating("quota")
    with pytest.raises(AssertionError, match="second apply"):
        check_apply_twice_equals_apply_once(act, act.plan(TARGET, {"producer_byte_rate": 1024.0}),
                                            lambda: {k: dict(v) for k, v in act.state.items()})


def test_a_revert_that_loses_the_original_is_caught():
    act = Forgetful("quota")
    plan = act.plan(TARGET, {"producer_byte_rate": 1024.0})
    act.state[act._target(plan)] = {"producer_byte_rate": 9e6}
    with pytest.raises(AssertionError, match="revert did not restore"):
        check_revert_after_apply_restores(act, plan, lambda: {k: dict(v) for k, v in act.state.items()})
