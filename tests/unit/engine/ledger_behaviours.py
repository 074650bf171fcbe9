"""Ledger behaviours the engine relies on, run against BOTH the in-memory ledger of the testing kit
(tests/unit/engine/test_memory_ledger.py) and the Redis ledger (tests/integration/engine/
test_ledger_behaviours.py), so the fake cannot drift from the real one unnoticed.

Each behaviour takes a fresh, empty ledger and the time ``now`` of its clock.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from guardian.model.quarantine import ActionRecord, QState, Quarantine, StepStatus
from guardian.errors import ConflictError


def quarantine(qid: str, client_id: str, now: float, state: QState = QState.ACTIVE,
               tenant: str = "tenant-a") -> Quarantine:
    return Quarantine(id=qid, workload={"principal": f"User:{tenant}", "client_id": client_id},
                      workload_key=f"principal=User:{tenant}|client_id={client_id}", policy="tenants",
                      state=state, rung=0, dry_run=False, created_at=now, updated_at=now, rung_at=now,
                      expires_at=now + 300,
                      desired=[{"kind": "quota", "target": {"client_id": client_id}, "params": {},
                                "quarantine_id": qid, "idempotency_key": f"quota:{qid}"}])


def create_then_read_back(ledger: Any, now: float) -> None:
    q = ledger.create_quarantine(quarantine("q1", "c1", now), audit=[{"type": "created", "id": "q1"}])
    assert q.version == 1
    got = ledger.get("q1")
    assert got == q and got is not q
    assert ledger.open_for(q.workload_key).id == "q1"
    assert [x.id for x in ledger.open_counting()] == ["q1"]
    assert ledger.dirty() == [("q1", 1)]
    assert ledger.outbox_peek() == [{"type": "created", "id": "q1"}]
    assert ledger.get("nope") is None


def a_stale_version_is_a_conflict(ledger: Any, now: float) -> None:
    ledger.create_quarantine(quarantine("q1", "c1", now))
    mine, theirs = ledger.get("q1"), ledger.get("q1")
    theirs.expires_at += 60
    assert ledger.save_quarantine(theirs).version == 2
    mine.expires_at += 3600
    with pytest.raises(ConflictError):
        ledger.save_quarantine(mine, audit=[{"type": "lost"}])
    assert mine.version == 1, "a failed save leaves the caller's version as it was"
    assert ledger.get("q1").expires_at == theirs.expires_at
    assert {"type": "lost"} not in ledger.outbox_peek(), "a failed write audits nothing"
    with pytest.raises(ConflictError):
        ledger.save_quarantine(quarantine("never-created", "c9", now))


def one_open_quarantine_per_workload_and_the_cap(ledger: Any, now: float) -> None:
    ledger.create_quarantine(quarantine("q1", "c1", now), max_open=2)
    with pytest.raises(ConflictError):
        ledger.create_quarantine(quarantine("q1", "other", now))            # the id is taken
    with pytest.raises(ConflictError):
        ledger.create_quarantine(quarantine("q2", "c1", now))               # the workload has one open
    ledger.create_quarantine(quarantine("w1", "c3", now, state=QState.WATCHING), max_open=1)  # watches do not count
    ledger.create_quarantine(quarantine("q3", "c4", now), max_open=2)
    with pytest.raises(ConflictError):
        ledger.create_quarantine(quarantine("q4", "c5", now), max_open=2)
    assert sorted(q.id for q in ledger.open_counting()) == ["q1", "q3"]


def a_terminal_quarantine_frees_its_workload_and_its_place(ledger: Any, now: float) -> None:
    q = ledger.create_quarantine(quarantine("q1", "c1", now), max_open=1)
    q.state = QState.RELEASED
    ledger.save_quarantine(q)
    assert ledger.open_for(q.workload_key) is None and ledger.open_counting() == []
    ledger.create_quarantine(quarantine("q2", "c1", now + 1), max_open=1)
    assert ledger.open_for(q.workload_key).id == "q2"


def converged_only_at_the_version_seen(ledger: Any, now: float) -> None:
    q = ledger.create_quarantine(quarantine("q1", "c1", now))
    ledger.save_quarantine(q)                       # version 2 while a reconciler converged version 1
    ledger.mark_converged("q1", 1)
    assert ledger.dirty() == [("q1", 2)]
    ledger.mark_converged("q1", 2)
    assert ledger.dirty() == []
    ledger.mark_dirty("q1", 2)
    assert ledger.dirty() == [("q1", 2)]


def action_records_are_versioned(ledger: Any, now: float) -> None:
    q = ledger.create_quarantine(quarantine("q1", "c1", now))
    rec = ActionRecord(key="quota:q1", quarantine_id="q1", rung=0, plan=q.desired[0], status=StepStatus.PLANNED,
                       before={"values": {}})
    assert ledger.put_action(rec).version == 1
    stale = ledger.get_action("quota:q1")
    rec.status = StepStatus.APPLIED
    ledger.put_action(rec)
    stale.status = StepStatus.FAILED
    with pytest.raises(ConflictError):
        ledger.put_action(stale)
    assert stale.version == 1
    assert [(r.key, r.status) for r in ledger.actions(q)] == [("quota:q1", StepStatus.APPLIED)]
    with pytest.raises(ConflictError):   # a second "first write" of the same key
        ledger.put_action(ActionRecord(key="quota:q1", quarantine_id="q1", rung=0, plan={}, status=StepStatus.PLANNED))


def pause_probation_and_the_outbox(ledger: Any, now: float) -> None:
    assert ledger.pause_state() is None
    ledger.set_pause("sre", "incident", now, audit=[{"n": 1}])
    assert ledger.pause_state() == {"by": "sre", "reason": "incident", "ts": now}
    ledger.clear_pause(audit=[{"n": 2}])
    assert ledger.pause_state() is None
    ledger.append_audit([{"n": 3}, {"n": 4}])
    assert ledger.outbox_len() == 4 and ledger.outbox_peek(2) == [{"n": 1}, {"n": 2}]
    ledger.outbox_ack(3)
    assert ledger.outbox_peek() == [{"n": 4}]
    ledger.set_probation("wl", now + 600, 1, "tenants", now)
    assert ledger.probation("wl") == {"until": now + 600, "rung": 1, "policy": "tenants"}
    assert ledger.probation("other") is None


def list_is_newest_first_and_filters(ledger: Any, now: float) -> None:
    ledger.create_quarantine(quarantine("old", "c1", now))
    ledger.create_quarantine(quarantine("new", "c2", now + 10, tenant="tenant-b"))
    w = ledger.create_quarantine(quarantine("watch", "c3", now + 5, state=QState.WATCHING))
    assert [q.id for q in ledger.list()] == ["new", "watch", "old"]
    assert [q.id for q in ledger.list(states=[QState.WATCHING])] == [w.id]
    assert [q.id for q in ledger.list(tenant="tenant-b")] == ["new"]
    assert [q.id for q in ledger.list(limit=1)] == ["new"]


def newest_walks_the_whole_history_in_order_from_any_row_even_across_equal_times(ledger: Any, now: float) -> None:
    for i in range(7):   # three pairs created at the same second, and one alone
        ledger.create_quarantine(quarantine(f"q{i}", f"c{i}", now + i // 2,
                                            state=QState.RELEASED if i % 3 else QState.ACTIVE))
    expected = ["q6", "q5", "q4", "q3", "q2", "q1", "q0"]
    assert [q.id for q in ledger.newest(batch=2)] == expected
    for k, q in enumerate(list(ledger.newest(batch=3))):
        assert [r.id for r in ledger.newest((q.created_at, q.id), batch=2)] == expected[k + 1:]
    assert [q.id for q in ledger.newest((now, "q1"), batch=1)] == ["q0"]
    assert [q.id for q in ledger.newest((now - 1, "zz"))] == []
    walk = ledger.newest(batch=2)
    seen = [next(walk).id, next(walk).id]
    ledger.create_quarantine(quarantine("q7", "c7", now + 10))   # created while a page is being read
    seen += [q.id for q in walk]
    assert seen == expected


def newest_of_some_principals_walks_only_theirs_in_the_same_order(ledger: Any, now: float) -> None:
    for i in range(9):   # three tenants, pairs created in the same second
        ledger.create_quarantine(quarantine(f"q{i}", f"c{i}", now + i // 2, tenant=("a", "b", "c")[i % 3]))
    assert [q.id for q in ledger.newest(principals=["User:a"], batch=2)] == ["q6", "q3", "q0"]
    both = [q.id for q in ledger.newest(principals=["User:a", "User:c"], batch=1)]
    assert both == ["q8", "q6", "q5", "q3", "q2", "q0"]
    q5 = ledger.get("q5")
    assert [q.id for q in ledger.newest((q5.created_at, q5.id), principals=["User:a", "User:c"])] == ["q3", "q2", "q0"]
    assert [q.id for q in ledger.newest(principals=["User:nobody"])] == []
    assert [q.id for q in ledger.newest(principals=[])] == []
    done = ledger.get("q3")
    done.state = QState.RELEASED
    ledger.save_quarantine(done)   # a save keeps its place in its principal's walk, once
    assert [q.id for q in ledger.newest(principals=["User:a"])] == ["q6", "q3", "q0"]


def unfinished_lists_every_open_quarantine_however_much_newer_history_there_is(ledger: Any, now: float) -> None:
    ledger.create_quarantine(quarantine("old", "c-old", now - 10))
    for i in range(1001):   # more finished history than ``list`` reads (its newest 1,000)
        ledger.create_quarantine(quarantine(f"done{i}", f"c{i}", now + i, state=QState.RELEASED))
    ledger.create_quarantine(quarantine("watch", "c-watch", now + 2000, state=QState.WATCHING))
    assert "old" not in {q.id for q in ledger.list()}
    assert sorted(q.id for q in ledger.unfinished()) == ["old", "watch"]
    old = ledger.get("old")
    old.state = QState.EXPIRED
    ledger.save_quarantine(old)
    assert [q.id for q in ledger.unfinished()] == ["watch"]


BEHAVIOURS: list[Callable[[Any, float], None]] = [
    unfinished_lists_every_open_quarantine_however_much_newer_history_there_is,
    create_then_read_back, a_stale_version_is_a_conflict, one_open_quarantine_per_workload_and_the_cap,
    a_terminal_quarantine_frees_its_workload_and_its_place, converged_only_at_the_version_seen,
    action_records_are_versioned, pause_probation_and_the_outbox, list_is_newest_first_and_filters,
    newest_walks_the_whole_history_in_order_from_any_row_even_across_equal_times,
    newest_of_some_principals_walks_only_theirs_in_the_same_order,
]
