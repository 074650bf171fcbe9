"""Our implementation of the Numenta Anomaly Benchmark (NAB) scoring method.

Written from the published method (see ``/work/shared/nab/README.md``), not
copied from NAB's code, and kept faithful to it so that results written in
NAB's layout score the same under NAB's own scorer:

* the first ``min(floor(0.15 n), 750)`` rows of a file are not scored;
* a row is a detection when its anomaly score is at or above the threshold;
* inside a window only the earliest detection counts, earning
  ``A_TP * s(y) / s(-1)`` with ``y`` its relative position (-1 at the left
  edge, ~0 at the right edge) and ``s(y) = 2 / (1 + exp(5 y)) - 1``;
* a window with no detection costs ``-A_FN``;
* a detection outside every window costs ``A_FP * s(d)`` with ``d`` its
  distance past the end of the preceding window in window lengths, or
  ``-A_FP`` without a preceding window (and ``s = -1`` beyond 3 lengths);
* one threshold per detector and profile is chosen to maximise the corpus
  score, and the score is normalised between the null detector (never
  fires) and the perfect one (fires at the left edge of every window).

Reading the data files is done by :func:`load_corpus`; everything else is pure.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from guardian.errors import ConfigError


@dataclass(frozen=True)
class Profile:
    """NAB's cost matrix for one application profile."""

    name: str
    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


PROFILES: tuple[Profile, ...] = (
    Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
)


@dataclass
class NabSeries:
    """One data file of a NAB-layout corpus with its labelled windows as row indices."""

    key: str                     # "category/name.csv", the key of the windows file
    timestamps: list[str]        # as written in the file, echoed into the results file
    ts: np.ndarray               # unix seconds (UTC), float64
    values: np.ndarray           # float64
    windows: list[tuple[int, int]] = field(default_factory=list)  # inclusive [left, right] row indices

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split("/", 1)[1]

    def labels(self) -> np.ndarray:
        lab = np.zeros(len(self.values), dtype=np.int8)
        for left, right in self.windows:
            lab[left:right + 1] = 1
        return lab


def probation_rows(n_rows: int, percent: float = 0.15) -> int:
    """Rows at the start of a file that NAB does not score."""
    return int(min(math.floor(percent * n_rows), percent * 5000))


def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray:
    """NAB's ``s(y) = 2 / (1 + exp(5 y)) - 1``, and -1 beyond 3 window lengths."""
    y = np.asarray(y, dtype=np.float64)
    val = 2.0 / (1.0 + np.exp(np.clip(5.0 * y, -700, 700))) - 1.0
    return np.where(y > 3.0, -1.0, val)


