"""Daily seasonality: a per-series time-of-day profile of the log level, in numpy.

``DailyProfile`` keeps, for every series (one per integer slot, as in
``guardian.detectors.fast``), ``bins`` time-of-day bins (default 48 half hours) of the
mean of ``log(value + floor)``:

* each bin starts as the plain mean of what it has seen and becomes an EWMA
  with a memory of ``tau_days`` days once it holds that much time, so a
  profile follows a slow drift of the daily shape;
* an update moves the bin by at most ``clip_log`` in log space per unit of
  weight (a spike barely moves it), and learning is skipped for the entries a
  caller marks ``frozen`` (a series in alarm must not learn its runaway);
* ``expected(slots, ts)`` interpolates linearly between the two neighbouring
  bin centres and is *ready* once the series has ``ready_days`` (2) full days
  of history and every bin has been seen; before that the caller keeps its
  non-seasonal baseline.

Time is the sample's own ``ts`` (unix seconds; ``day_offset_s`` shifts the
day's start, e.g. to a local midnight); nothing here reads a clock.
Non-finite values or times are ignored. Memory per series is fixed:
``bins`` float32 means and weights plus three float64 columns.

Each call takes at most one entry per slot (the same contract as
``guardian.detectors.base.Detector``).

>>> import numpy as np
>>> prof = DailyProfile(bins=24)
>>> day = 86_400.0
>>> ts = np.arange(0.0, 3 * day, 600.0)                      # 10-minute samples, 3 days
>>> level = 100.0 * (2.0 + np.sin(2 * np.pi * ts / day))      # 300 at the peak, 100 at the trough
>>> for t, x in zip(ts, level):
...     prof.observe([0], [t], [x])
>>> exp, ready = prof.expected([0, 0], [3 * day + day / 4, 3 * day + 3 * day / 4])
>>> bool(ready.all()), [round(float(e)) for e in exp]          # peak at 06:00, trough at 18:00
(True, [299, 101])
>>> bool(prof.expected([0], [1.5 * day])[1][0])              # not ready while history is short
False
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from guardian.detectors.base import as_arrays

DAY = 86_400.0


@dataclass(frozen=True)
class SeasonalParams:
    """Shape of the daily profile. ``floor`` is the metric's own (as in ``TierParams``)."""

    bins: int = 48
    floor: float = 1.0
    tau_days: float = 3.0       # a bin's memory once full, in days of that bin's data
    ready_days: float = 2.0     # full days of history before ``expected`` is trusted
    clip_log: float = 1.0       # largest log step one sample can move a bin by (x e ~ 2.7)
    max_dt_s: float = 300.0     # the weight one sample carries after a gap, at most
    day_offset_s: float = 0.0   # seconds added to ts before taking the time of day


_COLS = ("first_ts", "last_ts", "seen")   # seen: how many bins hold any data


