"""Source 2: consumer groups, offsets and topic counts polled through the Admin API.

``GroupTracker`` is pure: successive ``ClusterSnapshot``s in, samples out.

* lag per (group, topic, partition) = end offset - committed offset, and the
  group's total; lag growth = change of the total per second;
* a rewind is a committed offset that moved backwards between two polls; the
  distance is the number of messages the group will read again;
* members per group; generation churn = rebalances since the last poll: each
  member that joined or left is one (each forces a rebalance); else a new
  assignment, or a poll that finds the group entering a rebalance, is one
  (the Admin API does not expose the classic generation id); the rebalance
  rate is the churn of the last ``rebalance_window_s`` (20 s, or the poll
  interval when longer) per second, so a storm climbs while one member
  restarting (a leave and a join) stays low;
* topic and partition creations per second, attributed to the topic's owner
  when an ``owner`` function knows it (else the cluster); every owner the
  function lists (``owner.owners``) gets a sample at every poll, 0 while it
  owns no topic.

``AdminPoller`` is the edge that takes the snapshots: confluent-kafka's AdminClient for topics, groups,
members and end offsets, kafka-python's for committed offsets (``AdminPoller.committed`` says why).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

# kafka-python at import, not in ``committed``: that runs on the collector's thread while the main thread
# imports kafka-python for the quota admin, and two threads importing one package deadlock
# (``_DeadlockError`` on ``kafka.errors``, seen in a CI run of the demo)
import kafka.errors as kerr
from kafka.admin import KafkaAdminClient

from guardian.errors import PermanentError, TemporaryError
from guardian.model.samples import Metric, Sample, Workload

log = logging.getLogger(__name__)

SOURCE = "admin"
_REBALANCING = frozenset(("PREPARING_REBALANCING", "PREPARINGREBALANCE", "COMPLETING_REBALANCING",
                          "COMPLETINGREBALANCE", "RECONCILING", "ASSIGNING"))

Owner = Callable[[str], str | None]  # resource name -> principal ("User:x") or None


@dataclass(frozen=True)
class GroupSnapshot:
    group_id: str
    state: str
    members: tuple[tuple[str, str, tuple[str, ...]], ...] = ()   # (member_id, client_id, sorted "topic-p")
    committed: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterSnapshot:
    ts: float
    groups: tuple[GroupSnapshot, ...] = ()
    end_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    topics: dict[str, int] = field(default_factory=dict)   # topic -> partition count
    # when ``topics`` was listed (the poll's first call; ``ts`` is when the poll ended, after the
    # groups and offsets): creation rates are counts between listings, so they take this time
    topics_ts: float | None = None

    @property
    def topics_at(self) -> float:
        return self.ts if self.topics_ts is None else self.topics_ts


class TenantPrefixOwner:
    """Owner by the naming convention ``<tenant>.``: ``tenant-a.orders`` -> ``User:tenant-a``.

    ``owners`` lists every principal it can name, so each gets a creation-rate sample at every
    poll even while it owns no topic."""

    def __init__(self, tenants: Iterable[str]) -> None:
        self.tenants = tuple(tenants)
        self.owners = tuple(f"User:{t}" for t in self.tenants)

    def __call__(self, name: str) -> str | None:
        for t in self.tenants:
            if name.startswith(f"{t}."):
                return f"User:{t}"
        return None


def tenant_prefix_owner(tenants: Iterable[str]) -> Owner:
    return TenantPrefixOwner(tenants)


@dataclass
class _GroupMemory:
    """What the previous polls said of one group."""

    lag: int
    committed: dict[tuple[str, int], int]
    fingerprint: tuple
    rebalancing: bool
    changes: list[tuple[float, int]] = field(default_factory=list)   # (poll ts, rebalances) in the window


class GroupTracker:
    """Keeps the previous snapshot and derives lag, growth, rewinds, churn and creation rates."""

    def __init__(self, cluster: str = "default", owner: Owner | None = None,
                 rebalance_window_s: float = 20.0) -> None:
        self.cluster = cluster
        self.rebalance_window_s = rebalance_window_s
        self.owner: Owner = owner or (lambda name: None)
        self._prev_ts: float | None = None
        self._groups: dict[str, _GroupMemory] = {}
        self._topics: dict[str, int] | None = None
        self._topics_ts: float | None = None

    def observe(self, snap: ClusterSnapshot) -> list[Sample]:
        out: list[Sample] = []
        dt = None if self._prev_ts is None or snap.ts <= self._prev_ts else snap.ts - self._prev_ts
        seen: set[str] = set()
        for g in snap.groups:
            seen.add(g.group_id)
            out.extend(self._group(snap, g, dt))
        for gone in set(self._groups) - seen:
            del self._groups[gone]
        out.extend(self._topic_counts(snap))
        self._prev_ts = snap.ts
        return out

    def _group(self, snap: ClusterSnapshot, g: GroupSnapshot, dt: float | None) -> list[Sample]:
        ts, out = snap.ts, []
        principal = self.owner(g.group_id)
        gw = Workload(principal=principal, group=g.group_id)
        total = 0
        for (topic, part), committed in sorted(g.committed.items()):
            end = snap.end_offsets.get((topic, part))
            if end is None or committed < 0:
                continue
            lag = max(0, end - committed)
            total += lag
            out.append(self._s(ts, Workload(principal=principal, group=g.group_id, topic=topic),
                               Metric.CONSUMER_LAG, lag, {"partition": str(part)}))
        out.append(self._s(ts, gw, Metric.CONSUMER_LAG, total))
        out.append(self._s(ts, gw, Metric.GROUP_MEMBERS, len(g.members)))
        fingerprint = tuple(sorted(g.members))
        rebalancing = g.state.upper() in _REBALANCING
        prev = self._groups.get(g.group_id)
        now = _GroupMemory(total, dict(g.committed), fingerprint, rebalancing)
        self._groups[g.group_id] = now
        if prev is None:
            return out
        if dt:
            out.append(self._s(ts, gw, Metric.CONSUMER_LAG_GROWTH, (total - prev.lag) / dt))

        rewinds = rewound = 0
        for tp, committed in g.committed.items():
            before = prev.committed.get(tp)
            if before is not None and 0 <= committed < before:
                rewinds += 1
                rewound += before - committed
        out.append(self._s(ts, gw, Metric.OFFSET_REWINDS, rewinds))
        out.append(self._s(ts, gw, Metric.REWOUND_MESSAGES, rewound))

        # every member that joined or left forced a rebalance of its own; else a new assignment, or
        # entering a rebalance with the same members, is one; a poll that finds the same
        # rebalance still going does not count it again
        joined_or_left = len({m[0] for m in fingerprint} ^ {m[0] for m in prev.fingerprint})
        changed = joined_or_left or int(fingerprint != prev.fingerprint or (rebalancing and not prev.rebalancing))
        out.append(self._s(ts, gw, Metric.GENERATION_CHURN, changed))
        now.changes = prev.changes
        if dt:
            window = max(self.rebalance_window_s, dt)
            now.changes = [(t, c) for t, c in prev.changes if t > ts - window] + [(ts, changed)]
            out.append(self._s(ts, gw, Metric.REBALANCE_RATE, sum(c for _, c in now.changes) / window))
        return out

    def _topic_counts(self, snap: ClusterSnapshot) -> list[Sample]:
        prev, self._topics = self._topics, dict(snap.topics)
        ts, prev_ts, self._topics_ts = snap.topics_at, self._topics_ts, snap.topics_at
        dt = None if prev_ts is None or ts <= prev_ts else ts - prev_ts
        if prev is None or not dt:
            return []
        # every known owner gets a sample at every poll, 0 while it owns nothing: a tenant whose
        # first topics come in a storm must already have a (quiet) normal to be judged against
        created: dict[str | None, list[int]] = {o: [0, 0] for o in getattr(self.owner, "owners", ())}
        partitions: dict[str | None, int] = {o: 0 for o in created}
        for topic, count in snap.topics.items():
            owner = self.owner(topic)
            partitions[owner] = partitions.get(owner, 0) + count
            c = created.setdefault(owner, [0, 0])
            before = prev.get(topic)
            if before is None:
                c[0] += 1
                c[1] += count
            elif count > before:
                c[1] += count - before
        out = []
        for owner, (topics, parts) in created.items():
            w = Workload(principal=owner)
            out.append(self._s(ts, w, Metric.TOPIC_CREATION_RATE, topics / dt))
            out.append(self._s(ts, w, Metric.PARTITION_CREATION_RATE, parts / dt))
            out.append(self._s(ts, w, Metric.PARTITION_COUNT, partitions[owner]))
        return out

    def _s(self, ts: float, w: Workload, metric: Metric, value: float,
           labels: dict[str, str] | None = None) -> Sample:
        return Sample(ts=ts, workload=w, metric=metric, value=float(value), source=SOURCE,
                      cluster=self.cluster, labels=labels or {})


class AdminPoller:
    """Takes ``ClusterSnapshot``s through the Admin API (the admin listener).

    ``client_config`` is librdkafka's configuration, ``offsets_config`` kafka-python's keyword arguments
    for the same cluster (``bootstrap_servers`` and the security settings; when None, the bootstrap
    servers of ``client_config`` over plaintext).
    """

    def __init__(self, client_config: dict[str, Any], clock: Callable[[], float] | None = None,
                 timeout_s: float = 15.0, include_internal: bool = False,
                 offsets_config: dict[str, Any] | None = None) -> None:
        import time

        from confluent_kafka.admin import AdminClient

        self.clock = clock or time.time
        self.timeout_s = timeout_s
        self.include_internal = include_internal
        self._admin = AdminClient(dict(client_config))
        self._offsets_config = dict(offsets_config or {"bootstrap_servers": client_config["bootstrap.servers"]})
        self._offsets_admin: Any = None

    def close(self) -> None:
        if self._offsets_admin is not None:
            self._offsets_admin.close()
            self._offsets_admin = None

    def committed(self, group_ids: list[str]) -> dict[str, dict[tuple[str, int], int]]:
        """Each group's committed offsets (a group whose offsets cannot be read is left out, and logged).

        Read with kafka-python, not confluent-kafka: librdkafka's ListConsumerGroupOffsets dereferences
        a consumer-group handle an admin client does not have when a coordinator answers
        NOT_COORDINATOR (``rd_kafka_cgrp_op`` from ``rd_kafka_handle_OffsetFetch``, librdkafka #5040,
        still in 2.16), and the whole guardian process dies of SIGSEGV. A coordinator answers so while
        group coordination moves between brokers (a broker restarting, a coordinator loading): two of
        five drill runs on three brokers lost their guardian to it (docs/BENCHMARKS.md, eighth run).
        kafka-python raises an error instead; one OffsetFetch per coordinator covers all its groups,
        and when it fails the groups are asked one by one, so one moving coordinator costs only its
        own groups this poll.
        """
        if not group_ids:
            return {}
        t = self.timeout_s
        try:
            if self._offsets_admin is None:
                self._offsets_admin = KafkaAdminClient(client_id="guardian-admin-poller",
                                                       request_timeout_ms=int(t * 1000), **self._offsets_config)
            try:
                return _committed(self._offsets_admin.list_group_offsets(list(group_ids)))
            except kerr.KafkaError as exc:
                log.info("committed offsets of %d groups in one request failed (%s); asking each group",
                         len(group_ids), exc)
            out: dict[str, dict[tuple[str, int], int]] = {}
            for gid in group_ids:
                try:
                    out.update(_committed(self._offsets_admin.list_group_offsets([gid])))
                except kerr.KafkaError as exc:
                    log.warning("committed offsets of group %s unavailable this poll: %s", gid, exc)
            return out
        except kerr.KafkaError as exc:   # no broker answers: the poll fails as every other admin call's would
            self.close()
            raise TemporaryError(f"admin poll failed: committed offsets: {exc}", delay=5.0) from exc

    def snapshot(self) -> ClusterSnapshot:
        from confluent_kafka import KafkaException, TopicPartition
        from confluent_kafka.admin import OffsetSpec

        t = self.timeout_s
        try:
            meta = self._admin.list_topics(timeout=t)
            listed = self.clock()
            topics = {name: len(tm.partitions) for name, tm in meta.topics.items()
                      if self.include_internal or not name.startswith("__")}
            listing = self._admin.list_consumer_groups(request_timeout=t).result(timeout=t)
            group_ids = sorted(g.group_id for g in listing.valid)
            groups: list[GroupSnapshot] = []
            if group_ids:
                described = self._admin.describe_consumer_groups(group_ids, request_timeout=t)
                offsets = self.committed(group_ids)
                for gid in group_ids:
                    try:
                        desc = described[gid].result(timeout=t)
                    except KafkaException as exc:
                        log.warning("group %s vanished or failed while polling: %s", gid, exc)
                        continue
                    if gid not in offsets:
                        continue   # logged by ``committed``
                    members = tuple(
                        (m.member_id, m.client_id,
                         tuple(sorted(f"{tp.topic}-{tp.partition}"
                                      for tp in (m.assignment.topic_partitions if m.assignment else []))))
                        for m in desc.members)
                    committed = offsets[gid]
                    state = getattr(desc.state, "name", str(desc.state))
                    groups.append(GroupSnapshot(gid, state, members, committed))
            wanted = {tp for g in groups for tp in g.committed if tp[0] in topics}
            ends: dict[tuple[str, int], int] = {}
            if wanted:
                futs = self._admin.list_offsets({TopicPartition(tp[0], tp[1]): OffsetSpec.latest()
                                                 for tp in wanted}, request_timeout=t)
                for tp, fut in futs.items():
                    try:
                        ends[(tp.topic, tp.partition)] = fut.result(timeout=t).offset
                    except KafkaException as exc:
                        log.warning("end offset of %s-%d unavailable: %s", tp.topic, tp.partition, exc)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is not None and hasattr(err, "retriable") and not err.retriable() and err.fatal():
                raise PermanentError(f"admin poll failed: {err}") from exc
            raise TemporaryError(f"admin poll failed: {exc}", delay=5.0) from exc
        return ClusterSnapshot(ts=self.clock(), groups=tuple(groups), end_offsets=ends, topics=topics,
                               topics_ts=listed)


def _committed(by_group: dict[str, Any]) -> dict[str, dict[tuple[str, int], int]]:
    """kafka-python's ``list_group_offsets`` result as group -> (topic, partition) -> committed offset
    (partitions without a committed offset, -1, left out)."""
    return {gid: {(tp.topic, tp.partition): int(om.offset) for tp, om in (parts or {}).items() if om.offset >= 0}
            for gid, parts in by_group.items()}
