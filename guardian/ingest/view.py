"""The shared cluster view in Redis: each worker publishes its part, the engine reads them all.

Why and what is in a part: ``guardian.policy.view``. Here is only the I/O, in the ledger's Redis
under ``settings.redis.prefix``:

* ``<prefix>view:worker:<worker>``: a worker's ``WorkerView`` (JSON), rewritten by its detector
  stage every ``interval_s`` of sample time and at once when an episode opens (so the loads of a
  new detection's principal are in Redis before the detection is), expiring after ``ttl_s``: a
  dead worker's view goes away by itself;
* ``<prefix>view:workers``: the workers that published (a sorted set scored by publication time),
  so the engine reads the views with one MGET instead of scanning the keyspace;
* ``<prefix>view:followed``: the client series the engine follows after a verified throttle
  (a hash: ``[principal, client_id, metric]`` -> when the engine last read it). Each worker
  follows those its partitions carry and publishes their points.

``ViewPublisher`` runs on the stream processor's thread; a Redis error is logged and publishing
pauses for ``retry_s`` (wall time), so an outage never stops ingestion. ``SharedClusterView`` is the
engine's ``cluster_pressure``, ``cluster_traffic`` and ``client_rates`` providers; it rereads the
views at most every ``cache_s`` and raises ``TemporaryError`` on a Redis error, which the engine
reads as unknown (the policy's ``on_unknown_pressure``/``on_unknown_traffic``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

import orjson

from guardian.errors import TemporaryError
from guardian.policy.effect import FollowedRates, RatePoint, merge_points
from guardian.policy.pressure import ClusterPressure, Pressure
from guardian.policy.view import WorkerView, merge_traffic, merge_views
from guardian.settings import GuardianSettings, redis_url_for

if TYPE_CHECKING:
    from guardian.ingest.stage import ClusterTraffic

log = logging.getLogger(__name__)

FollowKey = tuple[str, str, str]   # (principal, client_id, metric)


def view_client(url: str, timeout_s: float = 1.0) -> Any:
    """A Redis client for the view: short timeouts and no retries (redis-py retries a failed command
    10 times with backoff by default, seconds on the stream processor's thread for every attempt)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 0))


class _Keys:
    def __init__(self, prefix: str) -> None:
        self.workers = f"{prefix}view:workers"
        self.followed = f"{prefix}view:followed"
        self._worker = f"{prefix}view:worker:"

    def worker(self, name: str) -> str:
        return self._worker + name


class ViewPublisher:
    """A worker's side: builds its ``WorkerView`` from the stage's providers and writes it.

    ``pressure``: ``ClusterPressure``; ``traffic``: ``ClusterTraffic``; ``rates``: ``FollowedRates``
    (each optional). The stage calls ``observed`` after every batch of records."""

    def __init__(self, client: Any, prefix: str, worker: str, *, pressure: Any | None = None,
                 traffic: Any | None = None, rates: Any | None = None, interval_s: float = 1.0,
                 ttl_s: float = 10.0, retry_s: float = 10.0, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client, self.worker = client, worker
        self.pressure, self.traffic, self.rates = pressure, traffic, rates
        self.interval_s, self.ttl_s, self.retry_s = interval_s, ttl_s, retry_s
        self.clock, self.monotonic = clock, monotonic
        self.keys = _Keys(prefix)
        self.published = 0
        self._last: float | None = None          # sample time of the last publication
        self._paused_until = float("-inf")       # monotonic: no attempt before, after a Redis error

    def observed(self, sample_ts: float, principals: Callable[[], Iterable[str]], force: bool = False) -> bool:
        """Publish when ``interval_s`` of sample time passed since the last time (or ``force``); True if
        it did. ``principals``: those with an open episode in the stage (their clients' loads go in)."""
        due = self._last is None or sample_ts - self._last >= self.interval_s or sample_ts < self._last
        if not (due or force) or self.monotonic() < self._paused_until:
            return False
        self._last = sample_ts
        return self.publish(principals())

    def view(self, principals: Iterable[str]) -> WorkerView:
        return WorkerView(self.worker, self.clock(),
                          pressure=self.pressure.part(principals) if self.pressure is not None else {},
                          traffic=self.traffic.part() if self.traffic is not None else {},
                          rates=self.rates.part() if self.rates is not None else {})

    def publish(self, principals: Iterable[str]) -> bool:
        """Follow what the engine follows, then write this worker's view; False (logged) on a Redis error."""
        import redis

        try:
            if self.rates is not None:
                self.rates.follow(self._followed())
            view = self.view(principals)
            ttl_ms = max(1, int(self.ttl_s * 1000))
            pipe = self.client.pipeline(transaction=False)
            pipe.set(self.keys.worker(self.worker), orjson.dumps(view.to_dict()), px=ttl_ms)
            pipe.zadd(self.keys.workers, {self.worker: view.ts})
            pipe.execute()
        except redis.RedisError as exc:
            self._paused_until = self.monotonic() + self.retry_s
            log.warning("shared cluster view not published (retrying in %.0f s; the engine reads this "
                        "worker's part as unknown meanwhile): %s", self.retry_s, exc)
            return False
        self.published += 1
        return True

    def _followed(self) -> list[FollowKey]:
        now, follow_s = self.clock(), getattr(self.rates, "follow_s", 60.0)
        out = []
        for field, read_at in self.client.hgetall(self.keys.followed).items():
            try:
                principal, client_id, metric = orjson.loads(field)
                if now - float(read_at) <= follow_s:
                    out.append((str(principal), str(client_id), str(metric)))
            except (ValueError, TypeError):
                continue   # not ours to judge; the engine prunes the hash
        return out

    def close(self) -> None:
        """Take this worker's view out at shutdown (its partitions move to others)."""
        import redis

        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self.keys.worker(self.worker))
            pipe.zrem(self.keys.workers, self.worker)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("shared cluster view of %s not removed (it expires by itself): %s", self.worker, exc)


class SharedClusterView:
    """The engine's side: every live worker's view, merged, behind the engine's provider interfaces.

    ``pressure_stale_after_s`` and ``traffic_stale_after_s`` are those of ``ClusterPressure`` and
    ``ClusterTraffic``; ``follow_s`` that of ``FollowedRates`` (a series not read for that long is
    followed no more)."""

    def __init__(self, client: Any, prefix: str, *, pressure_stale_after_s: float = 30.0,
                 traffic_stale_after_s: float = 60.0, ttl_s: float = 10.0, cache_s: float = 0.5,
                 follow_s: float = 60.0, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client, self.keys = client, _Keys(prefix)
        self.pressure_stale_after_s, self.traffic_stale_after_s = pressure_stale_after_s, traffic_stale_after_s
        self.ttl_s, self.cache_s, self.follow_s = ttl_s, cache_s, follow_s
        self.clock, self.monotonic = clock, monotonic
        self._lock = threading.Lock()
        self._cached: tuple[float, list[WorkerView]] | None = None
        self._told: dict[FollowKey, float] = {}   # series -> when the engine last wrote that it follows it

    def views(self) -> list[WorkerView]:
        """Every live worker's view (cached ``cache_s``); ``TemporaryError`` when Redis fails."""
        with self._lock:
            if self._cached is not None and self.monotonic() - self._cached[0] < self.cache_s:
                return self._cached[1]
            views = self._read()
            self._cached = (self.monotonic(), views)
            return views

    def _read(self) -> list[WorkerView]:
        import redis

        try:
            # a member far older than the TTL is a worker gone for good (its key expired long ago);
            # pruned and listed in one round trip
            pipe = self.client.pipeline(transaction=False)
            pipe.zremrangebyscore(self.keys.workers, "-inf", self.clock() - 10 * self.ttl_s)
            pipe.zrange(self.keys.workers, 0, -1)
            _, members = pipe.execute()
            workers = [w.decode() if isinstance(w, bytes) else str(w) for w in members]
            blobs = self.client.mget([self.keys.worker(w) for w in workers]) if workers else []
        except redis.RedisError as exc:
            raise TemporaryError(f"reading the shared cluster view from Redis: {exc}") from exc
        views = []
        for worker, blob in zip(workers, blobs):
            if blob is None:
                continue   # expired: that worker is dead or cut off, its part unknown
            try:
                views.append(WorkerView.from_dict(orjson.loads(blob)))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("shared cluster view of worker %s unreadable, skipped: %s", worker, exc)
        return views

    def cluster_pressure(self) -> Pressure:
        return merge_views(self.views(), self.clock(), self.pressure_stale_after_s)

    def cluster_traffic(self) -> float | None:
        return merge_traffic((v.traffic for v in self.views()), self.clock(), self.traffic_stale_after_s)

    def client_rates(self, principal: str, client_id: str, metric: str) -> list[RatePoint]:
        """The client's cluster-wide points every worker kept since it was first read (the engine's
        ``client_rates``); reading it asks the workers to follow it. Empty when Redis fails."""
        import redis

        key = (principal, client_id, metric)
        try:
            self._tell(key)
            views = self.views()
        except (redis.RedisError, TemporaryError) as exc:
            log.warning("followed rates of %s unknown: %s", key, exc)
            return []
        return merge_points(v.rates.get(key, []) for v in views)

    def _tell(self, key: FollowKey) -> None:
        """Write that the engine follows ``key`` (at most every few seconds a series), and forget the
        series it no longer reads."""
        now = self.clock()
        if now - self._told.get(key, float("-inf")) < min(5.0, self.follow_s / 4):
            return
        self._told[key] = now
        gone = [k for k, t in self._told.items() if now - t > self.follow_s]
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.keys.followed, orjson.dumps(list(key)), repr(now))
        if gone:
            pipe.hdel(self.keys.followed, *[orjson.dumps(list(k)) for k in gone])
        pipe.expire(self.keys.followed, max(1, int(2 * self.follow_s)))
        pipe.execute()
        for k in gone:
            del self._told[k]


def build_shared_view(settings: GuardianSettings, worker_id: str, traffic: ClusterTraffic,
                      pressure: ClusterPressure, rates: FollowedRates) -> tuple[Any, Any, Callable[[], None]]:
    """(publisher for this worker's stage, the engine's reader, close) of the shared cluster view in
    the ledger's Redis (see the module docstring)."""
    v = settings.view
    # its own client: the publisher runs on the stream processor's thread, which must not stall on Redis
    client = view_client(redis_url_for(settings))
    publisher = ViewPublisher(client, settings.redis.prefix, worker_id, pressure=pressure, traffic=traffic,
                              rates=rates, interval_s=v.interval_s, ttl_s=v.ttl_s, retry_s=v.retry_s)
    reader = SharedClusterView(client, settings.redis.prefix, pressure_stale_after_s=pressure.stale_after_s,
                               traffic_stale_after_s=traffic.stale_after_s, ttl_s=v.ttl_s, cache_s=v.cache_s,
                               follow_s=rates.follow_s)

    def close() -> None:
        publisher.close()
        client.close()

    return publisher, reader, close
