"""Lag, lag growth, rewinds, membership churn and creation rates from successive snapshots."""

from __future__ import annotations

import pytest

from guardian.ingest.admin_poller import ClusterSnapshot, GroupSnapshot, GroupTracker, tenant_prefix_owner
from guardian.model.samples import Metric

OWNER = tenant_prefix_owner(["tenant-a", "tenant-b"])
M1 = ("m1", "reader", ("tenant-a.orders-0", "tenant-a.orders-1"))
M2 = ("m2", "reader", ("tenant-a.orders-1",))


def snap(ts, committed, ends, members=(M1,), state="STABLE", topics=None):
    g = GroupSnapshot("tenant-a.readers", state, tuple(members), dict(committed))
    return ClusterSnapshot(ts, (g,), dict(ends), dict(topics or {"tenant-a.orders": 2}))


def values(samples, metric, **ident):
    return [(s.value, s.labels) for s in samples if s.metric is metric
            and all(getattr(s.workload, k) == v for k, v in ident.items())]


def test_lag_is_end_minus_committed_per_partition_and_total() -> None:
    t = GroupTracker(owner=OWNER)
    out = t.observe(snap(0.0, {("tenant-a.orders", 0): 40, ("tenant-a.orders", 1): 90},
                         {("tenant-a.orders", 0): 100, ("tenant-a.orders", 1): 100}))
    assert values(out, Metric.CONSUMER_LAG, topic="tenant-a.orders") == [
        (60.0, {"partition": "0"}), (10.0, {"partition": "1"})]
    total = [s for s in out if s.metric is Metric.CONSUMER_LAG and s.workload.topic is None]
    assert [s.value for s in total] == [70.0]
    assert total[0].workload.principal == "User:tenant-a" and total[0].workload.group == "tenant-a.readers"
    assert values(out, Metric.GROUP_MEMBERS) == [(1.0, {})]
    # nothing to compare with yet
    assert not values(out, Metric.CONSUMER_LAG_GROWTH) and not values(out, Metric.OFFSET_REWINDS)


def test_lag_growth_and_rewinds() -> None:
    t = GroupTracker()
    t.observe(snap(0.0, {("tenant-a.orders", 0): 40, ("tenant-a.orders", 1): 90},
                   {("tenant-a.orders", 0): 100, ("tenant-a.orders", 1): 100}))
    out = t.observe(snap(10.0, {("tenant-a.orders", 0): 50, ("tenant-a.orders", 1): 90},
                         {("tenant-a.orders", 0): 300, ("tenant-a.orders", 1): 100}))
    assert values(out, Metric.CONSUMER_LAG_GROWTH) == [(pytest.approx((260 - 70) / 10), {})]
    assert values(out, Metric.OFFSET_REWINDS) == [(0.0, {})]
    # reset partition 0 to the beginning: one rewind, 50 messages to read again
    out = t.observe(snap(20.0, {("tenant-a.orders", 0): 0, ("tenant-a.orders", 1): 90},
                         {("tenant-a.orders", 0): 300, ("tenant-a.orders", 1): 100}))
    assert values(out, Metric.OFFSET_REWINDS) == [(1.0, {})]
    assert values(out, Metric.REWOUND_MESSAGES) == [(50.0, {})]


def test_membership_changes_count_as_generation_churn() -> None:
    t = GroupTracker()
    c = {("tenant-a.orders", 0): 1}
    e = {("tenant-a.orders", 0): 1}
    t.observe(snap(0.0, c, e, members=(M1,)))
    same = t.observe(snap(5.0, c, e, members=(M1,)))
    assert values(same, Metric.GENERATION_CHURN) == [(0.0, {})]
    joined = t.observe(snap(10.0, c, e, members=(M1, M2)))
    assert values(joined, Metric.GENERATION_CHURN) == [(1.0, {})]
    # rebalances in the last 20 s (the window), per second
    assert values(joined, Metric.REBALANCE_RATE) == [(pytest.approx(1 / 20), {})]
    # same members but caught mid-rebalance still counts
    mid = t.observe(snap(15.0, c, e, members=(M1, M2), state="PREPARING_REBALANCING"))
    assert values(mid, Metric.GENERATION_CHURN) == [(1.0, {})]
    assert values(mid, Metric.REBALANCE_RATE) == [(pytest.approx(2 / 20), {})]
    # the same rebalance found again by the next poll is not another one
    still = t.observe(snap(17.0, c, e, members=(M1, M2), state="PREPARING_REBALANCING"))
    assert values(still, Metric.GENERATION_CHURN) == [(0.0, {})]
    # a poll interval longer than the window is the window
    later = t.observe(snap(47.0, c, e, members=(M1,)))
    assert values(later, Metric.REBALANCE_RATE) == [(pytest.approx(1 / 30), {})]
    # one member left and another joined between two polls: two rebalances, not one
    swapped = t.observe(snap(49.0, c, e, members=(M2,)))
    assert values(swapped, Metric.GENERATION_CHURN) == [(2.0, {})]


def test_topic_and_partition_creation_rates_by_owner() -> None:
    t = GroupTracker(owner=OWNER)
    t.observe(ClusterSnapshot(0.0, (), {}, {"tenant-a.orders": 2, "shared": 1}))
    out = t.observe(ClusterSnapshot(10.0, (), {}, {"tenant-a.orders": 4, "shared": 1,
                                                   "tenant-a.new1": 3, "tenant-a.new2": 3, "tenant-b.x": 1}))
    assert values(out, Metric.TOPIC_CREATION_RATE, principal="User:tenant-a") == [(pytest.approx(0.2), {})]
    # 2 added to orders + 3 + 3 new
    assert values(out, Metric.PARTITION_CREATION_RATE, principal="User:tenant-a") == [(pytest.approx(0.8), {})]
    assert values(out, Metric.PARTITION_COUNT, principal="User:tenant-a") == [(10.0, {})]
    assert values(out, Metric.TOPIC_CREATION_RATE, principal="User:tenant-b") == [(pytest.approx(0.1), {})]
    assert values(out, Metric.TOPIC_CREATION_RATE, principal=None) == [(0.0, {})]


def test_creation_rates_are_counts_between_listings_not_between_poll_ends() -> None:
    """A poll lists the topics first and then reads groups and offsets, which take longer the busier
    the cluster is: the creation rate divides by the time between listings, and carries that time."""
    t = GroupTracker(owner=OWNER)
    t.observe(ClusterSnapshot(1.4, (), {}, {"tenant-a.orders": 2}, topics_ts=0.0))
    out = t.observe(ClusterSnapshot(2.1, (), {}, {"tenant-a.orders": 2, "tenant-a.new": 20}, topics_ts=2.0))
    created = [s for s in out if s.metric is Metric.PARTITION_CREATION_RATE and s.workload.principal == "User:tenant-a"]
    assert [(s.ts, s.value) for s in created] == [(2.0, pytest.approx(10.0))]   # 20 in 2.0 s, not 0.7 s


def test_vanished_group_state_is_dropped() -> None:
    t = GroupTracker()
    t.observe(snap(0.0, {("tenant-a.orders", 0): 10}, {("tenant-a.orders", 0): 10}))
    t.observe(ClusterSnapshot(5.0, (), {}, {}))
    # the group comes back with a lower offset: a new group, not a rewind
    out = t.observe(snap(10.0, {("tenant-a.orders", 0): 0}, {("tenant-a.orders", 0): 10}))
    assert not values(out, Metric.OFFSET_REWINDS)