def _parse_ts(text: str) -> float:
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def load_corpus(data_dir: Path, windows_file: Path) -> list[NabSeries]:
    """Every ``category/name.csv`` under ``data_dir`` with its windows (none if unlabelled)."""
    data_dir = Path(data_dir)
    try:
        windows = json.loads(Path(windows_file).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read windows file {windows_file}: {exc}") from exc
    files = sorted(data_dir.glob("*/*.csv"))
    if not files:
        raise ConfigError(f"no category/name.csv files under {data_dir}")
    corpus = []
    for path in files:
        key = f"{path.parent.name}/{path.name}"
        stamps, values = [], []
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
                raise ConfigError(f"{path}: expected header timestamp,value")
            for row in reader:
                if not row:
                    continue
                stamps.append(row[0])
                try:
                    values.append(float(row[1]))
                except ValueError:
                    values.append(float("nan"))
        ts = np.array([_parse_ts(s) for s in stamps], dtype=np.float64)
        series = NabSeries(key=key, timestamps=stamps, ts=ts, values=np.array(values, dtype=np.float64))
        for start, end in windows.get(key, []):
            t0, t1 = _parse_ts(start), _parse_ts(end)
            inside = np.nonzero((ts >= t0) & (ts <= t1))[0]
            if len(inside):
                series.windows.append((int(inside[0]), int(inside[-1])))
        corpus.append(series)
    return corpus


@dataclass
class _ScoredRows:
    """Per scored row (after probation): the score a detection there would earn."""

    weight: np.ndarray      # A_TP-weighted sigmoid inside windows, A_FP-weighted cost outside
    window: np.ndarray      # corpus-wide window id, or -1 outside windows
    n_windows: int


def _row_weights(n_rows: int, windows: list[tuple[int, int]], profile: Profile,
                 first_window_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted score of a detection at each row and the window it falls in."""
    weight = np.empty(n_rows, dtype=np.float64)
    window = np.full(n_rows, -1, dtype=np.int64)
    idx = np.arange(n_rows, dtype=np.float64)
    s_left = float(scaled_sigmoid(-1.0))
    prev_right: int | None = None
    prev_width = 0
    cursor = 0
    for wid, (left, right) in enumerate(sorted(windows)):
        width = right - left + 1
        # rows between the previous window (or the start) and this one
        gap = slice(cursor, left)
        if prev_right is None:
            weight[gap] = -1.0 * profile.fp
        else:
            d = np.abs(prev_right - idx[gap]) / max(prev_width - 1, 1)
            weight[gap] = scaled_sigmoid(d) * profile.fp
        pos = -(right - idx[left:right + 1] + 1) / width
        weight[left:right + 1] = scaled_sigmoid(pos) * profile.tp / s_left
        window[left:right + 1] = first_window_id + wid
        prev_right, prev_width, cursor = right, width, right + 1
    tail = slice(cursor, n_rows)
    if prev_right is None:
        weight[tail] = -1.0 * profile.fp
    else:
        d = np.abs(prev_right - idx[tail]) / max(prev_width - 1, 1)
        weight[tail] = scaled_sigmoid(d) * profile.fp
    return weight, window


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float

    @property
    def normalised(self) -> float:
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span else 0.0


def score_at_threshold(scores: list[np.ndarray], windows: list[list[tuple[int, int]]],
                       profile: Profile, threshold: float) -> float:
    """Raw NAB score of a corpus at one fixed threshold (the direct, unoptimised rule)."""
    total = 0.0
    for sc, win in zip(scores, windows):
        n = len(sc)
        weight, wid = _row_weights(n, win, profile, 0)
        start = probation_rows(n)
        det = np.asarray(sc) >= threshold
        det[:start] = False
        scored_ids = set(int(w) for w in wid[start:] if w >= 0)
        for w in scored_ids:
            hits = np.nonzero(det & (wid == w))[0]
            total += weight[hits[0]] if len(hits) else -profile.fn
        total += float(weight[det & (wid < 0)].sum())
    return total


def optimise_threshold(scores: list[np.ndarray], windows: list[list[tuple[int, int]]],
                       profile: Profile) -> ProfileResult:
    """Sweep every distinct score as the threshold and keep the best corpus score."""
    all_scores, all_weights, all_windows = [], [], []
    n_windows = 0
    for sc, win in zip(scores, windows):
        sc = np.nan_to_num(np.asarray(sc, dtype=np.float64), nan=0.0)
        n = len(sc)
        weight, wid = _row_weights(n, win, profile, n_windows)
        start = probation_rows(n)
        all_scores.append(sc[start:])
        all_weights.append(weight[start:])
        all_windows.append(wid[start:])
        n_windows += len(win)
    sc = np.concatenate(all_scores) if all_scores else np.empty(0)
    weight = np.concatenate(all_weights) if all_weights else np.empty(0)
    wid = np.concatenate(all_windows) if all_windows else np.empty(0, dtype=np.int64)
    # Windows wholly inside probation are not scored (they have no scored rows).
    counted = np.unique(wid[wid >= 0])
    null = -profile.fn * len(counted)
    perfect = profile.tp * len(counted)

    order = np.argsort(-sc, kind="stable")
    sc, weight, wid = sc[order], weight[order], wid[order]
    best_window = np.full(max(n_windows, 1), -profile.fn, dtype=np.float64)
    fp_total = 0.0
    win_total = null
    best_raw, best_threshold = null, float(sc.max() + 1.0) if len(sc) else 1.0
    i, n = 0, len(sc)
    while i < n:
        threshold = sc[i]
        j = i
        # every row with this exact score becomes a detection at once
        while j < n and sc[j] == threshold:
            w = wid[j]
            if w < 0:
                fp_total += weight[j]
            elif weight[j] > best_window[w]:
                # earliest detection in a window has the largest weight
                win_total += weight[j] - best_window[w]
                best_window[w] = weight[j]
            j += 1
        raw = win_total + fp_total
        if raw > best_raw:
            best_raw, best_threshold = raw, float(threshold)
        i = j
    return ProfileResult(profile=profile.name, threshold=best_threshold, raw=float(best_raw),
                         null=float(null), perfect=float(perfect))


def write_results(out_dir: Path, detector: str, series: NabSeries, scores: np.ndarray) -> Path:
    """One results file in NAB's layout: ``<detector>/<category>/<detector>_<name>.csv``."""
    path = Path(out_dir) / detector / series.category / f"{detector}_{series.name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = series.labels()
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "value", "anomaly_score", "label"])
        for stamp, value, score, label in zip(series.timestamps, series.values, scores, labels):
            writer.writerow([stamp, repr(float(value)) if math.isfinite(value) else "", f"{float(score):.6f}",
                             int(label)])
    return path


DETECTOR_NAME = "guardian"


def detect_series(values: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The one fixed NAB configuration: pattern novelty, then onsets. Causal, row by row."""
    from detectors.novelty import NoveltyDetector, OnsetFilter

    detector = NoveltyDetector()
    onsets = OnsetFilter()
    out = np.zeros(len(values))
    for i, (t, v) in enumerate(zip(ts.tolist(), values.tolist())):
        raw = float(detector.score_learn([0], [t], [v])[0])
        out[i] = round(onsets.step(raw), 6)  # the precision written to the results file
    return out


def _detect_args(args: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return detect_series(*args)


def run_nab(data_dir: Path, windows_file: Path, out_dir: Path, jobs: int = 1) -> dict[str, ProfileResult]:
    """Score every series of a NAB-layout directory, write NAB's results layout and scores.json."""
    corpus = load_corpus(data_dir, windows_file)
    work = [(s.values, s.ts) for s in corpus]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            scores = list(pool.map(_detect_args, work))
    else:
        scores = [_detect_args(w) for w in work]
    out_dir = Path(out_dir)
    for series, sc in zip(corpus, scores):
        write_results(out_dir, DETECTOR_NAME, series, sc)
    results = {p.name: optimise_threshold(scores, [s.windows for s in corpus], p) for p in PROFILES}
    summary = {name: round(r.normalised, 2) for name, r in results.items()}
    summary_detail = {name: {"threshold": r.threshold, "raw": r.raw, "null": r.null, "perfect": r.perfect,
                             "normalised": r.normalised} for name, r in results.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scores.json").write_text(json.dumps({**summary, "detector": DETECTOR_NAME,
                                                     "files": len(corpus), "detail": summary_detail},
                                                    indent=2) + "\n")
    return results
