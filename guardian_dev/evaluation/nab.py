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

Reading files is done by :func:`load_corpus` (data) and :func:`load_results`
(a detector's results in NAB's layout, which is what the published figures are
scored from); the scoring itself is pure.
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


def _load_windows(windows_file: Path) -> dict[str, list[tuple[float, float]]]:
    """``combined_windows.json`` as ``{"category/name.csv": [(t0, t1), ...]}`` in unix seconds."""
    try:
        raw = json.loads(Path(windows_file).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read windows file {windows_file}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"windows file {windows_file}: expected an object of 'category/name.csv': [[start, end], ...]")
    windows: dict[str, list[tuple[float, float]]] = {}
    for key, pairs in raw.items():
        try:
            windows[key] = [(_parse_ts(a), _parse_ts(b)) for a, b in pairs]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"windows file {windows_file}, {key}: expected [[start, end], ...] timestamps ({exc})") from exc
    return windows


def _window_rows(ts: np.ndarray, spans: list[tuple[float, float]]) -> list[tuple[int, int]]:
    rows = []
    for t0, t1 in spans:
        inside = np.nonzero((ts >= t0) & (ts <= t1))[0]
        if len(inside):
            rows.append((int(inside[0]), int(inside[-1])))
    return rows


def _read_csv(path: Path, columns: list[str]) -> tuple[list[str], list[list[str]]]:
    """The timestamp column and the other named columns of one CSV file, as text."""
    try:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            if header[:len(columns)] != columns:
                raise ConfigError(f"{path}: expected header {','.join(columns)}")
            rows = [row for row in reader if row]
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return [r[0] for r in rows], [r[1:len(columns)] for r in rows]


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def load_corpus(data_dir: Path, windows_file: Path) -> list[NabSeries]:
    """Every ``category/name.csv`` under ``data_dir`` with its windows (none if unlabelled)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"data directory {data_dir} does not exist")
    windows = _load_windows(windows_file)
    files = sorted(data_dir.glob("*/*.csv"))
    if not files:
        raise ConfigError(f"no category/name.csv files under {data_dir}")
    corpus = []
    for path in files:
        key = f"{path.parent.name}/{path.name}"
        stamps, rest = _read_csv(path, ["timestamp", "value"])
        try:
            ts = np.array([_parse_ts(s) for s in stamps], dtype=np.float64)
        except ValueError as exc:
            raise ConfigError(f"{path}: bad timestamp ({exc})") from exc
        values = np.array([_float(r[0]) if r else math.nan for r in rest], dtype=np.float64)
        corpus.append(NabSeries(key=key, timestamps=stamps, ts=ts, values=values,
                                windows=_window_rows(ts, windows.get(key, []))))
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


def load_results(results_dir: Path, windows_file: Path) -> tuple[list[str], list[np.ndarray], list[list[tuple[int, int]]]]:
    """A detector's results in NAB's layout (``<category>/<detector>_<name>.csv``), as scorer input.

    Returns the ``category/name.csv`` keys, each file's ``anomaly_score`` column and its windows as
    row indices, found from the file's own timestamps as NAB's scorer does.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ConfigError(f"results directory {results_dir} does not exist")
    windows = _load_windows(windows_file)
    prefix = f"{results_dir.name}_"
    keys, scores, rows = [], [], []
    for path in sorted(results_dir.glob("*/*.csv")):
        name = path.name[len(prefix):] if path.name.startswith(prefix) else path.name
        key = f"{path.parent.name}/{name}"
        stamps, rest = _read_csv(path, ["timestamp", "value", "anomaly_score"])
        try:
            ts = np.array([_parse_ts(s) for s in stamps], dtype=np.float64)
        except ValueError as exc:
            raise ConfigError(f"{path}: bad timestamp ({exc})") from exc
        keys.append(key)
        scores.append(np.array([_float(r[1]) for r in rest], dtype=np.float64))
        rows.append(_window_rows(ts, windows.get(key, [])))
    if not keys:
        raise ConfigError(f"no <category>/<detector>_<name>.csv results files under {results_dir}")
    return keys, scores, rows


def score_results(results_dir: Path, windows_file: Path) -> dict[str, ProfileResult]:
    """NAB's score of a results directory, per profile (one optimised threshold each)."""
    _, scores, rows = load_results(results_dir, windows_file)
    return {p.name: optimise_threshold(scores, rows, p) for p in PROFILES}


