"""Pattern-novelty detector: is the recent shape of this series one it has seen before?

The value is quantised at several resolutions over the range the series has
shown so far; at each resolution the last one, two and three levels form
patterns ("facts") that are counted as they are seen. The raw score of a new
value is the share of its facts never seen before, so a level shift, a spike,
a changed daily shape or a new noise regime all look novel until they become
normal, while a repeated daily cycle stops looking novel after one period. A
series that is novel all the time (noise) earns less credit per novel fact:
the score is damped by the series' own recent novelty rate.

Memory is bounded: the range-rescaling history is a ring of ``history``
values and the fact tables hold at most ``(1.2 L + 3) ** 3`` patterns per
resolution ``L``. The table is rebuilt from the ring when the range grows by
more than ``grow`` of itself, which is rare and itself a novelty.

One fixed configuration (``NoveltyDetector()``) is what ``guardian eval nab``
runs; it is not tuned per file.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, ClassVar

import numpy as np

from detectors.base import Detector, as_arrays


class _Resolution:
    __slots__ = ("levels", "orders", "counts", "recent")

    def __init__(self, levels: int, orders: tuple[int, ...]) -> None:
        self.levels = levels
        self.orders = orders
        self.counts: dict[tuple[int, ...], int] = {}
        self.recent: deque[int] = deque(maxlen=max(orders))

    def level(self, x: float, lo: float, hi: float) -> int:
        if hi <= lo:
            return 0
        q = int(math.floor((x - lo) / (hi - lo) * self.levels))
        return self.levels - 1 if q == self.levels and x <= hi else q

    def novel(self, q: int) -> tuple[int, int]:
        """(novel facts, facts) for level ``q`` following the recent levels."""
        seq = list(self.recent) + [q]
        novel = total = 0
        for order in self.orders:
            if len(seq) >= order:
                total += 1
                if not self.counts.get((order, *seq[-order:]), 0):
                    novel += 1
        return novel, total

    def add(self, q: int) -> None:
        self.recent.append(q)
        seq = list(self.recent)
        for order in self.orders:
            if len(seq) >= order:
                key = (order, *seq[-order:])
                self.counts[key] = self.counts.get(key, 0) + 1

    def rebuild(self, history: deque[float], lo: float, hi: float) -> None:
        self.counts.clear()
        self.recent.clear()
        for v in history:
            self.add(min(self.level(v, lo, hi), self.levels - 1))


class _SeriesState:
    __slots__ = ("resolutions", "history", "lo", "hi", "rate", "n")

    def __init__(self, levels: tuple[int, ...], orders: tuple[int, ...], history: int) -> None:
        self.resolutions = [_Resolution(L, orders) for L in levels]
        self.history: deque[float] = deque(maxlen=history)
        self.lo = math.nan
        self.hi = math.nan
        self.rate = 0.0
        self.n = 0


class NoveltyDetector(Detector):
    """Multi-resolution quantised-pattern novelty, damped by the series' own novelty rate.

    >>> det = NoveltyDetector()
    >>> import numpy as np
    >>> vals = [10.0, 20.0] * 40 + [95.0]
    >>> scores = [float(det.score_learn([0], [i], [v])[0]) for i, v in enumerate(vals)]
    >>> max(scores[30:80]) == 0.0, scores[-1] > 0.5
    (True, True)
    """

    name: ClassVar[str] = "novelty"

    def __init__(self, levels: tuple[int, ...] = (5, 8, 12), orders: tuple[int, ...] = (1, 2, 3),
                 history: int = 1000, grow: float = 0.1, damping: float = 5.0,
                 rate_alpha: float = 0.005, warmup: int = 20, seed: int = 0) -> None:
        super().__init__(seed)
        self.levels = tuple(levels)
        self.orders = tuple(orders)
        self.history = int(history)
        self.grow = float(grow)
        self.damping = float(damping)
        self.rate_alpha = float(rate_alpha)
        self.warmup = int(warmup)
        self._series: dict[int, _SeriesState] = {}

    def _state(self, slot: int) -> _SeriesState:
        st = self._series.get(slot)
        if st is None:
            st = self._series[slot] = _SeriesState(self.levels, self.orders, self.history)
        return st

    def _raw(self, st: _SeriesState, x: float) -> tuple[float, list[int]]:
        if st.n == 0:
            return 0.0, [0] * len(st.resolutions)
        novel = total = 0
        levels = []
        for res in st.resolutions:
            q = res.level(x, st.lo, st.hi)
            a, b = res.novel(q)
            novel += a
            total += b
            levels.append(q)
        return (novel / total if total else 0.0), levels

    def _score_one(self, st: _SeriesState, x: float) -> tuple[float, float, list[int]]:
        raw, levels = self._raw(st, x)
        if st.n < self.warmup:
            return 0.0, raw, levels
        return raw * math.exp(-st.rate * self.damping), raw, levels

    def _learn_one(self, st: _SeriesState, x: float, raw: float, levels: list[int]) -> None:
        if st.n >= self.warmup:
            st.rate += (raw - st.rate) * self.rate_alpha
        st.n += 1
        st.history.append(x)
        if st.n == 1:
            st.lo = st.hi = x
            for res in st.resolutions:
                res.rebuild(st.history, st.lo, st.hi)
            return
        span = st.hi - st.lo
        if x > st.hi + self.grow * span or x < st.lo - self.grow * span or span == 0:
            st.lo, st.hi = min(st.lo, x), max(st.hi, x)
            for res in st.resolutions:
                res.rebuild(st.history, st.lo, st.hi)
        else:
            for res, q in zip(st.resolutions, levels):
                res.add(q)

    def score(self, slots: Any, ts: Any, values: Any) -> np.ndarray:
        s, _, v = as_arrays(slots, ts, values)
        out = np.zeros(len(s))
        for i, (slot, x) in enumerate(zip(s.tolist(), v.tolist())):
            if math.isfinite(x):
                out[i] = self._score_one(self._state(slot), x)[0]
        return out

    def learn(self, slots: Any, ts: Any, values: Any) -> None:
        s, _, v = as_arrays(slots, ts, values)
        for slot, x in zip(s.tolist(), v.tolist()):
            if math.isfinite(x):
                st = self._state(slot)
                _, raw, levels = self._score_one(st, x)
                self._learn_one(st, x, raw, levels)

    def score_learn(self, slots: Any, ts: Any, values: Any) -> np.ndarray:
        s, _, v = as_arrays(slots, ts, values)
        out = np.zeros(len(s))
        for i, (slot, x) in enumerate(zip(s.tolist(), v.tolist())):
            if math.isfinite(x):
                st = self._state(slot)
                out[i], raw, levels = self._score_one(st, x)
                self._learn_one(st, x, raw, levels)
        return out

    def snapshot(self, slot: int) -> dict[str, Any]:
        st = self._state(slot)
        return {
            "history": list(st.history), "lo": st.lo, "hi": st.hi, "rate": st.rate, "n": st.n,
            "resolutions": [{"recent": list(r.recent),
                             "counts": [[*k, c] for k, c in r.counts.items()]} for r in st.resolutions],
        }

    def restore(self, slot: int, state: dict[str, Any]) -> None:
        st = _SeriesState(self.levels, self.orders, self.history)
        st.history.extend(float(x) for x in state["history"])
        st.lo, st.hi = float(state["lo"]), float(state["hi"])
        st.rate, st.n = float(state["rate"]), int(state["n"])
        for res, rs in zip(st.resolutions, state["resolutions"]):
            res.recent.extend(int(q) for q in rs["recent"])
            res.counts = {tuple(int(q) for q in row[:-1]): int(row[-1]) for row in rs["counts"]}
        self._series[slot] = st

    @property
    def bytes_per_series(self) -> int:
        # ring of floats plus, per resolution, at most (1.2 L + 3)^3 patterns of ~4 small ints
        patterns = sum(int(1.2 * L + 3) ** 3 for L in self.levels)
        return 8 * self.history + 48 * patterns


class OnsetFilter:
    """Turns a score stream into onsets: a score is kept only if it beats every score of the last ``gap`` steps.

    Whatever threshold a consumer later applies, a sustained alarm then
    crosses it once (plus at most a few escalations), not once per step.
    Per series, bounded memory (a monotone queue of at most ``gap`` entries).
    """

    def __init__(self, gap: int = 100) -> None:
        self.gap = int(gap)
        self._i = 0
        self._queue: deque[tuple[int, float]] = deque()

    def step(self, score: float) -> float:
        i = self._i
        self._i += 1
        q = self._queue
        while q and q[0][0] < i - self.gap:
            q.popleft()
        peak = q[0][1] if q else 0.0
        out = score if score > peak else 0.0
        while q and q[-1][1] <= score:
            q.pop()
        q.append((i, score))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"i": self._i, "queue": [list(p) for p in self._queue]}

    def restore(self, state: dict[str, Any]) -> None:
        self._i = int(state["i"])
        self._queue = deque((int(i), float(s)) for i, s in state["queue"])
