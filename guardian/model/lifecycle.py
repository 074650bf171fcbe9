"""The quarantine lifecycle: which state may follow which. Pure.

``proposed -> (awaiting_approval) -> active -> appealed -> released | expired``;
a denied appeal returns to ``active``. A quarantine awaiting approval that a
human rejects is ``released`` without having acted. A ``watching`` record (a
runaway that hurts nobody) becomes ``active`` when an SRE approves it or when
its runaway starts to hurt, and ends ``released`` (dismissed) or ``expired``.
"""

from __future__ import annotations

from guardian.model.quarantine import QState, Quarantine
from guardian.errors import ConflictError

ALLOWED: dict[QState, frozenset[QState]] = {
    QState.PROPOSED: frozenset({QState.WATCHING, QState.AWAITING_APPROVAL, QState.ACTIVE, QState.RELEASED,
                                QState.EXPIRED}),
    QState.WATCHING: frozenset({QState.ACTIVE, QState.RELEASED, QState.EXPIRED}),
    QState.AWAITING_APPROVAL: frozenset({QState.ACTIVE, QState.RELEASED, QState.EXPIRED}),
    QState.ACTIVE: frozenset({QState.APPEALED, QState.RELEASED, QState.EXPIRED}),
    QState.APPEALED: frozenset({QState.ACTIVE, QState.RELEASED, QState.EXPIRED}),
    QState.RELEASED: frozenset(),
    QState.EXPIRED: frozenset(),
}


def can_move(src: QState, dst: QState) -> bool:
    return dst in ALLOWED[src]


def move(q: Quarantine, dst: QState, ts: float, by: str, reason: str = "") -> Quarantine:
    """Change ``q``'s state in place (recording history); ``ConflictError`` if not allowed."""
    if not can_move(q.state, dst):
        raise ConflictError(f"quarantine {q.id} is {q.state.value}; it cannot become {dst.value}")
    q.history.append({"ts": ts, "from": q.state.value, "to": dst.value, "by": by, "reason": reason})
    q.state = dst
    q.updated_at = ts
    return q
