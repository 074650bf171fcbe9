"""Per-token rate limits (a token bucket in Redis) and Idempotency-Key replay.

Both live in Redis so that every API replica shares them.

The bucket is one Lua script, so check-and-take is atomic across replicas: a
bucket holds up to ``burst`` requests and refills at ``rate`` per second; a
request that finds it empty is refused with the seconds until one token is
back (the ``Retry-After`` of the 429). Time comes from the caller (the app's
injected clock), not from Redis.

Idempotency: the first request with a key reserves it (``SET NX``) with a
fingerprint of method, path and body; when it finishes, its status and body
are stored for ``ttl_s``. A repeat with the same fingerprint gets the stored
response back; a repeat while the first is still running, or with a
different body, is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from guardian.errors import ConflictError, PermanentError, TemporaryError

_BUCKET = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: float

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


class RateLimiter:
    def __init__(self, client: Any, prefix: str = "guardian:") -> None:
        self._r = client
        self.prefix = prefix
        self._script = client.register_script(_BUCKET)

    def hit(self, subject: str, rate: float, burst: int, now: float) -> Verdict:
        import redis

        try:
            allowed, wait = self._script(keys=[f"{self.prefix}rl:{subject}"], args=[rate, burst, repr(now)])
        except redis.RedisError as exc:
            raise TemporaryError(f"redis: {exc}") from exc
        return Verdict(bool(int(allowed)), float(wait))


class IdempotencyMismatchError(PermanentError):
    """An Idempotency-Key reused for a different request (the API answers 422)."""


def fingerprint(method: str, path: str, body: Any) -> str:
    canon = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()


@dataclass(frozen=True)
class Stored:
    status: int
    body: Any


class IdempotencyStore:
    """Idempotency keys are per token: two callers may use the same key without colliding."""

    PENDING_TTL_S = 120

    def __init__(self, client: Any, prefix: str = "guardian:", ttl_s: int = 24 * 3600) -> None:
        self._r = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def _key(self, owner: str, key: str) -> str:
        return f"{self.prefix}idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"

    def begin(self, owner: str, key: str, fp: str) -> Stored | None:
        """Reserve ``key``; return the stored response if it already completed with this fingerprint."""
        import redis

        rkey = self._key(owner, key)
        try:
            if self._r.set(rkey, json.dumps({"state": "pending", "fp": fp}), nx=True, ex=self.PENDING_TTL_S):
                return None
            raw = self._r.get(rkey)
        except redis.RedisError as exc:
            raise TemporaryError(f"redis: {exc}") from exc
        if raw is None:  # expired between the two calls: treat as new
            return self.begin(owner, key, fp)
        rec = json.loads(raw)
        if rec["fp"] != fp:
            raise IdempotencyMismatchError("this Idempotency-Key was used for a different request")
        if rec["state"] == "pending":
            raise ConflictError("a request with this Idempotency-Key is still being processed")
        return Stored(int(rec["status"]), rec["body"])

    def finish(self, owner: str, key: str, fp: str, status: int, body: Any) -> None:
        self._r.set(self._key(owner, key), json.dumps({"state": "done", "fp": fp, "status": status, "body": body}),
                    ex=self.ttl_s)

    def abandon(self, owner: str, key: str) -> None:
        """The request failed: free the key so the caller may retry with it."""
        self._r.delete(self._key(owner, key))
