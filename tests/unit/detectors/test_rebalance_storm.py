"""Rebalance storms from the Admin-API poller's group snapshots: a storm fires fast, a restart never."""

from __future__ import annotations

from guardian.model.detection import Signature
from guardian.detectors.pipeline import DetectorPipeline
from guardian.ingest.admin_poller import ClusterSnapshot, GroupSnapshot, GroupTracker, tenant_prefix_owner

GROUP = "tenant-a.billing"


def run(members_at, until: float, poll_s: float, state_at=lambda t: "STABLE") -> list[float]:
    """Poll every ``poll_s`` for ``until`` s; ``members_at(t)`` names the members; onsets' times."""
    tracker = GroupTracker(owner=tenant_prefix_owner(["tenant-a"]))
    pipe = DetectorPipeline(clock=lambda: 0.0)
    onsets, t = [], 0.0
    while t < until:
        members = tuple((m, "billing", (f"t-{i}",)) for i, m in enumerate(members_at(t)))
        snap = ClusterSnapshot(ts=t, groups=(GroupSnapshot(GROUP, state_at(t), members),))
        onsets += [t for d in pipe.process(tracker.observe(snap)) if d.signature is Signature.REBALANCE_STORM]
        t += poll_s
    return onsets


def steady(t: float) -> list[str]:
    return ["m0", "m1", "m2"]


def test_a_member_leaving_and_joining_every_2s_is_a_storm_within_8s() -> None:
    def storm(t: float) -> list[str]:
        if t < 600:
            return steady(t)
        k = int((t - 600) // 2)
        return [f"m{k}", f"m{k + 1}", f"m{k + 2}"]

    for poll_s in (1.0, 2.0, 3.0):   # each poll sees a leave and a join: two rebalances
        onsets = run(storm, 700, poll_s=poll_s)
        assert onsets and 600 < onsets[0] <= 608, (poll_s, onsets)
    # the default 15 s polls: the first poll that spans the storm sees ~14 members come and go
    onsets = run(storm, 700, poll_s=15.0)
    assert onsets and 600 < onsets[0] <= 615, onsets


def test_one_member_restarting_is_not_a_storm() -> None:
    def restart(t: float) -> list[str]:
        if 600 <= t < 604:
            return ["m0", "m1"]                 # m2 left ...
        return ["m0", "m1", "m2" if t < 604 else "m2b"]   # ... and came back as a new member

    def state(t: float) -> str:   # each change is a rebalance the group takes ~3 s to finish
        return "PREPARINGREBALANCE" if 600 <= t < 603 or 604 <= t < 607 else "STABLE"

    for poll_s in (1.0, 2.0, 5.0, 15.0):
        assert run(restart, 900, poll_s=poll_s) == [], poll_s
        assert run(restart, 900, poll_s=poll_s, state_at=state) == [], poll_s


def test_a_rolling_restart_with_readiness_is_not_a_storm() -> None:
    def rolling(t: float) -> list[str]:
        # 3 pods replaced one at a time, 20 s apart: each is a join then a leave 5 s later
        out = ["m0", "m1", "m2"]
        for i in range(3):
            start = 600 + 20 * i
            if t >= start:
                out.append(f"n{i}")
            if t >= start + 5:
                out.remove(f"m{i}")
        return out

    assert run(rolling, 900, poll_s=2.0) == []
