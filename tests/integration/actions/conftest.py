"""Actuators wired to the real local broker's admin listener."""

from __future__ import annotations

from typing import Iterator

import pytest

from guardian.actuators.acl import AclActuator
from guardian.actuators.quota import QuotaActuator


@pytest.fixture
def quota_actuator(bootstrap: str) -> Iterator[QuotaActuator]:
    act = QuotaActuator.from_bootstrap(bootstrap)
    yield act
    act.close()


@pytest.fixture
def acl_actuator(bootstrap: str) -> AclActuator:
    return AclActuator.from_config({"bootstrap.servers": bootstrap})


# The pod actuator's real kube-apiserver, for the pod case of the contract suite.
# Its conftest builds the binaries at collection when its own tests are collected;
# the contract suite only uses them when they are already cached (see there).
from tests.integration.kubernetes.conftest import kubernetes  # noqa: E402,F401
