"""`guardian-dev eval nab`: the production pipeline as a NAB detector, held-out categories, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from guardian_dev.cli import _register, app
from guardian_dev.evaluation.nab import (CLIENT_RATE, PROFILES, NabSeries, client_rate, detect_pipeline,
                                     held_out, probation_rows)

STANDARD = PROFILES[0]


def _stamps(n: int) -> list[str]:
    return [f"2020-01-{1 + i // 288:02d} {(i % 288) * 5 // 60:02d}:{(i % 288) * 5 % 60:02d}:00" for i in range(n)]


def _write_jump(root, n: int = 1200) -> tuple:
    rng = np.random.default_rng(3)
    data = root / "data" / "synthetic"
    data.mkdir(parents=True)
    values = 10 + rng.normal(0, 1, n)
    values[900:] += 30
    stamps = _stamps(n)
    (data / "jump.csv").write_text("timestamp,value\n" + "\n".join(f"{s},{v}" for s, v in zip(stamps, values)))
    windows = {"synthetic/jump.csv": [[stamps[860] + ".000000", stamps[940] + ".000000"]]}
    (root / "windows.json").write_text(json.dumps(windows))
    return root / "data", root / "windows.json"


def test_client_rate_maps_the_probation_level_to_one_client_rate() -> None:
    values = np.r_[np.full(150, 4.0), np.full(850, 12.0), [-3.0]]
    rate = client_rate(values)
    assert probation_rows(len(values)) == 150
    assert rate[0] == pytest.approx(CLIENT_RATE)
    assert rate[500] == pytest.approx(3 * CLIENT_RATE)   # the ratio to its own normal is kept
    assert rate[-1] == 0.0                                # a rate is never negative
    assert np.array_equal(client_rate(np.zeros(10)), np.zeros(10))


def test_pipeline_fires_once_a_few_rows_after_a_4x_step_and_not_before() -> None:
    rng = np.random.default_rng(1)
    values = 10 + rng.normal(0, 0.5, 2000)
    values[1500:] *= 4
    scores = detect_pipeline("cat/step.csv", values, np.arange(2000.0) * 300)
    fired = np.nonzero(scores)[0]
    assert len(fired) == 1 and 1500 < fired[0] <= 1510, fired


def test_pipeline_does_not_see_a_drop() -> None:
    # the production detector looks for runaways: a fall to a quarter of normal is not one
    values = np.r_[np.full(1500, 10.0), np.full(500, 2.5)]
    assert not detect_pipeline("cat/drop.csv", values, np.arange(2000.0)).any()


def _series(key: str, n: int, window: tuple[int, int] | None) -> NabSeries:
    return NabSeries(key=key, timestamps=[], ts=np.arange(float(n)), values=np.zeros(n),
                     windows=[window] if window else [])


def test_held_out_chooses_on_the_other_categories_and_scores_the_one_left_out() -> None:
    # A and B have a window at rows 10..14 that only setting "s" finds at its left edge; "n" never
    # fires. C has no window, and "s" fires there once (cost 0.11 before any window).
    corpus = [_series("A/a.csv", 20, (10, 14)), _series("B/b.csv", 20, (10, 14)), _series("C/c.csv", 20, None)]
    hit = np.zeros(20)
    hit[10] = 1.0
    fp = np.zeros(20)
    fp[5] = 1.0
    scores = {"n": [np.zeros(20)] * 3, "s": [hit, hit, fp]}
    folds, overall = held_out(corpus, scores, STANDARD)
    by_cat = {f.category: f for f in folds}
    # leaving A out: on B + C "s" earns 1 - 0.11 against null -1, so "s" is chosen and A scores 100
    assert by_cat["A"].setting == "s" and by_cat["A"].result.normalised == pytest.approx(100.0)
    assert by_cat["C"].setting == "s" and by_cat["C"].result.raw == pytest.approx(-0.11)
    # overall: raw 1 + 1 - 0.11, null -2, perfect 2
    assert overall.normalised == pytest.approx(100 * (1.89 + 2) / 4)


def test_eval_nab_default_is_the_pipeline_and_writes_nab_layout(tmp_path) -> None:
    data, windows = _write_jump(tmp_path)
    _register()
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "nab", str(data), "--windows", str(windows), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "scores.json").read_text())
    assert report["detector"] == "pipeline"
    for p in PROFILES:
        entry = report[p.name]
        assert {"tuned", "operating_point", "categories", "categories_operating_point", "held_out"} <= set(entry)
    assert report["standard"]["operating_point"]["normalised"] > 50   # the jump is found early in its window
    lines = (out / "guardianPipeline" / "synthetic" / "guardianPipeline_jump.csv").read_text().splitlines()
    assert lines[0] == "timestamp,value,anomaly_score,label" and len(lines) == 1201
    assert sum(float(line.split(",")[2]) for line in lines[1:]) == 1.0      # one detection, as an onset


@pytest.mark.parametrize("case, message", [
    ("missing_dir", "does not exist"),
    ("bad_windows", "cannot read windows file"),
    ("windows_not_pairs", "expected [[start, end], ...]"),
    ("unknown_detector", "unknown detector"),
])
def test_eval_nab_errors_are_clear_and_exit_non_zero(tmp_path, case, message) -> None:
    data, windows = _write_jump(tmp_path)
    args = ["eval", "nab", str(data), "--windows", str(windows), "--out", str(tmp_path / "out")]
    if case == "missing_dir":
        args[2] = str(tmp_path / "nope")
    elif case == "bad_windows":
        windows.write_text("{not json")
    elif case == "windows_not_pairs":
        windows.write_text(json.dumps({"synthetic/jump.csv": ["2020-01-01 00:00:00"]}))
    else:
        args += ["--detector", "novelty"]   # removed: it never ran in production
    _register()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
