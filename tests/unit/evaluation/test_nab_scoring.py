"""NAB scoring on tiny hand-computed cases.

Each expected value is derived by hand from the published rules (see the
comment on each case), not read back from the implementation.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from guardian_dev.evaluation.nab import (PROFILES, Profile, load_corpus, optimise_threshold, score_results,
                                     probation_rows, scaled_sigmoid, score_at_threshold,
                                     write_results)

STANDARD = Profile("standard", tp=1.0, fp=0.11, fn=1.0)
S_LEFT = 2 / (1 + math.exp(-5)) - 1          # s(-1) = 0.98661...


def scores_with(n: int, hits: dict[int, float]) -> np.ndarray:
    sc = np.zeros(n)
    for i, v in hits.items():
        sc[i] = v
    return sc


def test_probation_is_15_percent_capped_at_750() -> None:
    assert probation_rows(20) == 3            # floor(0.15 * 20)
    assert probation_rows(4033) == 604        # floor(604.95)
    assert probation_rows(10_000) == 750      # 0.15 * 5000


def test_scaled_sigmoid_matches_the_formula_and_is_minus_one_far_away() -> None:
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(-1.0) == pytest.approx(S_LEFT)
    assert scaled_sigmoid(3.5) == -1.0


def test_detection_at_left_edge_earns_a_full_true_positive() -> None:
    # n=20, window rows 10..14; a detection at row 10 sits at y = -5/5 = -1.
    raw = score_at_threshold([scores_with(20, {10: 1.0})], [[(10, 14)]], STANDARD, 0.5)
    assert raw == pytest.approx(1.0)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    # rows 12 and 13 both fire; row 12 is at y = -(14 - 12 + 1) / 5 = -0.6.
    expected = (2 / (1 + math.exp(-3)) - 1) / S_LEFT
    raw = score_at_threshold([scores_with(20, {12: 1.0, 13: 1.0})], [[(10, 14)]], STANDARD, 0.5)
    assert raw == pytest.approx(expected)


def test_missed_window_costs_a_false_negative_and_probation_rows_are_ignored() -> None:
    # row 1 is inside probation (3 rows) so it is not a false positive; the window is missed.
    raw = score_at_threshold([scores_with(20, {1: 1.0})], [[(10, 14)]], STANDARD, 0.5)
    assert raw == pytest.approx(-1.0)


def test_false_positive_before_any_window_costs_a_fp() -> None:
    # row 5: no preceding window -> -A_FP; the window at 10..14 is also missed -> -A_FN.
    raw = score_at_threshold([scores_with(20, {5: 1.0})], [[(10, 14)]], STANDARD, 0.5)
    assert raw == pytest.approx(-0.11 - 1.0)


def test_false_positive_after_a_window_is_weighted_by_distance() -> None:
    # row 17 after window 10..14: d = |14 - 17| / (5 - 1) = 0.75; cost = 0.11 * s(0.75).
    s = 2 / (1 + math.exp(3.75)) - 1
    raw = score_at_threshold([scores_with(20, {10: 1.0, 17: 1.0})], [[(10, 14)]], STANDARD, 0.5)
    assert raw == pytest.approx(1.0 + 0.11 * s)


def test_threshold_sweep_drops_a_low_false_positive_and_normalises() -> None:
    # file A: TP at its left edge with score 0.9; file B: an FP (no window) with score 0.4.
    # Best threshold is 0.9: raw = 1, null = -1, perfect = 1 -> 100.
    a = scores_with(20, {10: 0.9})
    b = scores_with(20, {8: 0.4})
    res = optimise_threshold([a, b], [[(10, 14)], []], STANDARD)
    assert res.threshold == pytest.approx(0.9)
    assert res.raw == pytest.approx(1.0)
    assert (res.null, res.perfect) == (-1.0, 1.0)
    assert res.normalised == pytest.approx(100.0)


def test_threshold_sweep_accepts_a_cheap_fp_to_reach_a_window() -> None:
    # file A window only reached at score 0.3 (left edge), file B FP at 0.5 costs 0.11.
    # Thresholds: 0.5 -> -1 - 0.11; 0.3 -> 1 - 0.11 = 0.89 (best); normalised = 100 * 1.89 / 2.
    a = scores_with(20, {10: 0.3})
    b = scores_with(20, {8: 0.5})
    res = optimise_threshold([a, b], [[(10, 14)], []], STANDARD)
    assert res.threshold == pytest.approx(0.3)
    assert res.normalised == pytest.approx(94.5)


def test_null_detector_scores_zero_in_every_profile() -> None:
    # A constant score could be swept at threshold 0 (every row fires): with 70 scored
    # rows before the window that costs far more than the window earns, so null wins.
    for profile in PROFILES:
        res = optimise_threshold([np.zeros(200)], [[(100, 104)]], profile)
        assert res.normalised == pytest.approx(0.0)


def test_reward_low_fn_profile_doubles_the_miss_cost() -> None:
    low_fn = next(p for p in PROFILES if p.name == "reward_low_FN_rate")
    raw = score_at_threshold([np.zeros(20)], [[(10, 14)]], low_fn, 0.5)
    assert raw == pytest.approx(-2.0)


def test_corpus_load_and_results_layout(tmp_path) -> None:
    data = tmp_path / "data" / "catA"
    data.mkdir(parents=True)
    rows = [f"2020-01-01 00:{m:02d}:00,{float(m)}" for m in range(20)]
    (data / "s1.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    windows = {"catA/s1.csv": [["2020-01-01 00:10:00.000000", "2020-01-01 00:14:00.000000"]]}
    (tmp_path / "w.json").write_text(json.dumps(windows))
    [series] = load_corpus(tmp_path / "data", tmp_path / "w.json")
    assert series.windows == [(10, 14)]
    path = write_results(tmp_path / "out", "det", series, scores_with(20, {10: 1.0}))
    assert path == tmp_path / "out" / "det" / "catA" / "det_s1.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp,value,anomaly_score,label"
    assert lines[11] == "2020-01-01 00:10:00,10.0,1.000000,1"


# -- results files scored by hand ------------------------------------------------------------------
# Two categories, 40 rows each at 1-minute steps, so probation = floor(0.15 * 40) = 6 rows.
# File a.csv: window rows 20..29 (width 10). Scores: row 3 0.9 (in probation: ignored), row 10 0.8
# (before any window), row 22 0.7 (y = -(29 - 22 + 1) / 10 = -0.8), row 25 0.9 (y = -0.5), row 33 0.6
# (past the window by d = |29 - 33| / (10 - 1) = 4/9).
# File b.csv: window rows 30..39, one score at row 35 0.5 (y = -0.5).
# File d.csv (no windows): rows 10..21 at 0.6, each -A_FP (no preceding window).
#
# s(-1) = 0.986614, s(-0.8) = 0.964028, s(-0.5) = 0.848284, s(4/9) = -0.804452, so a TP at y=-0.8
# earns 0.977108, at y=-0.5 0.859791; the FP after the window costs 0.11 * 0.804452 = 0.088490.
#
# Corpus {a, b}, standard: thresholds 0.9 -> 0.859791 - 1 = -0.140209; 0.8 -> -0.250209;
#   0.7 -> 0.977108 - 0.11 - 1 = -0.132892; 0.6 -> -0.221382;
#   0.5 -> 0.977108 - 0.11 - 0.088490 + 0.859791 = 1.638409 (best). null -2, perfect 2: 90.96.
#   low FP (A_FP 0.22) at 0.5: 0.977108 - 0.22 - 0.176980 + 0.859791 = 1.439919 -> 86.00.
#   low FN (A_FN 2) at 0.5: 1.638409, null -4, perfect 2 -> 100 * 5.638409 / 6 = 93.97.
# Corpus {a, d}, standard: 0.9 -> 0.859791; 0.8 -> 0.749791; 0.7 -> 0.867108 (best);
#   0.6 -> 0.867108 - 0.088490 - 12 * 0.11 = -0.541382. null -1, perfect 1: 93.36.
#   low FP: 0.9 -> 0.859791 (best; 0.7 -> 0.757108) -> 92.99.  low FN: 0.7, null -2 -> 95.57.
HAND = {
    ("a", "b"): {"standard": (90.96, 0.5), "reward_low_FP_rate": (86.00, 0.5), "reward_low_FN_rate": (93.97, 0.5)},
    ("a", "d"): {"standard": (93.36, 0.7), "reward_low_FP_rate": (92.99, 0.9), "reward_low_FN_rate": (95.57, 0.7)},
}
FILES = {
    "a": ("catA", {3: 0.9, 10: 0.8, 22: 0.7, 25: 0.9, 33: 0.6}, (20, 29)),
    "b": ("catB", {35: 0.5}, (30, 39)),
    "d": ("catB", {i: 0.6 for i in range(10, 22)}, None),
}


def _stamp(i: int) -> str:
    return f"2020-01-01 00:{i:02d}:00"


def _write_hand_results(root, names) -> tuple:
    det = root / "handDetector"
    windows = {}
    for name in names:
        cat, hits, window = FILES[name]
        (det / cat).mkdir(parents=True, exist_ok=True)
        rows = [f"{_stamp(i)},1.0,{hits.get(i, 0.0):.6f},0" for i in range(40)]
        (det / cat / f"handDetector_{name}.csv").write_text(
            "timestamp,value,anomaly_score,label\n" + "\n".join(rows) + "\n")
        windows[f"{cat}/{name}.csv"] = [[_stamp(window[0]) + ".000000", _stamp(window[1]) + ".000000"]] if window else []
    (root / "windows.json").write_text(json.dumps(windows))
    return det, root / "windows.json"


@pytest.mark.parametrize("names", sorted(HAND))
def test_results_files_score_as_computed_by_hand(tmp_path, names) -> None:
    det, windows = _write_hand_results(tmp_path, names)
    results = score_results(det, windows)
    for profile, (expected, threshold) in HAND[names].items():
        assert abs(results[profile].normalised - expected) < 0.1, (profile, results[profile])
        assert results[profile].threshold == pytest.approx(threshold)
