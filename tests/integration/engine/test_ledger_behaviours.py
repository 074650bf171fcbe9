"""The Redis ledger against the shared ledger behaviours that the testing kit's in-memory ledger also
passes (tests/unit/engine/test_memory_ledger.py): the fake is only as good as this agreement."""

from __future__ import annotations

import pytest

from tests.unit.engine.ledger_behaviours import BEHAVIOURS


@pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=lambda b: b.__name__)
def test_redis_ledger(behaviour, ledger, clock) -> None:
    behaviour(ledger, clock())


def test_a_ledger_written_before_the_live_index_is_indexed_once(ledger, redis_client, clock) -> None:
    """Open quarantines from before the ``q:live`` set existed still reach the engine's tick."""
    from guardian.model.quarantine import QState
    from guardian.store.ledger import Ledger
    from tests.unit.engine.ledger_behaviours import quarantine

    ledger.create_quarantine(quarantine("old", "c-old", clock()))
    ledger.create_quarantine(quarantine("gone", "c-gone", clock(), state=QState.EXPIRED))
    redis_client.delete(ledger.k("q", "live"))   # as an older guardian left it
    upgraded = Ledger(redis_client, prefix=ledger.prefix)
    assert [q.id for q in upgraded.unfinished()] == ["old"]
    assert redis_client.smembers(ledger.k("q", "live")) == {b"old"}
