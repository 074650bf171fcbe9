"""NAB scoring on tiny hand-computed cases.

Each expected value is derived by hand from the published rules (see the
comment on each case), not read back from the implementation.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from guardian.evaluation.nab import (PROFILES, Profile, load_corpus, optimise_threshold,
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