def counted_windows(n_rows: int, windows: list[tuple[int, int]]) -> int:
    """Windows with at least one row after probation (the only ones NAB scores)."""
    start = probation_rows(n_rows)
    return sum(1 for _, right in windows if right >= start)


def fixed_threshold(scores: list[np.ndarray], windows: list[list[tuple[int, int]]], profile: Profile,
                    threshold: float) -> ProfileResult:
    """The corpus score at a given threshold, normalised like ``optimise_threshold``'s."""
    n = sum(counted_windows(len(sc), w) for sc, w in zip(scores, windows))
    return ProfileResult(profile=profile.name, threshold=threshold,
                         raw=score_at_threshold(scores, windows, profile, threshold),
                         null=-profile.fn * n, perfect=profile.tp * n)


# -- the detectors `guardian-dev eval nab` can run -------------------------------------------------------

#: A client's normal produce rate that a series' probation level is mapped to (see ``client_rate``).
CLIENT_RATE = 1_000_000.0


def client_rate(values: np.ndarray) -> np.ndarray:
    """A NAB series as one client's produce byte rate, by one rule for every file.

    The mean of ``|value|`` over the rows NAB does not score (probation) becomes ``CLIENT_RATE``
    bytes/s; a series whose probation is all zero is left unscaled. Negative values clip to 0
    (a rate cannot be negative). Only the ratio tests of the fast tier then matter: its
    floor (10 kB/s) and minimum excess (100 kB/s) are small against 1 MB/s.
    """
    head = np.abs(values[:max(probation_rows(len(values)), 1)])
    level = float(np.nanmean(head)) if np.isfinite(head).any() else 0.0
    scale = CLIENT_RATE / level if level > 0 else 1.0
    return np.maximum(values, 0.0) * scale


