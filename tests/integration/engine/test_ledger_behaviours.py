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


def test_quarantines_written_without_the_principal_index_are_indexed_by_the_next_process(
        ledger, redis_client, clock) -> None:
    """A tenant's list reads its principal's index: what a ledger held before that index existed, and what
    an older guardian wrote during a rolling upgrade, is in it once a new process reads it."""
    from guardian.store.ledger import Ledger
    from tests.unit.engine.ledger_behaviours import quarantine

    for i in range(5):
        ledger.create_quarantine(quarantine(f"q{i}", f"c{i}", clock() + i, tenant=("a", "b")[i % 2]))
    for key in redis_client.scan_iter(match=ledger.k("q", "by-principal") + "*"):
        redis_client.delete(key)   # as a guardian from before the index left it
    upgraded = Ledger(redis_client, prefix=ledger.prefix)
    assert [q.id for q in upgraded.newest(principals=["User:a"], batch=2)] == ["q4", "q2", "q0"]
    upgraded.create_quarantine(quarantine("q5", "c5", clock() + 5, tenant="b"))
    assert [q.id for q in upgraded.newest(principals=["User:b"])] == ["q5", "q3", "q1"]
    # an older guardian, still running during the upgrade, writes without the index
    Ledger(redis_client, prefix=ledger.prefix).create_quarantine(quarantine("q6", "c6", clock() + 6, tenant="a"))
    redis_client.zrem(ledger.k("q", "by-principal", "User:a"), "q6")
    assert [q.id for q in upgraded.newest(principals=["User:a"])] == ["q4", "q2", "q0"], (
        "a process indexes once, at its first such read")
    restarted = Ledger(redis_client, prefix=ledger.prefix)   # the next new process
    assert [q.id for q in restarted.newest(principals=["User:a"])] == ["q6", "q4", "q2", "q0"]
