"""The detector interface: ``learn``, ``score``, ``snapshot``, ``restore``.

A detector tracks many series at once. Each series lives in an integer
*slot*; a caller (the pipeline, the NAB runner) maps its own keys to slots.
Every call takes parallel arrays ``slots, ts, values`` with at most one
entry per slot, so the fast tier can update all series in one numpy pass.

* ``score`` returns, for each entry, an anomaly score in ``[0, 1]`` judged
  against what the slot has learned so far (it does not change state);
* ``learn`` folds the entries into the slots' state;
* ``snapshot(slot)`` returns a JSON-serialisable dict; ``restore(slot, state)``
  puts it back so that the restored slot scores exactly as the original;
* ``bytes_per_series`` is the bounded memory one tracked series costs.

Non-finite values are ignored by ``learn`` and score 0: a missing sample is
not evidence. Detectors are pure: no I/O, time comes in ``ts``, randomness
from the seed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np


class Detector(ABC):
    """Base of every detector; one concept per module under ``guardian/detectors/``."""

    name: ClassVar[str]

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @abstractmethod
    def score(self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Anomaly score in [0, 1] of each value against its slot's state. No state change."""

    @abstractmethod
    def learn(self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray) -> None:
        """Fold the values into their slots' state."""

    def score_learn(self, slots: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Score then learn, the usual online step (subclasses may fuse the two)."""
        out = self.score(slots, ts, values)
        self.learn(slots, ts, values)
        return out

    @abstractmethod
    def snapshot(self, slot: int) -> dict[str, Any]:
        """The slot's state as plain JSON-serialisable data."""

    @abstractmethod
    def restore(self, slot: int, state: dict[str, Any]) -> None:
        """Replace the slot's state with a snapshot."""

    @property
    @abstractmethod
    def bytes_per_series(self) -> int:
        """Memory one tracked series costs (state arrays), bounded whatever its history."""


def as_arrays(slots: Any, ts: Any, values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coerce the three parallel inputs to ``int64, float64, float64`` arrays."""
    s = np.asarray(slots, dtype=np.int64).reshape(-1)
    t = np.asarray(ts, dtype=np.float64).reshape(-1)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not (len(s) == len(t) == len(v)):
        from guardian.errors import PermanentError

        raise PermanentError("slots, ts and values must have the same length")
    return s, t, v


class SlotArrays:
    """Growable per-slot float64 state columns shared by the vectorised detectors."""

    def __init__(self, columns: dict[str, float], capacity: int = 1024) -> None:
        self._defaults = dict(columns)
        self.capacity = max(int(capacity), 1)
        self.cols: dict[str, np.ndarray] = {name: np.full(self.capacity, default, dtype=np.float64)
                                            for name, default in columns.items()}

    def ensure(self, max_slot: int) -> None:
        if max_slot < self.capacity:
            return
        new_cap = max(self.capacity * 2, max_slot + 1)
        for name, arr in self.cols.items():
            grown = np.full(new_cap, self._defaults[name], dtype=np.float64)
            grown[: self.capacity] = arr
            self.cols[name] = grown
        self.capacity = new_cap

    def get(self, slot: int) -> dict[str, float]:
        self.ensure(slot)
        return {name: float(arr[slot]) for name, arr in self.cols.items()}

    def put(self, slot: int, state: dict[str, Any]) -> None:
        self.ensure(slot)
        for name, arr in self.cols.items():
            arr[slot] = float(state.get(name, self._defaults[name]))

    @property
    def bytes_per_series(self) -> int:
        return 8 * len(self.cols)
