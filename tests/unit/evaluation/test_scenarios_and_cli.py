"""Scenario replay and the eval CLI on small traces (the 24 h x 1,000 fleet is configs/scenarios/fleet)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from guardian_dev.cli import _register, app
from guardian.errors import ConfigError
from guardian_dev.evaluation.scenarios import Report, parse_scenario, run_scenario

SMALL_BENIGN = {
    "name": "small_benign", "duration_s": 3600, "seed": 5,
    "workloads": [
        {"id": "bursty", "tenant": "a", "count": 30,
         "metrics": {"produce_byte_rate": {"base": 1e6, "noise": 0.2, "diurnal": 0.5,
                                           "burst_per_h": 6, "burst_factor": 1.8, "burst_s": 20}}},
        {"id": "deploy", "tenant": "b", "count": 10,
         "metrics": {"produce_byte_rate": {"base": 2e6, "noise": 0.1}},
         "events": [{"at_s": 1800, "kind": "spike", "duration_s": 30, "factors": {"produce_byte_rate": 2.0}}]},
    ],
}

SMALL_RUNAWAYS = {
    "name": "small_runaways", "duration_s": 1800, "seed": 6,
    "workloads": [
        {"id": "peers", "tenant": "a", "count": 10, "metrics": {"produce_byte_rate": {"base": 1e6, "noise": 0.1}}},
        {"id": "step", "tenant": "b", "count": 2, "metrics": {"produce_byte_rate": {"base": 1e6, "noise": 0.1}},
         "events": [{"at_s": 1000, "factors": {"produce_byte_rate": 3}, "label": "runaway_producer"}]},
        {"id": "ramp", "tenant": "c", "count": 2, "metrics": {"produce_byte_rate": {"base": 1e6, "noise": 0.1}},
         "events": [{"at_s": 1000, "kind": "ramp", "over_s": 300, "factors": {"produce_byte_rate": 3},
                     "label": "runaway_producer"}]},
        {"id": "conn", "tenant": "d", "count": 1,
         "metrics": {"connection_creation_rate": {"base": 0.2, "noise": 0.0, "abs_noise": 0.3}},
         "events": [{"at_s": 1200, "adds": {"connection_creation_rate": 40}, "label": "connection_storm"}]},
    ],
}


def test_small_benign_fleet_has_no_false_detections() -> None:
    res = run_scenario(parse_scenario(SMALL_BENIGN))
    assert res.workloads == 40 and res.detections == 0


def test_runaways_are_found_in_time_with_their_signature() -> None:
    res = run_scenario(parse_scenario(SMALL_RUNAWAYS))
    s = Report([res]).summary()
    assert s["precision"] == 1.0 and s["recall"] == 1.0 and s["signature_accuracy"] == 1.0
    steps = [e.ttd_s for e in res.events if e.kind == "step" and e.label == "runaway_producer"]
    ramps = [e.ttd_after_full_s for e in res.events if e.kind == "ramp"]
    assert len(steps) == 2 and max(steps) <= 10
    assert len(ramps) == 2 and max(ramps) <= 60


def test_scoring_counts_a_detection_outside_any_label_as_false() -> None:
    # a 4x "benign" level shift without a label: whatever is detected on it is false
    sc = parse_scenario({"name": "unlabelled", "duration_s": 1200, "seed": 1, "workloads": [
        {"id": "x", "tenant": "a", "metrics": {"produce_byte_rate": {"base": 1e6, "noise": 0.05}},
         "events": [{"at_s": 900, "factors": {"produce_byte_rate": 4}}]}]})
    res = run_scenario(sc)
    assert res.detections == res.false_detections == 1
    assert Report([res]).summary()["precision"] == 0.0


def test_scenario_rejects_unknown_keys_and_metrics() -> None:
    bad = json.loads(json.dumps(SMALL_RUNAWAYS))
    bad["workloads"][1]["events"][0]["strength"] = 3
    with pytest.raises(ConfigError):
        parse_scenario(bad)
    bad = json.loads(json.dumps(SMALL_BENIGN))
    bad["workloads"][0]["metrics"] = {"no_such_metric": {"base": 1}}
    with pytest.raises(ConfigError):
        parse_scenario(bad)


def test_eval_scenarios_json_has_the_documented_keys(tmp_path) -> None:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SMALL_RUNAWAYS))
    _register()
    result = CliRunner().invoke(app, ["eval", "scenarios", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for key in ("precision", "recall", "ttd_p50_s", "ttd_p95_s", "false_detections_per_workload_day"):
        assert key in out
    assert out["recall"] == 1.0

