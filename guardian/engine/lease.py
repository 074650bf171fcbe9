"""The action lease: only one engine acts at a time.

``SET key "<token>:<owner>" NX PX ttl`` takes the lease; ``token`` comes from
``INCR <key>:fence`` so every new holder has a larger fencing token. The
holder renews (compare-and-``PEXPIRE``) well inside ``ttl``; a holder that
dies stops renewing and another takes over once the key expires, i.e. within
``ttl`` of the last renewal. Ledger writes carry the ``Fence`` and fail once
the lease is someone else's.

The engine's loop renews through ``ensure`` on every turn, but one turn can
outlast the TTL (a quota waiting 10 s to become visible on a busy broker, then
its retry), and the lease ran out in the middle of an action. ``keep_alive``
renews it from its own thread while the loop still turns: it renews only a
lease this holder has, and only while ``ensure`` was called within
``max_stall_s``, so a loop that hangs loses the lease as a dead holder does.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from guardian.errors import TemporaryError
from guardian.store.ledger import Fence

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLease:
    def __init__(self, client: Any, key: str, owner: str, ttl_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_ensure: Callable[[bool], None] | None = None) -> None:
        self._r = client
        self._on_ensure = on_ensure   # told whether we hold it after every ``ensure`` (the lease gauge)
        self.key = key
        self.owner = owner
        self.ttl_s = ttl_s
        self._clock = clock
        self._value: str | None = None
        self._valid_until = 0.0
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._lock = threading.Lock()     # ensure (the engine's thread) and keep_alive (its own)
        self._last_ensure = float("-inf")

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / 3.0

    @property
    def token(self) -> int | None:
        return int(self._value.split(":", 1)[0]) if self._value else None

    def fence(self) -> Fence | None:
        return Fence(self.key, self._value) if self._value else None

    def held(self) -> bool:
        """Our local view: we hold it and our last renewal has not run out."""
        return self._value is not None and self._clock() < self._valid_until

    def ensure(self) -> bool:
        """Renew if ours (when a third of the TTL has passed), else try to take it. True = we act."""
        with self._lock:
            self._last_ensure = self._clock()
            held = self._ensure()
        if self._on_ensure is not None:
            self._on_ensure(held)
        return held

    def _ensure(self) -> bool:
        import redis

        try:
            now = self._clock()
            if self._value is not None:
                if now < self._valid_until - 2 * self.renew_every_s:
                    return True
                if self._extend(now):
                    return True
                log.warning("lease %s lost (was token %s)", self.key, self.token)
                self._value = None
            if self._r.exists(self.key):
                return False
            token = int(self._r.incr(self.key + ":fence"))
            value = f"{token}:{self.owner}"
            if self._r.set(self.key, value, nx=True, px=int(self.ttl_s * 1000)):
                self._value, self._valid_until = value, now + self.ttl_s
                log.info("lease %s taken by %s with fencing token %d", self.key, self.owner, token)
                return True
            return False
        except redis.RedisError as exc:
            self._value = None
            raise TemporaryError(f"lease {self.key}: {exc}") from exc

    def renew_if_alive(self, max_stall_s: float) -> bool:
        """Renew a lease we hold while ``ensure`` was called within ``max_stall_s``; never takes one.
        True when renewed."""
        import redis

        with self._lock:
            now = self._clock()
            if self._value is None or now - self._last_ensure > max_stall_s or now >= self._valid_until:
                return False
            try:
                return self._extend(now)
            except redis.RedisError as exc:
                log.warning("lease %s not renewed: %s", self.key, exc)
                return False

    def _extend(self, now: float) -> bool:
        """Compare-and-PEXPIRE the lease we hold; True (and valid for another TTL) when it is still ours."""
        if self._renew(keys=[self.key], args=[self._value, int(self.ttl_s * 1000)]):
            self._valid_until = now + self.ttl_s
            return True
        return False

    def keep_alive(self, stop: threading.Event, max_stall_s: float | None = None) -> None:
        """Renew every ``renew_every_s`` until ``stop`` (``renew_if_alive``; ``max_stall_s`` default 3 TTLs).
        Run it in its own thread beside the loop that calls ``ensure``."""
        stall = 3 * self.ttl_s if max_stall_s is None else max_stall_s
        while not stop.wait(self.renew_every_s):
            self.renew_if_alive(stall)

    def release(self) -> None:
        with self._lock:
            if self._value is not None:
                try:
                    self._release(keys=[self.key], args=[self._value])
                finally:
                    self._value = None

    def holder(self) -> str | None:
        raw = self._r.get(self.key)
        return raw.decode() if raw else None
