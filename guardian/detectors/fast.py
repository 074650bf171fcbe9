"""The fast tier: robust level, spread and change-point state for every series, in numpy.

One ``FastTierDetector`` holds many series of one metric (one per slot) as
columns of float64 arrays, so a batch of samples is one vectorised pass:

* ``fast``: short EWMA of the value (time constant ``tau_fast_s``), the
  smoothed "observed";
* ``base`` and ``dev``: the series' normal level and spread, a slow EWMA
  (``tau_base_s``) of values clipped to ``base + clip_devs * dev`` so a spike
  barely moves it, and frozen while the series is in alarm; the base carries a
  Holt trend (``slope``, time constant ``tau_trend_s``) so a daily cycle does
  not leave it ~10 % behind the level on the rising and falling flanks;
* ``vol``: the series' own per-sample noise, the mean absolute step of
  ``log(value + floor)``, learned outside alarms;
* ``cusum``: a one-sided CUSUM of ``log(fast / base)`` against the allowance
  ``log(cusum_ratio)``, so a moderate sustained rise (a ramp) accumulates
  evidence while short bursts do not;
* ``hit_s``: seconds the strong condition (``ratio >= strong_ratio`` or the
  absolute limit) has held; a sample below it takes ``hit_decay`` seconds off
  instead of resetting it. Before the hold may complete, the raw samples since
  the rise began must confirm it beyond the series' noise: their mean log-ratio
  minus ``noise_k`` standard errors (``vol``) must still clear ``strong_ratio``.
  A quiet series fires a 3x step in ~6 s; a noisy one needs more samples, so a
  benign burst on 25 % noise is not taken for a runaway.
* ``quiet_ts`` (since when ``fast`` has been at most ``floor``: a stopped
  workload) and ``rise_ts`` (since when the hold or the CUSUM has been
  gathering evidence), so the pipeline can tell traffic that moved between a
  tenant's workloads at about the same time (a failover) from a rise next to
  clients that stopped long before;
* with ``seasonal`` (off in the default configuration), a ``DailyProfile``
  (``guardian.detectors.seasonal``) per series: once it knows 2 full days, the ratio
  tests use ``max(base, the profile at this time of day)``; it learns outside
  alarms only.

A series *fires* when its excess over baseline is material (``min_excess``)
and either ``hit_s >= hold_s`` or ``cusum >= cusum_h``; it stays in alarm
until the ratio falls below ``recover_ratio``, and fires again only after
that (onsets, not one per sample). A young series (fewer than ``warm_n``
samples) is judged against ``prior`` (its tenant's established peers) with the higher
``cold_ratio`` and against the absolute limit from its first sample. One whose
alarm began within ``tau_young_s`` of its first sample was judged against the
prior, never against a level of its own: when its cold start ends, still in that
alarm, it takes its last samples' median as its normal and leaves the alarm
(otherwise it would stay in alarm, and unlearned, for good).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from guardian.detectors.base import Detector, SlotArrays, as_arrays
from guardian.detectors.seasonal import DailyProfile, SeasonalParams


@dataclass(frozen=True)
class TierParams:
    """Thresholds of one metric's fast tier. Units are the metric's own."""

    floor: float = 1.0               # added to fast and base before taking ratios (tiny baselines)
    min_excess: float = 1.0          # fast - base must exceed this to fire
    abs_limit: float = float("inf")  # fast above this is a hit whatever the baseline
    strong_ratio: float = 2.5
    hold_s: float = 4.0
    cusum_ratio: float = 1.8
    cusum_h: float = 30.0
    recover_ratio: float = 1.3
    cold_ratio: float = 10.0
    warm_n: int = 120
    tau_fast_s: float = 2.5
    tau_base_s: float = 3600.0
    tau_trend_s: float = 1800.0      # Holt trend of the baseline (0: none), so a daily cycle does not lag it
    tau_young_s: float = 30.0
    clip_devs: float = 3.0
    noise_k: float = 1.5             # the raw samples of the rise, less k standard errors, must be >= strong_ratio
    hit_decay: float = 1.0           # a sample below the ratio takes this many seconds off the hold (0: reset)
    evidence: int = 8
    seasonal: bool = False           # judge against max(level, its time-of-day profile) once 2 days are known


_COLUMNS: dict[str, float] = {
    "n": 0.0, "last_ts": np.nan, "fast": np.nan, "base": np.nan, "slope": 0.0, "dev": 0.0,
    "vol": np.nan, "cusum": 0.0, "hit_s": 0.0, "alarm": 0.0, "onset_ts": np.nan, "peak": 0.0,
    "quiet_ts": np.nan,  # since when the level has been at ~0 (at most ``floor``); NaN while it is not
    "rise_ts": np.nan,   # since when the hold or the CUSUM has been gathering evidence; NaN while neither
    "born_ts": np.nan,   # the series' first sample
}


@dataclass
class TierStep:
    """What one vectorised step found, aligned with its input arrays."""

    score: np.ndarray
    ratio: np.ndarray
    fast: np.ndarray
    base: np.ndarray
    onset: np.ndarray      # bool: the series started an alarm at this sample
    alarm: np.ndarray      # bool: the series is in alarm after this sample
    recovered: np.ndarray  # bool: the series left its alarm at this sample
    duration_s: np.ndarray
    young: np.ndarray      # bool: judged against the prior (cold start)
    extra: dict[str, np.ndarray] = field(default_factory=dict)


class FastTierDetector(Detector):
    """Vectorised EWMA level/spread + log-ratio CUSUM + sustained-ratio test for many series.

    >>> det = FastTierDetector(TierParams(min_excess=10.0))
    >>> import numpy as np
    >>> for t in range(600):
    ...     _ = det.score_learn([0], [t], [100.0 + (t % 3)])
    >>> scores = [float(det.score_learn([0], [600 + t], [300.0])[0]) for t in range(10)]
    >>> scores.index(1.0)  # seconds of a 3x step until the alarm
    6
    """

    name: ClassVar[str] = "fast_tier"

    def __init__(self, params: TierParams | None = None, capacity: int = 1024, seed: int = 0) -> None:
        super().__init__(seed)
        self.params = params or TierParams()
        self.state = SlotArrays(_COLUMNS, capacity)
        e = self.params.evidence
        self._ev_ts = np.full((self.state.capacity, e), np.nan)
        self._ev_val = np.full((self.state.capacity, e), np.nan)
        self.seasonal = (DailyProfile(SeasonalParams(floor=self.params.floor), self.state.capacity)
                         if self.params.seasonal else None)

    # -- state plumbing -------------------------------------------------------------
    def _ensure(self, max_slot: int) -> None:
        old = self.state.capacity
        self.state.ensure(max_slot)
        if self.state.capacity != old:
            e = self.params.evidence
            for name in ("_ev_ts", "_ev_val"):
                grown = np.full((self.state.capacity, e), np.nan)
                grown[:old] = getattr(self, name)
                setattr(self, name, grown)
        if self.seasonal is not None:
            self.seasonal._ensure(self.state.capacity - 1)

    def evidence(self, slot: int) -> list[tuple[float, float]]:
        """The last samples of a series, oldest first."""
        n = int(self.state.cols["n"][slot])
        e = self.params.evidence
        idx = [(n - k) % e for k in range(min(n, e), 0, -1)]
        return [(float(self._ev_ts[slot, i]), float(self._ev_val[slot, i])) for i in idx]

    def mean_since(self, slot: int, since: float) -> float | None:
        """The time-weighted mean of the series' evidence samples taken after ``since`` (None if there is
        none): each sample weighs the time since the one before it (the oldest kept, the others' median),
        so for counts per interval (topics created between two polls) it is what was counted over the
        time, however unevenly the samples came: polls 0.5 and 3.5 s apart seeing 10 and 20 topics are
        30 in 4 s (7.5/s), not the mean of 20/s and 5.7/s."""
        t, v = self._ev_ts[slot], self._ev_val[slot]
        have = np.isfinite(t) & np.isfinite(v)
        order = np.argsort(t[have])
        t, v = t[have][order], v[have][order]
        keep = t > since
        if not keep.any():
            return None
        gaps = np.diff(t)
        first = float(np.median(gaps)) if len(gaps) else 1.0
        w = np.maximum(np.concatenate(([first], gaps)), 0.0)[keep]
        v = v[keep]
        return float((w * v).sum() / w.sum()) if w.sum() > 0 else float(v.mean())

    def snapshot(self, slot: int) -> dict[str, Any]:
        self._ensure(slot)
        state = self.state.get(slot)
        state["ev_ts"] = self._ev_ts[slot].tolist()
        state["ev_val"] = self._ev_val[slot].tolist()
        if self.seasonal is not None:
            state["seasonal"] = self.seasonal.snapshot(slot)
        return state

    def restore(self, slot: int, state: dict[str, Any]) -> None:
        self._ensure(slot)
        self.state.put(slot, state)
        self._ev_ts[slot] = np.asarray(state.get("ev_ts", [np.nan] * self.params.evidence), dtype=np.float64)
        self._ev_val[slot] = np.asarray(state.get("ev_val", [np.nan] * self.params.evidence), dtype=np.float64)
        if self.seasonal is not None:
            self.seasonal.restore(slot, state.get("seasonal", {}))

    def accept(self, slot: int) -> None:
        """Take the series' current level as its new normal (an explained, benign shift)."""
        c = self.state.cols
        c["base"][slot] = c["fast"][slot]
        for name in ("slope", "cusum", "hit_s", "alarm", "peak"):
            c[name][slot] = 0.0
        c["onset_ts"][slot] = np.nan
        c["rise_ts"][slot] = np.nan

    def reset(self, slots: np.ndarray) -> None:
        """Forget series (an evicted workload); their slots may be reused."""
        for name, default in _COLUMNS.items():
            self.state.cols[name][slots] = default
        self._ev_ts[slots] = np.nan
        self._ev_val[slots] = np.nan
        if self.seasonal is not None:
            self.seasonal.reset(slots)

    @property
    def bytes_per_series(self) -> int:
        extra = self.seasonal.bytes_per_series if self.seasonal is not None else 0
        return self.state.bytes_per_series + 16 * self.params.evidence + extra

    # -- the vectorised step --------------------------------------------------------
    def step(self, slots: Any, ts: Any, values: Any, prior: Any = None, commit: bool = True) -> TierStep:
        """Score (and with ``commit`` learn) one sample per slot; slots must be unique."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._step(slots, ts, values, prior, commit)

    def _step(self, slots: Any, ts: Any, values: Any, prior: Any, commit: bool) -> TierStep:
        s, t, x = as_arrays(slots, ts, values)
        p = self.params
        if len(s):
            self._ensure(int(s.max()))
        c = self.state.cols
        ok = np.isfinite(x) & np.isfinite(t)
        n = c["n"][s]
        last_ts = c["last_ts"][s]
        fast = c["fast"][s]
        base = c["base"][s]
        slope = c["slope"][s]
        dev = c["dev"][s]
        vol = c["vol"][s]
        cusum = c["cusum"][s]
        hit_s = c["hit_s"][s]
        alarm = c["alarm"][s] > 0
        onset_ts = c["onset_ts"][s]
        peak = c["peak"][s]
        quiet_ts = c["quiet_ts"][s]
        rise_ts = c["rise_ts"][s]
        born_ts = np.where((n == 0) & ok, t, c["born_ts"][s])

        first = n == 0
        pri = np.full(len(s), np.nan) if prior is None else np.asarray(prior, dtype=np.float64).reshape(-1)
        has_prior = np.isfinite(pri)
        # a new series starts from its prior (tenant peers) if there is one, else from itself
        base = np.where(first, np.where(has_prior, pri, x), base)
        fast = np.where(first, x, fast)
        dev = np.where(first, np.where(has_prior, 0.5 * np.abs(pri), 0.0), dev)
        dt = np.where(first | ~np.isfinite(last_ts), 1.0, np.minimum(np.maximum(t - last_ts, 0.0), 3600.0))
        young = n < p.warm_n
        # the baseline's trend carries it forward (a daily cycle), over at most a minute of gap
        base0 = base
        if p.tau_trend_s > 0:
            base = np.where(first, base, base + slope * np.minimum(dt, 60.0))
        # the level the ratio tests use: with a ready daily profile, at least this time of day's normal
        ref = base if self.seasonal is None else self.seasonal.baseline(s, t, base)[0]

        a_fast = 1.0 - np.exp(-dt / p.tau_fast_s)
        fast = np.where(ok, fast + a_fast * (x - fast), fast)
        ratio = (fast + p.floor) / (np.maximum(ref, 0.0) + p.floor)
        excess = fast - ref
        material = excess >= p.min_excess
        over_abs = fast >= p.abs_limit
        strong_r = np.where(young, p.cold_ratio, p.strong_ratio)
        strong = ok & ((material & (ratio >= strong_r)) | over_abs)
        if p.hit_decay > 0:
            hit_s = np.where(strong, hit_s + dt, np.where(ok & material, np.maximum(hit_s - p.hit_decay * dt, 0.0), 0.0))
        else:
            hit_s = np.where(strong, hit_s + dt, 0.0)
        # per-sample noise of the series: mean absolute step of log(value + floor) (learned outside alarms)
        e = p.evidence
        prev = self._ev_val[s, (n.astype(np.int64) - 1) % e]
        lx = np.log(np.maximum(x, 0.0) + p.floor)
        step_abs = np.abs(lx - np.log(np.maximum(prev, 0.0) + p.floor))
        sig = np.where(np.isfinite(vol), vol, 0.0) / 1.128
        # a sustained rise must also show in the raw samples of the evidence window, beyond their noise
        cand = np.nonzero((hit_s >= p.hold_s) & ~over_abs & ok)[0]
        if len(cand) and p.noise_k >= 0:
            win = self._ev_val[s[cand]].copy()
            win[np.arange(len(cand)), (n[cand].astype(np.int64)) % e] = x[cand]
            wts = self._ev_ts[s[cand]].copy()
            wts[np.arange(len(cand)), (n[cand].astype(np.int64)) % e] = t[cand]
            # only the samples since the rise began: the hold plus the fast average's lag
            win = np.where(wts >= (t[cand] - hit_s[cand] - p.tau_fast_s)[:, None], win, np.nan)
            lw = np.log(np.maximum(win, 0.0) + p.floor)
            cnt = np.isfinite(lw).sum(axis=1)
            mean = np.nansum(lw, axis=1) / np.maximum(cnt, 1) - np.log(np.maximum(ref[cand], 0.0) + p.floor)
            lcb = mean - p.noise_k * sig[cand] / np.sqrt(np.maximum(cnt, 1))
            weak = lcb < np.log(strong_r[cand])
            hit_s[cand[weak]] = np.minimum(hit_s[cand[weak]], p.hold_s - dt[cand[weak]] * 0.5)
        lr = np.log(np.maximum(ratio, 1e-12))
        cusum = np.where(ok & ~young, np.minimum(np.maximum(cusum + dt * (lr - np.log(p.cusum_ratio)), 0.0),
                                                 10 * p.cusum_h), cusum)
        firing = ok & ((hit_s >= p.hold_s) | (material & (cusum >= p.cusum_h)))
        onset = firing & ~alarm
        recovered = alarm & ok & (ratio < p.recover_ratio) & ~over_abs
        new_alarm = (alarm | onset) & ~recovered
        # the alarm started when the evidence started accumulating
        start = np.where(hit_s >= p.hold_s, t - hit_s, t)
        onset_ts = np.where(onset, start, np.where(new_alarm, onset_ts, np.nan))
        peak = np.where(onset, fast, np.where(new_alarm, np.maximum(peak, fast), 0.0))
        cusum = np.where(recovered, 0.0, cusum)
        hit_s = np.where(recovered, 0.0, hit_s)
        # the cold start ends in an alarm that began against the prior: take its own level instead
        rebase = np.nonzero(new_alarm & ok & (n + 1 == p.warm_n) & (onset_ts - born_ts <= p.tau_young_s))[0]
        if len(rebase):
            own = self._own_level(s[rebase], n[rebase], t[rebase], x[rebase])
            base[rebase], dev[rebase], vol[rebase] = own
            new_alarm[rebase], recovered[rebase] = False, True
            onset_ts[rebase], peak[rebase], cusum[rebase], hit_s[rebase] = np.nan, 0.0, 0.0, 0.0
            ratio[rebase] = (fast[rebase] + p.floor) / (np.maximum(base[rebase], 0.0) + p.floor)
        duration = np.where(new_alarm | onset, t - onset_ts, 0.0)
        # when a stopped workload went to ~0, and when this rise began (a CUSUM onset reports no
        # duration): the pipeline tells a failover (one stops as the other rises) from a runaway
        quiet = fast <= p.floor
        quiet_ts = np.where(ok, np.where(quiet, np.where(np.isfinite(quiet_ts), quiet_ts, t), np.nan), quiet_ts)
        rising = (hit_s > 0) | (cusum > 0)
        rise_ts = np.where(ok, np.where(rising, np.where(np.isfinite(rise_ts), rise_ts, t - hit_s), np.nan), rise_ts)

        # learn the normal level only from samples outside an alarm, clipped against spikes
        learn = ok & ~new_alarm
        tau = np.where(young, p.tau_young_s, p.tau_base_s)
        a_base = 1.0 - np.exp(-dt / tau)
        hi = base + p.clip_devs * dev + p.min_excess
        xc = np.minimum(x, hi)
        base_new = base + a_base * (xc - base)
        dev_new = dev + a_base * (np.abs(xc - base) - dev)
        if p.tau_trend_s > 0:
            a_tr = 1.0 - np.exp(-dt / p.tau_trend_s)
            lim = (np.abs(base) + p.floor) / p.tau_trend_s
            slope_new = np.clip(slope + a_tr * ((base_new - base0) / np.maximum(dt, 1e-9) - slope), -lim, lim)
            slope = np.where(learn & ~young, slope_new, slope)
        seen_base = ref
        base = np.where(learn, base_new, base0)   # frozen (not carried on by the trend) in alarm
        dev = np.where(learn, dev_new, dev)
        okstep = learn & np.isfinite(step_abs)
        vol_tau = np.where(young, p.tau_young_s, p.tau_base_s)
        vol_c = np.where(np.isfinite(vol), np.minimum(step_abs, 4.0 * vol + 0.05), step_abs)
        vol = np.where(okstep, np.where(np.isfinite(vol), vol + (1.0 - np.exp(-dt / vol_tau)) * (vol_c - vol), step_abs), vol)

        score = np.where(ok, np.minimum(np.maximum(hit_s / p.hold_s, cusum / p.cusum_h), 1.0), 0.0)
        score = np.where(material | over_abs, score, 0.0)
        score = np.where(new_alarm, 1.0, score)

        if commit and len(s):
            c["n"][s] = n + ok
            c["last_ts"][s] = np.where(ok, t, last_ts)
            c["fast"][s] = fast
            c["base"][s] = base
            c["slope"][s] = slope
            c["dev"][s] = dev
            c["vol"][s] = vol
            c["cusum"][s] = cusum
            c["hit_s"][s] = hit_s
            c["alarm"][s] = new_alarm
            c["onset_ts"][s] = onset_ts
            c["peak"][s] = peak
            c["quiet_ts"][s] = quiet_ts
            c["rise_ts"][s] = rise_ts
            c["born_ts"][s] = born_ts
            okk = np.nonzero(ok)[0]
            if len(okk):
                col = (n[okk].astype(np.int64)) % p.evidence
                self._ev_ts[s[okk], col] = t[okk]
                self._ev_val[s[okk], col] = x[okk]
            if self.seasonal is not None:
                self.seasonal.observe(s, t, x, frozen=new_alarm)
        return TierStep(score=score, ratio=ratio, fast=fast, base=seen_base, onset=onset, alarm=new_alarm,
                        recovered=recovered, duration_s=duration, young=young)

    def _own_level(self, s: np.ndarray, n: np.ndarray, t: np.ndarray, x: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(level, spread, log-step noise) of each series' evidence window with this sample in it."""
        e = self.params.evidence
        win = self._ev_val[s].copy()
        win[np.arange(len(s)), n.astype(np.int64) % e] = x
        order = (n.astype(np.int64)[:, None] - np.arange(e - 1, -1, -1)[None, :]) % e   # oldest first
        win = np.take_along_axis(win, order, axis=1)
        with warnings.catch_warnings():   # a warm_n below the window leaves NaN in it: no noise figure yet
            warnings.simplefilter("ignore", RuntimeWarning)
            level = np.nanmedian(win, axis=1)
            spread = np.nanmean(np.abs(win - level[:, None]), axis=1)
            lw = np.log(np.maximum(win, 0.0) + self.params.floor)
            noise = np.nanmean(np.abs(np.diff(lw, axis=1)), axis=1)
        return level, spread, noise

    # -- the Detector interface -----------------------------------------------------
    def score(self, slots: Any, ts: Any, values: Any) -> np.ndarray:
        return self.step(slots, ts, values, commit=False).score

    def learn(self, slots: Any, ts: Any, values: Any) -> None:
        self.step(slots, ts, values, commit=True)

    def score_learn(self, slots: Any, ts: Any, values: Any) -> np.ndarray:
        return self.step(slots, ts, values, commit=True).score
