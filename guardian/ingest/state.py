"""Detector state that moves with its stream partition: saved to Redis, restored on assignment.

Records on ``guardian.metrics`` are keyed by tenant (``Workload.partition_key``), so each
partition owns whole tenants, and the detector stage's state of a partition (its workloads'
series, open cluster-wide rounds and episodes) can be saved and restored on its own. Without
this a restarted worker, or one given a partition in a rebalance, starts those workloads cold:
blind to a runaway during warm-up.

``PartitionStateKeeper`` does it for one worker:

* **restore** on assignment, before the first record of the partition is scored (faust's
  ``on_partitions_assigned``, and again lazily on a partition's first record in case faust
  resumed the stream before the signal ran);
* **save** every ``interval_s`` of *sample* time per partition (the samples' clock, not the
  wall clock, so a replay behaves as the live run did), on revocation (faust has drained the
  agents by then) and at shutdown;
* **drop** the state of partitions that went to another worker.

A snapshot is ``guardian-detector-state/<version>\\n`` followed by zlib-compressed JSON
(``SNAPSHOT_VERSION``; stdlib ``json`` so NaN and every float round-trip exactly). A corrupt,
foreign or newer snapshot, or one that does not fit the detector configuration, is logged with
the reason and the partition starts cold; nothing here ever stops the worker. Only tracked
series are saved (idle ones are evicted by the stage first), and a snapshot above ``max_bytes``
is not written.

The store is the ledger's Redis, one key per partition (``RedisSnapshotStore``), not a
compacted changelog topic: a restore is one GET during the rebalance instead of reading a
changelog to its end, a partition's snapshot is one value (so compaction buys nothing over
SET), and no record-size limit forces chunking. The price: a snapshot is not in the Kafka
transaction of the offsets, so after a crash up to ``interval_s`` of samples are learned twice
or not at all, immaterial next to baselines learned over an hour.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence, runtime_checkable

from guardian.errors import GuardianError, SnapshotError, TemporaryError
from guardian.model.samples import Workload
from guardian.settings import GuardianSettings, redis_url_for

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = "guardian-detector-state"
SNAPSHOT_VERSION = 1


@runtime_checkable
class StatefulStage(Protocol):
    """A detector stage whose state can move (``guardian.app.run.DetectorStage``)."""

    def snapshot(self, select: Callable[[Workload], bool]) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...

    def forget(self, select: Callable[[Workload], bool]) -> int: ...


class SnapshotStore(Protocol):
    """Where snapshots live, one per partition of the metrics topic."""

    def load(self, partitions: Sequence[int]) -> dict[int, bytes]:
        """The saved snapshot of each partition that has one."""

    def save(self, partition: int, blob: bytes) -> None: ...


# ------------------------------------------------------------------------------- the format

@dataclass(frozen=True)
class Snapshot:
    topic: str
    partition: int
    sample_ts: float          # newest sample time the state has seen
    keys: frozenset[str]      # record keys of the partition the state belongs to
    state: dict[str, Any]


def encode_snapshot(snap: Snapshot) -> bytes:
    doc = {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "topic": snap.topic,
           "partition": snap.partition, "sample_ts": snap.sample_ts, "keys": sorted(snap.keys),
           "state": snap.state}
    body = json.dumps(doc, separators=(",", ":"), default=_plain).encode()
    return f"{SNAPSHOT_FORMAT}/{SNAPSHOT_VERSION}\n".encode() + zlib.compress(body, 1)


def decode_snapshot(blob: bytes, topic: str, partition: int) -> Snapshot:
    """The snapshot in ``blob``; ``SnapshotError`` saying what is wrong with it otherwise."""
    header, sep, body = blob.partition(b"\n")
    name, _, version = header.decode("ascii", "replace").partition("/")
    if not sep or name != SNAPSHOT_FORMAT or not version.isdigit():
        raise SnapshotError(f"not a {SNAPSHOT_FORMAT} snapshot (starts {blob[:32]!r})")
    if int(version) != SNAPSHOT_VERSION:
        raise SnapshotError(f"format version {version}, this guardian reads version {SNAPSHOT_VERSION}")
    try:
        doc = json.loads(zlib.decompress(body))
        snap = Snapshot(topic=str(doc["topic"]), partition=int(doc["partition"]), sample_ts=float(doc["sample_ts"]),
                        keys=frozenset(str(k) for k in doc["keys"]), state=dict(doc["state"]))
    except (zlib.error, ValueError, TypeError, KeyError) as exc:
        raise SnapshotError(f"corrupt snapshot: {type(exc).__name__}: {exc}") from exc
    if (snap.topic, snap.partition) != (topic, partition):
        raise SnapshotError(f"the snapshot is of {snap.topic}[{snap.partition}], not {topic}[{partition}]")
    return snap


def _plain(value: Any) -> Any:
    """numpy scalars (``np.float64``, ``np.bool_``) as Python values for JSON."""
    item = getattr(value, "item", None)
    if item is not None:
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ------------------------------------------------------------------------------- the stores

class RedisSnapshotStore:
    """``<prefix>detector-state:<consumer group>:<topic>:<partition>``, expiring after ``ttl_s``."""

    def __init__(self, client: Any, prefix: str, group: str, topic: str, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._base = f"{prefix}detector-state:{group}:{topic}:"

    def key(self, partition: int) -> str:
        return f"{self._base}{partition}"

    def load(self, partitions: Sequence[int]) -> dict[int, bytes]:
        import redis

        if not partitions:
            return {}
        try:
            blobs = self.client.mget([self.key(p) for p in partitions])
        except redis.RedisError as exc:
            raise TemporaryError(f"reading detector state from Redis: {exc}") from exc
        return {p: b for p, b in zip(partitions, blobs) if b is not None}

    def save(self, partition: int, blob: bytes) -> None:
        import redis

        try:
            self.client.set(self.key(partition), blob, ex=self.ttl_s)
        except redis.RedisError as exc:
            raise TemporaryError(f"writing detector state to Redis: {exc}") from exc


class MemorySnapshotStore:
    """A ``SnapshotStore`` in a dict, for tests and for a worker without Redis."""

    def __init__(self) -> None:
        self.blobs: dict[int, bytes] = {}

    def load(self, partitions: Sequence[int]) -> dict[int, bytes]:
        return {p: self.blobs[p] for p in partitions if p in self.blobs}

    def save(self, partition: int, blob: bytes) -> None:
        self.blobs[partition] = blob


# ------------------------------------------------------------------------------- the keeper

@dataclass
class _Partition:
    keys: set[str] = field(default_factory=set)   # record keys seen on it (tenants, or workloads of old producers)
    newest: float | None = None                   # newest sample time
    saved_at: float | None = None                 # sample time of the last save (or restore)
    dirty: bool = False                           # changed since the last save


class PartitionStateKeeper:
    """Saves, restores and drops a stage's state per partition of ``topic``. See the module docstring.

    Called from the worker's event loop only (the agent and faust's rebalance signals)."""

    def __init__(self, stage: StatefulStage, store: SnapshotStore, topic: str, interval_s: float = 30.0,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self.stage = stage
        self.store = store
        self.topic = topic
        self.interval_s = interval_s
        self.max_bytes = max_bytes
        self._held: dict[int, _Partition] = {}
        self.counts: dict[str, int] = {}   # outcome -> how many (restored, cold, unreadable, saved, too_big, ...)

    @property
    def partitions(self) -> set[int]:
        return set(self._held)

    # -- rebalance ----------------------------------------------------------------------
    def assign(self, partitions: Iterable[int]) -> None:
        """The worker's assignment is now ``partitions``: drop the others, restore the new ones."""
        now = set(partitions)
        for p in sorted(set(self._held) - now):
            self.drop(p)
        self.restore(sorted(now - set(self._held)))

    def revoke(self, partitions: Iterable[int]) -> None:
        """About to lose ``partitions`` (maybe to get some back): save what changed. The state stays
        until ``assign`` says which partitions went elsewhere."""
        for p in sorted(set(partitions) & set(self._held)):
            if self._held[p].dirty:
                self.save(p)

    def save_all(self) -> None:
        """At shutdown: save every partition that changed."""
        self.revoke(list(self._held))

    # -- per record ---------------------------------------------------------------------
    def before(self, partition: int) -> None:
        """Before a record of ``partition`` is scored: its state is restored if it was not yet."""
        if partition not in self._held:
            self.restore([partition])

    def after(self, partition: int, key: bytes | None, workload: Workload, newest_ts: float) -> None:
        """After a record's batch was scored: remember the partition owns it; save when due."""
        part = self._held.get(partition)
        if part is None:
            self.before(partition)
            part = self._held[partition]
        part.keys.add(key.decode("utf-8", "replace") if key else workload.partition_key)
        part.dirty = True
        if part.newest is None or newest_ts > part.newest:
            part.newest = newest_ts
        if part.saved_at is None:
            part.saved_at = part.newest
        elif part.newest - part.saved_at >= self.interval_s:
            self.save(partition)

    # -- the three operations -----------------------------------------------------------
    def save(self, partition: int) -> bool:
        part = self._held[partition]
        select, matched = _selector(part.keys)
        state = self.stage.snapshot(select)
        part.keys = matched               # keys whose workloads were all evicted are not carried on
        part.saved_at = part.newest
        part.dirty = False
        blob = encode_snapshot(Snapshot(self.topic, partition, part.newest or 0.0, frozenset(part.keys), state))
        if len(blob) > self.max_bytes:
            self._count("too_big")
            log.warning("detector state of %s[%d] is %d bytes, above GUARDIAN_STATE__MAX_BYTES=%d: not saved "
                        "(the last saved snapshot, if any, stays)", self.topic, partition, len(blob), self.max_bytes)
            return False
        try:
            self.store.save(partition, blob)
        except GuardianError as exc:
            self._count("save_failed")
            part.dirty = True             # try again at the next interval
            log.warning("could not save detector state of %s[%d]: %s", self.topic, partition, exc)
            return False
        self._count("saved")
        return True

    def restore(self, partitions: Sequence[int]) -> None:
        if not partitions:
            return
        try:
            blobs = self.store.load(partitions)
        except GuardianError as exc:
            blobs = {}
            self._count("load_failed", len(partitions))
            log.warning("could not read detector state of %s%s: %s; they start cold", self.topic,
                        list(partitions), exc)
        for p in partitions:
            part = self._held[p] = _Partition()
            blob = blobs.get(p)
            if blob is None:
                self._count("cold")
                log.info("no saved detector state for %s[%d]: it starts cold", self.topic, p)
                continue
            try:
                snap = decode_snapshot(blob, self.topic, p)
                self.stage.restore(snap.state)
            except Exception as exc:  # noqa: BLE001 - a bad snapshot must never stop the worker
                self._count("unreadable")
                self.stage.forget(_selector(_keys_in(blob))[0])   # nothing half-restored stays
                reason = str(exc) if isinstance(exc, SnapshotError) else f"{type(exc).__name__}: {exc}"
                log.warning("saved detector state of %s[%d] (%d bytes) cannot be restored: %s; "
                            "the partition starts cold", self.topic, p, len(blob), reason)
                continue
            part.keys = set(snap.keys)
            part.newest = part.saved_at = snap.sample_ts
            self._count("restored")
            log.warning("restored detector state of %s[%d] (%d bytes, samples up to %.0f)", self.topic, p,
                     len(blob), snap.sample_ts)

    def drop(self, partition: int) -> int:
        part = self._held.pop(partition)
        return self.stage.forget(_selector(part.keys)[0])

    def _count(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + n


def _selector(keys: Iterable[str]) -> tuple[Callable[[Workload], bool], set[str]]:
    """``select(workload)``: is it one of a partition's (by its record key: the tenant, or the
    workload itself for producers that keyed by workload)? The keys it matched fill the set."""
    wanted = set(keys)
    matched: set[str] = set()

    def select(w: Workload) -> bool:
        for k in (w.partition_key, w.key):
            if k in wanted:
                matched.add(k)
                return True
        return False

    return select, matched


def _keys_in(blob: bytes) -> set[str]:
    """The keys a snapshot names, if they can be read at all (to clear a half-done restore)."""
    try:
        _, _, body = blob.partition(b"\n")
        return {str(k) for k in json.loads(zlib.decompress(body)).get("keys", [])}
    except Exception:  # noqa: BLE001 - unreadable: nothing of it was restored either
        return set()


def build_state_keeper(settings: GuardianSettings, stage: Any) -> tuple[Any, Callable[[], None]]:
    """(keeper, close) saving ``stage``'s detector state per metrics partition in the ledger's Redis;
    (None, no-op) when ``GUARDIAN_STATE__ENABLED`` is false or the stage keeps no state."""
    if not settings.state.enabled or not isinstance(stage, StatefulStage):
        return None, lambda: None
    import redis

    client = redis.Redis.from_url(redis_url_for(settings), socket_timeout=5, socket_connect_timeout=5)
    st = settings.state
    store = RedisSnapshotStore(client, settings.redis.prefix, settings.ingest.app_id, settings.topics.metrics,
                               ttl_s=st.ttl_s)
    keeper = PartitionStateKeeper(stage, store, settings.topics.metrics, interval_s=st.interval_s,
                                  max_bytes=st.max_bytes)
    return keeper, client.close