class DailyProfile:
    """Per-series daily profile of the log level for many series, vectorised over slots."""

    def __init__(self, params: SeasonalParams | None = None, capacity: int = 1024, *, bins: int | None = None,
                 floor: float | None = None) -> None:
        p = params or SeasonalParams()
        p = replace(p, bins=p.bins if bins is None else int(bins), floor=p.floor if floor is None else float(floor))
        if p.bins < 2:
            from guardian.errors import ConfigError

            raise ConfigError("a daily profile needs at least 2 bins")
        self.params = p
        self.width = DAY / p.bins
        self.capacity = max(int(capacity), 1)
        self._mean = np.zeros((self.capacity, p.bins), dtype=np.float32)
        self._weight = np.zeros((self.capacity, p.bins), dtype=np.float32)   # seconds of data, capped
        self._first = np.full(self.capacity, np.nan)
        self._last = np.full(self.capacity, np.nan)
        self._seen = np.zeros(self.capacity)

    # -- plumbing ---------------------------------------------------------------------
    def _ensure(self, max_slot: int) -> None:
        if max_slot < self.capacity:
            return
        cap = max(self.capacity * 2, max_slot + 1)
        for name, fill in (("_mean", 0.0), ("_weight", 0.0), ("_first", np.nan), ("_last", np.nan), ("_seen", 0.0)):
            old = getattr(self, name)
            grown = np.full((cap,) + old.shape[1:], fill, dtype=old.dtype)
            grown[: self.capacity] = old
            setattr(self, name, grown)
        self.capacity = cap

    @property
    def bytes_per_series(self) -> int:
        """State per series: ``bins`` float32 means and weights, and three float64 columns."""
        return int(self._mean.itemsize + self._weight.itemsize) * self.params.bins + 8 * len(_COLS)

    def _position(self, t: np.ndarray) -> np.ndarray:
        """Time of day in bins, 0 at the start of bin 0 (float)."""
        return np.mod(t + self.params.day_offset_s, DAY) / self.width

    # -- learning ---------------------------------------------------------------------
    def observe(self, slots: Any, ts: Any, values: Any, frozen: Any = None) -> None:
        """Fold one sample per slot into its bin; entries with ``frozen`` true (in alarm) are skipped."""
        s, t, x = as_arrays(slots, ts, values)
        ok = np.isfinite(x) & np.isfinite(t)
        if frozen is not None:
            ok &= ~np.asarray(frozen, dtype=bool).reshape(-1)
        if not ok.all():
            s, t, x = s[ok], t[ok], x[ok]
        if not len(s):
            return
        self._ensure(int(s.max()))
        p = self.params
        b = np.minimum(self._position(t).astype(np.int64), p.bins - 1)
        last = self._last[s]
        known = np.isfinite(last)
        dt = np.where(known, np.clip(t - last, 1e-3, p.max_dt_s), 1.0)
        flat = s * p.bins + b
        mean = self._mean.reshape(-1)
        weight = self._weight.reshape(-1)
        w0 = weight[flat].astype(np.float64)
        m0 = mean[flat].astype(np.float64)
        cap = p.tau_days * self.width
        w1 = np.minimum(w0 + dt, cap)
        alpha = np.minimum(dt / w1, 1.0)
        lx = np.log(np.maximum(x, 0.0) + p.floor)
        # an empty bin takes the value as is; a learned one moves by a clipped innovation
        innov = np.where(w0 > 0, np.clip(lx - m0, -p.clip_log, p.clip_log), lx - m0)
        mean[flat] = m0 + alpha * innov
        weight[flat] = w1
        self._seen[s] += w0 == 0
        self._first[s] = np.where(known, self._first[s], t)
        self._last[s] = np.where(known, np.maximum(last, t), t)

    # -- the profile ------------------------------------------------------------------
    def expected(self, slots: Any, ts: Any) -> tuple[np.ndarray, np.ndarray]:
        """(expected level at ``ts``, ready mask) per entry; the level is NaN where not ready."""
        s = np.asarray(slots, dtype=np.int64).reshape(-1)
        t = np.asarray(ts, dtype=np.float64).reshape(-1)
        if len(s):
            self._ensure(int(s.max()))
        p = self.params
        ready = ((self._seen[s] >= p.bins) & np.isfinite(t)
                 & (t - self._first[s] >= p.ready_days * DAY))
        pos = self._position(np.where(np.isfinite(t), t, 0.0)) - 0.5   # bin centres at k + 0.5
        lo = np.floor(pos)
        frac = pos - lo
        i0 = np.mod(lo.astype(np.int64), p.bins)
        i1 = np.mod(i0 + 1, p.bins)
        mean = self._mean.reshape(-1)
        m = (1.0 - frac) * mean[s * p.bins + i0] + frac * mean[s * p.bins + i1]
        level = np.where(ready, np.exp(m) - p.floor, np.nan)
        return level, ready

    def baseline(self, slots: Any, ts: Any, short_base: Any) -> tuple[np.ndarray, np.ndarray]:
        """The baseline for ratio tests: the larger of the short-term level and the seasonal one.

        Where the profile is ready, a series' normal at ``ts`` is at least what it usually does at
        this time of day (the morning rise is not a runaway) and at least its recent level (a series
        that grew since last week is judged against now). Elsewhere ``short_base`` is kept as is.
        Returns (baseline, ready).
        """
        short = np.asarray(short_base, dtype=np.float64).reshape(-1)
        level, ready = self.expected(slots, ts)
        use = ready & np.isfinite(level)
        return np.where(use, np.fmax(short, level), short), ready

    # -- state ------------------------------------------------------------------------
    def snapshot(self, slot: int) -> dict[str, Any]:
        self._ensure(slot)
        return {"mean": self._mean[slot].tolist(), "weight": self._weight[slot].tolist(),
                "first_ts": float(self._first[slot]), "last_ts": float(self._last[slot]),
                "seen": float(self._seen[slot])}

    def restore(self, slot: int, state: dict[str, Any]) -> None:
        self._ensure(slot)
        bins = self.params.bins
        mean = np.asarray(state.get("mean", [0.0] * bins), dtype=np.float32)
        weight = np.asarray(state.get("weight", [0.0] * bins), dtype=np.float32)
        if mean.shape != (bins,) or weight.shape != (bins,):
            from guardian.errors import PermanentError

            raise PermanentError(f"seasonal snapshot has {mean.shape} bins, expected {bins}")
        self._mean[slot] = mean
        self._weight[slot] = weight
        self._first[slot] = float(state.get("first_ts", np.nan))
        self._last[slot] = float(state.get("last_ts", np.nan))
        self._seen[slot] = float(state.get("seen", 0.0))

    def reset(self, slots: Any) -> None:
        """Forget series (evicted workloads); their slots may be reused."""
        s = np.asarray(slots, dtype=np.int64).reshape(-1)
        if not len(s):
            return
        self._ensure(int(s.max()))
        self._mean[s] = 0.0
        self._weight[s] = 0.0
        self._first[s] = np.nan
        self._last[s] = np.nan
        self._seen[s] = 0.0