def detect_pipeline(key: str, values: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """What ``guardian run`` does with the series: 1.0 at each row where a detection is emitted.

    A fresh ``DetectorPipeline`` (the default ``DetectorConfig``) per series; row ``i`` is the
    client's ``PRODUCE_BYTE_RATE`` sample at second ``i`` (the production cadence), value
    ``client_rate(values)[i]``. NAB's own timestamps only place the windows.
    """
    from guardian.detectors.pipeline import DetectorPipeline
    from guardian.model.samples import Metric, Sample, Workload

    t0 = 1_700_000_000.0
    pipeline = DetectorPipeline(clock=lambda: t0)
    workload = Workload(principal="User:nab", client_id=key.rsplit("/", 1)[-1].removesuffix(".csv"))
    out = np.zeros(len(values))
    for i, x in enumerate(client_rate(values).tolist()):
        if pipeline.process([Sample(ts=t0 + i, workload=workload, metric=Metric.PRODUCE_BYTE_RATE, value=x)]):
            out[i] = 1.0
    return out


@dataclass(frozen=True)
class NabDetector:
    """One detector ``guardian-dev eval nab`` runs: how, under which results name, and what it measures."""

    name: str
    results_name: str          # NAB's <detector> in results/<detector>/<category>/...
    detect: object             # (key, values, ts) -> anomaly score per row
    operating_threshold: float  # the threshold production applies
    measures: str


# The pattern-novelty detector that used to be scored here never ran in ``guardian run`` and was
# removed (docs/BENCHMARKS.md, "NAB": its cost and alert rate as a production tier).
DETECTORS: dict[str, NabDetector] = {
    "pipeline": NabDetector(
        "pipeline", "guardianPipeline", detect_pipeline, 0.5,
        "the production detector (DetectorPipeline, default DetectorConfig), one row per second"),
}
DEFAULT_DETECTOR = "pipeline"


def _detect(args: tuple[str, str, np.ndarray, np.ndarray]) -> np.ndarray:
    detector, key, values, ts = args
    return DETECTORS[detector].detect(key, values, ts)  # type: ignore[operator]


# -- held-out categories ------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeldOutFold:
    category: str
    setting: str          # chosen on the other categories
    threshold: float      # chosen on the other categories
    train: float          # normalised score on the other categories
    result: ProfileResult  # the held-out category at that setting and threshold


def held_out(corpus: list[NabSeries], scores: dict[str, list[np.ndarray]],
             profile: Profile) -> tuple[list[HeldOutFold], ProfileResult]:
    """Leave one category out: choose setting and threshold on the others, score the one left out.

    ``scores`` maps each setting's name to its per-file scores (aligned with ``corpus``). The
    overall figure sums the folds' raw, null and perfect scores, each fold at its own choice.
    """
    categories = sorted({s.category for s in corpus})
    folds = []
    for cat in categories:
        train = [i for i, s in enumerate(corpus) if s.category != cat]
        test = [i for i, s in enumerate(corpus) if s.category == cat]
        best: tuple[float, str, float] | None = None
        for name, per_file in scores.items():
            r = optimise_threshold([per_file[i] for i in train], [corpus[i].windows for i in train], profile)
            if best is None or r.normalised > best[0]:
                best = (r.normalised, name, r.threshold)
        assert best is not None
        train_score, name, threshold = best
        result = fixed_threshold([scores[name][i] for i in test], [corpus[i].windows for i in test],
                                 profile, threshold)
        folds.append(HeldOutFold(cat, name, threshold, train_score, result))
    overall = ProfileResult(profile.name, math.nan, sum(f.result.raw for f in folds),
                            sum(f.result.null for f in folds), sum(f.result.perfect for f in folds))
    return folds, overall


def per_category(corpus: list[NabSeries], scores: list[np.ndarray], profile: Profile,
                 threshold: float) -> dict[str, ProfileResult]:
    out = {}
    for cat in sorted({s.category for s in corpus}):
        idx = [i for i, s in enumerate(corpus) if s.category == cat]
        out[cat] = fixed_threshold([scores[i] for i in idx], [corpus[i].windows for i in idx], profile, threshold)
    return out


def _result_json(r: ProfileResult) -> dict[str, object]:
    # a category without windows (artificialNoAnomaly) has no normalised score, only its FP cost
    threshold = None if math.isnan(r.threshold) else r.threshold  # the held-out total has one per fold
    return {"threshold": threshold, "raw": round(r.raw, 4), "null": r.null, "perfect": r.perfect,
            "normalised": round(r.normalised, 2) if r.perfect != r.null else None}


def run_nab(data_dir: Path, windows_file: Path, out_dir: Path, detector: str = DEFAULT_DETECTOR,
            jobs: int = 1) -> dict[str, object]:
    """Run one detector over a NAB-layout corpus, write NAB's results layout, score it, write scores.json.

    The tuned figures are scored from the results files as written (NAB's method: one threshold
    per profile chosen on the whole corpus). The held-out figures choose the threshold on three
    categories and score the fourth. The operating point counts every detection, as production does.
    """
    spec = DETECTORS.get(detector)
    if spec is None:
        raise ConfigError(f"unknown detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    corpus = load_corpus(data_dir, windows_file)
    work = [(detector, s.key, s.values, s.ts) for s in corpus]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            scores = list(pool.map(_detect, work, chunksize=1))
    else:
        scores = [_detect(w) for w in work]
    out_dir = Path(out_dir)
    for series, sc in zip(corpus, scores):
        write_results(out_dir, spec.results_name, series, sc)
    tuned = score_results(out_dir / spec.results_name, windows_file)
    windows = [s.windows for s in corpus]

    report: dict[str, object] = {"detector": detector, "results": spec.results_name, "measures": spec.measures,
                                 "files": len(corpus), "windows": int(tuned["standard"].perfect)}
    for p in PROFILES:
        folds, overall = held_out(corpus, {"default": scores}, p)
        report[p.name] = {
            "tuned": _result_json(tuned[p.name]),
            "operating_point": _result_json(fixed_threshold(scores, windows, p, spec.operating_threshold)),
            "categories": {c: _result_json(r) for c, r in
                           per_category(corpus, scores, p, tuned[p.name].threshold).items()},
            "categories_operating_point": {c: _result_json(r) for c, r in
                                           per_category(corpus, scores, p, spec.operating_threshold).items()},
            "held_out": {"overall": _result_json(overall),
                         "folds": [{"category": f.category, "threshold": f.threshold, "train": round(f.train, 2),
                                    **_result_json(f.result)} for f in folds]},
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scores.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
