"""The testing kit's in-memory ledger against the shared ledger behaviours (the Redis ledger runs the
same list in tests/integration/engine/test_ledger_behaviours.py)."""

from __future__ import annotations

import pytest

from guardian.testing import FakeClock, MemoryLedger
from tests.unit.engine.ledger_behaviours import BEHAVIOURS, quarantine


@pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=lambda b: b.__name__)
def test_memory_ledger(behaviour) -> None:
    clock = FakeClock()
    behaviour(MemoryLedger(clock), clock())


def test_probation_expires_on_the_ledger_clock() -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock)
    ledger.set_probation("wl", clock() + 600, 0, "tenants", clock())
    clock.advance(599)
    assert ledger.probation("wl") is not None
    clock.advance(1)
    assert ledger.probation("wl") is None


def test_a_write_with_someone_elses_fence_is_refused() -> None:
    from guardian.errors import NotLeaderError
    from guardian.store.ledger import Fence

    clock = FakeClock()
    ledger = MemoryLedger(clock)
    ledger.leases["lease"] = "2:other"
    with pytest.raises(NotLeaderError):
        ledger.create_quarantine(quarantine("q1", "c1", clock()), fence=Fence("lease", "1:me"))
    ledger.leases["lease"] = "1:me"
    assert ledger.create_quarantine(quarantine("q1", "c1", clock()), fence=Fence("lease", "1:me")).version == 1
