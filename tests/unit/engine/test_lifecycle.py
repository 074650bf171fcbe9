"""The quarantine lifecycle of DESIGN.md and the records' JSON round trip."""

from __future__ import annotations

import json

import pytest

from guardian.model.lifecycle import ALLOWED, can_move, move
from guardian.model.quarantine import ActionRecord, QState, Quarantine, StepStatus
from guardian.errors import ConflictError


def q(state=QState.PROPOSED):
    return Quarantine(id="q-1", workload={"principal": "User:a"}, workload_key="principal=User:a", policy="p",
                      state=state, rung=0, dry_run=False, created_at=0, updated_at=0, rung_at=0, expires_at=10)


def test_the_design_paths_are_allowed():
    x = q()
    for dst in (QState.AWAITING_APPROVAL, QState.ACTIVE, QState.APPEALED, QState.ACTIVE,
                QState.APPEALED, QState.RELEASED):
        move(x, dst, 1.0, "sre")
    assert [h["to"] for h in x.history] == ["awaiting_approval", "active", "appealed", "active", "appealed",
                                            "released"]
    assert can_move(QState.ACTIVE, QState.EXPIRED) and can_move(QState.APPEALED, QState.EXPIRED)


@pytest.mark.parametrize("src,dst", [(QState.RELEASED, QState.ACTIVE), (QState.EXPIRED, QState.APPEALED),
                                     (QState.PROPOSED, QState.APPEALED), (QState.AWAITING_APPROVAL, QState.APPEALED),
                                     (QState.ACTIVE, QState.AWAITING_APPROVAL)])
def test_forbidden_moves_raise_conflict_and_change_nothing(src, dst):
    x = q(src)
    with pytest.raises(ConflictError):
        move(x, dst, 1.0, "sre")
    assert x.state is src and x.history == []


def test_terminal_states_have_no_way_out():
    assert all(not ALLOWED[s] for s in QState if s.terminal)
    assert {s for s in QState if s.enforcing} == {QState.ACTIVE, QState.APPEALED}


def test_records_round_trip_through_json():
    x = q(QState.ACTIVE)
    x.desired = [{"kind": "quota", "idempotency_key": "quota:abc", "rung": 0}]
    assert Quarantine.from_dict(json.loads(json.dumps(x.to_dict()))) == x
    r = ActionRecord(key="quota:abc", quarantine_id="q-1", rung=0, plan={"kind": "quota"},
                     status=StepStatus.PLANNED, before={"quotas": {}})
    assert ActionRecord.from_dict(json.loads(json.dumps(r.to_dict()))) == r
