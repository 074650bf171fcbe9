"""Cumulative counters into per-second rates, across scrapes, restarts and resets.

A counter series is identified by any hashable key. The first observation of
a series only sets its baseline (a rate needs two points). A later
observation gives ``(value - previous) / (ts - previous_ts)``. A counter that
went down was reset (the process restarted or the counter was recreated):
as Prometheus' ``rate()`` does, the whole new value counts as the increase
since the reset. A known restart (``restarted=True``, e.g. the exporter's
``process_start_time_seconds`` moved) also counts from zero. Series not seen
for ``stale_after_s`` are forgotten so state stays bounded.

Pure code: time comes in as an argument.
"""

from __future__ import annotations

from typing import Hashable


class CounterRates:
    """Turns successive ``(key, ts, cumulative value)`` observations into rates."""

    def __init__(self, stale_after_s: float = 600.0, min_interval_s: float = 1e-3) -> None:
        self.stale_after_s = stale_after_s
        self.min_interval_s = min_interval_s
        self._last: dict[Hashable, tuple[float, float]] = {}
        self.resets = 0

    def __len__(self) -> int:
        return len(self._last)

    def observe(self, key: Hashable, ts: float, value: float, restarted: bool = False) -> float | None:
        """The rate since the previous observation of ``key``, or ``None`` when there is none yet."""
        prev = self._last.get(key)
        if prev is not None and ts - prev[0] < self.min_interval_s:
            return None  # same scrape seen twice, or time went backwards: keep the older baseline
        self._last[key] = (ts, value)
        if prev is None:
            return None
        prev_ts, prev_value = prev
        increase = value - prev_value
        if restarted or increase < 0:
            self.resets += 1
            increase = value
        return increase / (ts - prev_ts)

    def forget_stale(self, now: float) -> int:
        """Drop series not observed for ``stale_after_s``; returns how many were dropped."""
        stale = [k for k, (ts, _) in self._last.items() if now - ts > self.stale_after_s]
        for k in stale:
            del self._last[k]
        return len(stale)

    def forget(self, key: Hashable) -> None:
        self._last.pop(key, None)
