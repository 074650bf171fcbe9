"""The Redis ledger against the shared ledger behaviours that the testing kit's in-memory ledger also
passes (tests/unit/engine/test_memory_ledger.py): the fake is only as good as this agreement."""

from __future__ import annotations

import pytest

from tests.unit.engine.ledger_behaviours import BEHAVIOURS


@pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=lambda b: b.__name__)
def test_redis_ledger(behaviour, ledger, clock) -> None:
    behaviour(ledger, clock())
