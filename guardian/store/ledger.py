"""The ledger in Redis: quarantines, action records, pause switch, probation and the audit outbox.

Every write is one optimistic transaction (WATCH, check, MULTI/EXEC):

* records carry a ``version``; a writer holding an old version gets a
  ``ConflictError`` (two deciders on one quarantine: one wins);
* a writer that passes a ``Fence`` (the action lease) also fails with
  ``NotLeaderError`` unless it still holds the lease, so a deposed engine
  cannot write a decision after another took over;
* the audit records of a change go into the outbox list in the same
  transaction, so the ledger and the audit trail cannot disagree; the audit
  publisher (``guardian.store.audit``) drains the outbox to ``guardian.decisions``.

Keys, under ``prefix`` (default ``guardian:``)::

    q:<id>              JSON quarantine            q:all        zset id -> created_at
    q:by-principal:<p>  zset id -> created_at of the quarantines of principal <p> (a tenant's list)
    q:by-principal      the newest created_at those zsets were last brought up to date with
    q:open              set of ids counting for caps (not dry-run, not terminal)
    q:live              set of ids not in a terminal state (what the engine expires and re-verifies)
    q:wl:<workload key> id of the workload's open quarantine (dry-run included)
    q:dirty             zset id -> version the reconciler has yet to converge
    a:<idempotency key> JSON action record
    pause               JSON {by, reason, ts} while paused
    probation:<wl key>  JSON {until, rung, policy}, expires by itself
    outbox              list of JSON audit records
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
import heapq
from typing import Any, Callable, Iterable, Iterator, Sequence

import orjson

from guardian.model.quarantine import ActionRecord, QState, Quarantine
from guardian.errors import ConflictError, NotLeaderError, TemporaryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fence:
    """A lease key and the value this holder wrote there (``<token>:<owner>``)."""

    key: str
    value: str

    @property
    def token(self) -> int:
        return int(self.value.split(":", 1)[0])


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class Ledger:
    """Redis-backed ledger. ``client`` is a ``redis.Redis``; nothing connects until first use."""

    def __init__(self, client: Any, prefix: str = "guardian:") -> None:
        self._r = client
        self.prefix = prefix
        self._live_indexed = False   # unfinished(): indexes a ledger written before the live set once
        self._principals_indexed = False   # newest(principals=...): the same for the per-principal zsets

    @classmethod
    def from_url(cls, url: str, prefix: str = "guardian:") -> "Ledger":
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5), prefix)

    @property
    def client(self) -> Any:
        return self._r

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # ---------------------------------------------------------------- transactions
    def _txn(self, watch: list[str], body: Callable[[Any], None], fence: Fence | None) -> None:
        """Run ``body(pipe)`` in an optimistic transaction. ``body`` reads first, then calls
        ``pipe.multi()`` and queues writes. A concurrent change of a watched key = conflict."""
        import redis

        keys = list(watch) + ([fence.key] if fence else [])
        try:
            with self._r.pipeline() as pipe:
                pipe.watch(*keys)
                if fence is not None:
                    held = pipe.get(fence.key)
                    if held is None or held.decode() != fence.value:
                        raise NotLeaderError(f"the action lease is no longer ours (fencing token {fence.token})")
                body(pipe)
                pipe.execute()
        except redis.WatchError as exc:
            raise ConflictError(f"concurrent change of {', '.join(watch)}; re-read and retry") from exc
        except redis.RedisError as exc:
            raise TemporaryError(f"redis: {exc}") from exc

    def _outbox(self, pipe: Any, audit: Iterable[dict[str, Any]]) -> None:
        for rec in audit:
            pipe.rpush(self.k("outbox"), _dumps(rec))

    def _read(self, fn: Callable[[], Any]) -> Any:
        import redis

        try:
            return fn()
        except redis.RedisError as exc:
            raise TemporaryError(f"redis: {exc}") from exc

    # ---------------------------------------------------------------- quarantines
    def create_quarantine(self, q: Quarantine, max_open: int | None = None, fence: Fence | None = None,
                          audit: Iterable[dict[str, Any]] = ()) -> Quarantine:
        """Store a new quarantine. Conflict if it exists, if its workload already has an open
        one, or (for a quarantine that counts) if ``max_open`` are already open."""
        qkey, wkey, open_key = self.k("q", q.id), self.k("q", "wl", q.workload_key), self.k("q", "open")
        audit = list(audit)

        def body(pipe: Any) -> None:
            if pipe.exists(qkey):
                raise ConflictError(f"quarantine {q.id} exists")
            other = pipe.get(wkey)
            if other is not None:
                raise ConflictError(f"workload {q.workload_key} already has open quarantine {other.decode()}")
            if q.counts_for_caps and max_open is not None and pipe.scard(open_key) >= max_open:
                raise ConflictError(f"{max_open} quarantines are open; the cap holds")
            pipe.multi()
            q.version = 1
            self._put_q(pipe, q)
            self._outbox(pipe, audit)

        self._txn([qkey, wkey, open_key], body, fence)
        return q

    def save_quarantine(self, q: Quarantine, fence: Fence | None = None,
                        audit: Iterable[dict[str, Any]] = ()) -> Quarantine:
        """Write ``q`` if nobody changed it since it was read (same ``version``); bumps the version."""
        qkey = self.k("q", q.id)
        audit = list(audit)
        expected = q.version

        def body(pipe: Any) -> None:
            raw = pipe.get(qkey)
            if raw is None:
                raise ConflictError(f"quarantine {q.id} does not exist")
            current = json.loads(raw)["version"]
            if current != expected:
                raise ConflictError(f"quarantine {q.id} changed (version {current}, you have {expected})")
            pipe.multi()
            q.version = expected + 1
            self._put_q(pipe, q)
            self._outbox(pipe, audit)

        try:
            self._txn([qkey], body, fence)
        except BaseException:
            q.version = expected
            raise
        return q

    def _put_q(self, pipe: Any, q: Quarantine) -> None:
        pipe.set(self.k("q", q.id), _dumps(q.to_dict()))
        pipe.zadd(self.k("q", "all"), {q.id: q.created_at})
        if principal := q.workload.get("principal"):
            pipe.zadd(self.k("q", "by-principal", principal), {q.id: q.created_at})
        pipe.zadd(self.k("q", "dirty"), {q.id: q.version})
        wkey = self.k("q", "wl", q.workload_key)
        if q.state.terminal:
            pipe.srem(self.k("q", "open"), q.id)
            pipe.srem(self.k("q", "live"), q.id)
            # Only drop the index if it still points at us (it always does: one open per workload).
            pipe.delete(wkey)
        else:
            pipe.set(wkey, q.id)
            pipe.sadd(self.k("q", "live"), q.id)
            if q.counts_for_caps:
                pipe.sadd(self.k("q", "open"), q.id)

    def get(self, qid: str) -> Quarantine | None:
        raw = self._read(lambda: self._r.get(self.k("q", qid)))
        return Quarantine.from_dict(orjson.loads(raw)) if raw else None

    def open_for(self, workload_key: str) -> Quarantine | None:
        qid = self._read(lambda: self._r.get(self.k("q", "wl", workload_key)))
        return self.get(qid.decode()) if qid else None

    def list(self, states: Iterable[QState] | None = None, tenant: str | None = None,
             limit: int = 1000) -> list[Quarantine]:
        """Newest first."""
        ids = self._read(lambda: self._r.zrevrange(self.k("q", "all"), 0, limit - 1))
        wanted = set(states) if states is not None else None
        return [q for q in self._get_many(ids)
                if (wanted is None or q.state in wanted) and (tenant is None or q.tenant == tenant)]

    def newest(self, after: tuple[float, str] | None = None, batch: int = 200,
               principals: Sequence[str] | None = None) -> Iterator[Quarantine]:
        """Every quarantine newest first, by (``created_at``, id) descending, from just after ``after``
        (a page's last row); read ``batch`` at a time, so a caller that stops early reads only what it
        used, however long the history.

        With ``principals``, only the quarantines of those principals, read from their own index: a
        tenant's page costs what it returns, not the other tenants' history before it."""
        if principals is None:
            return self._walk(self.k("q", "all"), after, batch)
        self._index_principals()
        walks = [self._walk(self.k("q", "by-principal", p), after, batch) for p in dict.fromkeys(principals)]
        if len(walks) == 1:
            return walks[0]
        return heapq.merge(*walks, key=lambda q: (q.created_at, q.id), reverse=True)

    def _walk(self, key: str, after: tuple[float, str] | None, batch: int) -> Iterator[Quarantine]:
        top: float | str = "+inf" if after is None else after[0]
        offset = 0
        while True:
            # a sorted set orders equal scores by member, and in reverse here: (score, id) descending
            rows = self._read(lambda: self._r.zrevrangebyscore(key, top, "-inf", start=offset, num=batch,
                                                                  withscores=True))
            offset += len(rows)
            ids = [i for i, score in rows if after is None or (score, i.decode()) < after]
            if rows:
                # a quarantine created meanwhile shifts the offsets by one: what comes again is skipped
                after = (rows[-1][1], rows[-1][0].decode())
            yield from self._get_many(ids)
            if len(rows) < batch:
                return

    def _index_principals(self, batch: int = 500, skew_s: float = 300.0) -> None:
        """Index what the per-principal zsets may lack, once per process: the whole history the first
        time (a ledger written before they existed), later what was written since the last process did
        it (less ``skew_s`` for clocks), so quarantines an older guardian wrote during a rolling
        upgrade are indexed by the first new process to start after it. Idempotent, so processes
        doing it at once do no harm."""
        if self._principals_indexed:
            return
        marker = self.k("q", "by-principal")   # the newest created_at indexed so far

        def backfill() -> None:
            raw = self._r.get(marker)
            since: float | str = "-inf" if raw is None else float(raw) - skew_s
            rows = self._r.zrangebyscore(self.k("q", "all"), since, "+inf", withscores=True)
            for start in range(0, len(rows), batch):
                part = rows[start:start + batch]
                pipe = self._r.pipeline(transaction=False)
                for (qid, score), q in zip(part, self._r.mget([self.k("q", i.decode()) for i, _ in part])):
                    if q and (principal := orjson.loads(q)["workload"].get("principal")):
                        pipe.zadd(self.k("q", "by-principal", principal), {qid: score})
                pipe.execute()
            newest = max((score for _, score in rows), default=None)
            if newest is not None or raw is None:
                self._r.set(marker, repr(newest if newest is not None else 0.0))
            if rows and raw is None:
                log.info("indexed %d quarantines by principal (written before that index existed)", len(rows))

        self._read(backfill)
        self._principals_indexed = True

    def unfinished(self) -> list[Quarantine]:
        """Every quarantine not in a terminal state, however old: what the engine expires and re-verifies.

        ``list`` reads only the newest ``limit``; once the history holds more, an older open
        quarantine would never reach its TTL. A ledger written before this index existed is indexed
        once from its one-open-quarantine-per-workload keys."""
        live = self.k("q", "live")
        if not self._live_indexed:
            def backfill() -> None:
                ids = [self._r.get(key) for key in self._r.scan_iter(match=self.k("q", "wl", "*"), count=500)]
                if ids := [i for i in ids if i]:
                    self._r.sadd(live, *ids)
            self._read(backfill)
            self._live_indexed = True
        ids = self._read(lambda: self._r.smembers(live))
        return [q for q in self._get_many(sorted(ids)) if not q.state.terminal]

    def open_counting(self) -> list[Quarantine]:
        """The quarantines that count against the caps."""
        # one MGET, not one GET per quarantine: the engine reads this for every detection it decides
        return self._get_many(self._read(lambda: self._r.smembers(self.k("q", "open"))))

    def _get_many(self, ids: Iterable[bytes]) -> list[Quarantine]:
        """The quarantines with these ids, in their order, in one MGET (ids without a record are skipped)."""
        keys = [self.k("q", i.decode()) for i in ids]
        if not keys:
            return []
        raws = self._read(lambda: self._r.mget(keys))
        return [Quarantine.from_dict(orjson.loads(raw)) for raw in raws if raw]

    def dirty(self) -> list[tuple[str, int]]:
        """(id, version) of quarantines the reconciler has not yet converged at that version."""
        rows = self._read(lambda: self._r.zrange(self.k("q", "dirty"), 0, -1, withscores=True))
        return [(i.decode(), int(v)) for i, v in rows]

    def mark_converged(self, qid: str, version: int) -> None:
        """Drop ``qid`` from the dirty set unless it changed again since ``version``."""
        key = self.k("q", "dirty")

        def body(pipe: Any) -> None:
            score = pipe.zscore(key, qid)
            pipe.multi()
            if score is not None and int(score) == version:
                pipe.zrem(key, qid)

        try:
            self._txn([key], body, None)
        except ConflictError:
            pass  # changed meanwhile: it stays dirty and is converged again

    def mark_dirty(self, qid: str, version: int) -> None:
        self._read(lambda: self._r.zadd(self.k("q", "dirty"), {qid: version}))

    # ---------------------------------------------------------------- action records
    def get_action(self, key: str) -> ActionRecord | None:
        raw = self._read(lambda: self._r.get(self.k("a", key)))
        return ActionRecord.from_dict(json.loads(raw)) if raw else None

    def put_action(self, rec: ActionRecord, fence: Fence | None = None,
                   audit: Iterable[dict[str, Any]] = ()) -> ActionRecord:
        """Create (version 0) or update (same version as stored) an action record."""
        akey = self.k("a", rec.key)
        audit = list(audit)
        expected = rec.version

        def body(pipe: Any) -> None:
            raw = pipe.get(akey)
            current = json.loads(raw)["version"] if raw else 0
            if current != expected:
                raise ConflictError(f"action {rec.key} changed (version {current}, you have {expected})")
            pipe.multi()
            rec.version = expected + 1
            pipe.set(akey, _dumps(rec.to_dict()))
            self._outbox(pipe, audit)

        try:
            self._txn([akey], body, fence)
        except BaseException:
            rec.version = expected
            raise
        return rec

    def actions(self, q: Quarantine) -> list[ActionRecord]:
        return [r for p in q.desired if (r := self.get_action(p["idempotency_key"])) is not None]

    # ---------------------------------------------------------------- pause, probation
    def set_pause(self, by: str, reason: str, ts: float, audit: Iterable[dict[str, Any]] = ()) -> None:
        audit = list(audit)

        def body(pipe: Any) -> None:
            pipe.multi()
            pipe.set(self.k("pause"), _dumps({"by": by, "reason": reason, "ts": ts}))
            self._outbox(pipe, audit)

        self._txn([self.k("pause")], body, None)

    def clear_pause(self, audit: Iterable[dict[str, Any]] = ()) -> None:
        audit = list(audit)

        def body(pipe: Any) -> None:
            pipe.multi()
            pipe.delete(self.k("pause"))
            self._outbox(pipe, audit)

        self._txn([self.k("pause")], body, None)

    def pause_state(self) -> dict[str, Any] | None:
        raw = self._read(lambda: self._r.get(self.k("pause")))
        return json.loads(raw) if raw else None

    def set_probation(self, workload_key: str, until: float, rung: int, policy: str, now: float) -> None:
        ttl_ms = int(max(1.0, until - now) * 1000)
        self._read(lambda: self._r.set(self.k("probation", workload_key),
                                       _dumps({"until": until, "rung": rung, "policy": policy}), px=ttl_ms))

    def probation(self, workload_key: str) -> dict[str, Any] | None:
        raw = self._read(lambda: self._r.get(self.k("probation", workload_key)))
        return json.loads(raw) if raw else None

    # ---------------------------------------------------------------- audit outbox
    def append_audit(self, audit: Iterable[dict[str, Any]]) -> None:
        recs = [_dumps(r) for r in audit]
        if recs:
            self._read(lambda: self._r.rpush(self.k("outbox"), *recs))

    def outbox_peek(self, n: int = 500) -> list[dict[str, Any]]:
        raws = self._read(lambda: self._r.lrange(self.k("outbox"), 0, n - 1))
        return [json.loads(r) for r in raws]

    def outbox_ack(self, n: int) -> None:
        """Drop the first ``n`` records (after they reached Kafka). One drainer only: the lease holder."""
        if n > 0:
            self._read(lambda: self._r.ltrim(self.k("outbox"), n, -1))

    def outbox_len(self) -> int:
        return int(self._read(lambda: self._r.llen(self.k("outbox"))))
