"""A step that raises ``TemporaryError(delay=d)`` waits ``d`` seconds of the engine's clock before it
is tried again, while other quarantines keep converging (real broker quotas, real Redis ledger)."""

from __future__ import annotations

from typing import Any

import pytest

from guardian.actuators.base import ActionPlan, Actuator
from guardian.model.quarantine import StepStatus
from guardian.errors import TemporaryError
from guardian.clients.kafka_admin import QuotaEntity

from .conftest import detection

DELAY_S = 30.0


class RefusingFor(Actuator):
    """Delegates to a real actuator, but ``apply`` or ``revert`` on one client-id first raises
    ``TemporaryError(delay=DELAY_S)`` ``times`` times (a broker saying "not now, try in 30 s")."""

    def __init__(self, inner: Actuator, client_id: str, times: int, step: str = "apply") -> None:
        self.inner, self.client_id, self.left, self.step = inner, client_id, times, step
        self.kind = inner.kind  # type: ignore[misc]
        self.tries = 0          # calls of ``step`` on the refused client-id, refused or not

    def _maybe_refuse(self, plan: ActionPlan, step: str) -> None:
        if step != self.step or plan.target.get("client_id") != self.client_id:
            return
        self.tries += 1
        if self.left > 0:
            self.left -= 1
            raise TemporaryError("broker busy", delay=DELAY_S)

    def plan(self, target, params, quarantine_id=""):
        return self.inner.plan(target, params, quarantine_id)

    def observe(self, plan: ActionPlan) -> dict[str, Any]:
        return self.inner.observe(plan)

    def apply(self, plan: ActionPlan) -> None:
        self._maybe_refuse(plan, "apply")
        self.inner.apply(plan)

    def verify(self, plan: ActionPlan) -> bool:
        return self.inner.verify(plan)

    def revert(self, plan: ActionPlan, before: dict[str, Any]) -> None:
        self._maybe_refuse(plan, "revert")
        self.inner.revert(plan, before)


@pytest.fixture
def other_client(client_id: str, quota_admin):
    cid = client_id + "-other"
    yield cid
    quota_admin.restore(QuotaEntity.of(user="tenant-a", client_id=cid), {})


def _status(ledger, q) -> StepStatus | None:
    rec = ledger.get_action(q.desired[0]["idempotency_key"])
    return rec.status if rec is not None else None


def test_apply_waits_out_the_delay_while_others_converge(make_engine, quota, clock, ledger, client_id,
                                                        other_client):
    act = RefusingFor(quota(), client_id, times=2)
    engine = make_engine({"quota": act})

    engine.handle(detection(client_id))
    assert act.tries == 1
    refused = ledger.open_for(f"principal=User:tenant-a|client_id={client_id}")

    clock.t += DELAY_S / 3
    engine.handle(detection(other_client))      # another quarantine converges meanwhile
    other = ledger.open_for(f"principal=User:tenant-a|client_id={other_client}")
    assert _status(ledger, other) is StepStatus.VERIFIED
    engine.tick()
    assert act.tries == 1, "retried before the delay the error asked for"
    assert _status(ledger, refused) is StepStatus.PLANNED

    clock.t += DELAY_S            # DELAY_S / 3 after the wait ran out: retried, refused again
    engine.tick()
    assert act.tries == 2
    clock.t += DELAY_S / 2
    engine.tick()
    assert act.tries == 2, "the second refusal's delay counts from the second try"

    clock.t += DELAY_S / 2
    engine.tick()
    assert act.tries == 3
    assert _status(ledger, refused) is StepStatus.VERIFIED


def test_revert_waits_out_the_delay(make_engine, quota, clock, ledger, client_id):
    act = RefusingFor(quota(), client_id, times=1, step="revert")
    engine = make_engine({"quota": act})
    engine.handle(detection(client_id))
    q = ledger.list()[0]
    assert _status(ledger, q) is StepStatus.VERIFIED

    engine.release(q.id, by="sre", reason="test")
    assert act.tries == 1
    clock.t += DELAY_S / 2
    engine.tick()
    assert act.tries == 1, "revert retried before the delay the error asked for"
    clock.t += DELAY_S
    engine.tick()
    assert act.tries == 2 and _status(ledger, q) is StepStatus.REVERTED
