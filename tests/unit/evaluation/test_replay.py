"""`guardian-dev eval replay`: real shapes through the detectors and decide() against a simulated broker."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import guardian_dev.evaluation.replay as replay
from guardian_dev.cli import _register, app
from guardian.errors import ConfigError
from guardian_dev.evaluation.replay import (BrokerModel, Injection, ReplayReport, ReplaySeries, RunResult, Throttle,
                                        client_rates, erlang_c, load_corpus, per_1000_days, replay_run)
from guardian.policy.config import default_policy_path, load_policy


@pytest.fixture(scope="module")
def policies():
    return load_policy(default_policy_path())


def _steady(n: int, seed: int = 3) -> np.ndarray:
    return 50.0 + np.random.default_rng(seed).normal(0.0, 1.0, n)


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(replay).failed == 0


def test_an_8x_backfill_that_the_broker_can_take_is_watched_not_throttled(policies) -> None:
    values = _steady(1500)
    values[900:1200] *= 8.0          # a backfill: 8x for 5 minutes, part of the shape the broker is sized for
    r = replay_run(ReplaySeries("t/backfill.csv", values), policies)
    assert r.detections >= 1
    assert r.throttles == []
    assert "quarantined" not in r.decisions and "escalated" not in r.decisions
    assert r.decisions.get("watch", 0) >= 1 and r.watch_records == 1
    # the broker is sized so even the backfill's peak leaves the idle line uncrossed
    model = BrokerModel()
    idle, _, _, _ = model.signals(client_rates(values).max() + model.peers * model.peer_rate, r.capacity)
    assert idle > policies.global_.harm.pressure.idle_below


def test_the_broker_models_queue_time_is_the_p99_wait_for_one_of_its_handler_threads(policies) -> None:
    one = BrokerModel(handler_threads=1)
    _, _, total, queue = one.signals(50.0, 100.0)                # rho 0.5, one thread: M/M/1
    assert queue == pytest.approx(one.service_ms * np.log(50.0) / 0.5)
    assert 0 < queue < total
    model = BrokerModel()                                        # 8 threads: 6 % of requests wait at 50 %
    assert 0 < model.signals(50.0, 100.0)[3] < 1.0 and model.signals(0.0, 100.0)[3] == 0.0
    c, waits = model.handler_threads, erlang_c(model.handler_threads, 0.9)
    assert model.signals(90.0, 100.0)[3] == pytest.approx(model.service_ms * np.log(100 * waits) / (c * 0.1))
    floor = policies.global_.harm.pressure.queue_floor_ms
    assert model.signals(100.0 / model.headroom, 100.0)[3] < floor        # a benign peak: under the floor
    assert model.signals(500.0, 100.0)[3] > 10 * floor                    # overloaded (rho_max): 114 ms


def test_an_injected_10x_runaway_that_saturates_the_broker_is_throttled_quickly_and_relieves_it(policies) -> None:
    r = replay_run(ReplaySeries("t/steady.csv", _steady(1500)), policies,
                   injection=Injection("step 10x", 10.0, at=0.6, duration_s=120.0))
    x = r.injected
    assert x is not None and x.saturates and x.detected
    assert x.throttled and x.time_to_throttle_s is not None and x.time_to_throttle_s <= 15
    assert x.harm_reason == "pressure"
    assert len(r.throttles) == 1 and r.throttles[0].quota is not None
    # the quota caps the client from 1 s after the decision: handler idle comes back over the line
    assert x.idle_min < policies.global_.harm.pressure.idle_below < x.idle_after


def _run(key: str, seconds: int, throttles: list[Throttle], watches: int) -> RunResult:
    return RunResult(key=key, seconds=seconds, capacity=1.0, injection=None, detections=len(throttles) + watches,
                     decisions={}, throttles=throttles, watch_records=watches)


def _throttle(t: float, in_window: bool) -> Throttle:
    return Throttle(t=t, in_window=in_window, reason="r", harm_reason="extreme", harm_line="l", quota=1.0,
                    ratio=30.0, duration_s=30.0)


def test_the_report_counts_per_1000_workload_days_of_86400_replayed_seconds() -> None:
    assert per_1000_days(1, 86_400) == 1000.0
    assert per_1000_days(0, 86_400) == 0.0
    assert per_1000_days(3, 0) is None
    runs = [_run("a/one.csv", 86_400, [_throttle(10, False), _throttle(20, True)], 3),
            _run("a/two.csv", 3 * 86_400, [_throttle(5, False)], 1)]
    s = ReplayReport(model=BrokerModel(), injections=(), benign=runs, injected=[]).summary()
    b = s["benign"]
    assert s["workload_days"] == 4.0
    assert (b["throttles"], b["throttles_outside_windows"], b["throttles_inside_windows"]) == (3, 2, 1)
    assert b["throttles_per_1000_workload_days"] == 750.0
    assert b["throttles_outside_windows_per_1000_workload_days"] == 500.0
    assert b["throttles_inside_windows_per_1000_workload_days"] == 250.0
    assert b["watch_records"] == 4 and b["watch_records_per_1000_workload_days"] == 1000.0


def _corpus(tmp_path: Path, text: str) -> Path:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "cat" / "bad.csv").write_text(text)
    return tmp_path / "data"


def test_a_malformed_file_is_a_config_error_naming_its_line(tmp_path: Path) -> None:
    data = _corpus(tmp_path, "timestamp,value\n2015-01-01 00:00:00,1.0\n2015-01-01 00:05:00,abc\n")
    with pytest.raises(ConfigError, match=r"bad\.csv: line 3: value 'abc'"):
        load_corpus(data)
    with pytest.raises(ConfigError, match="does not exist"):
        load_corpus(tmp_path / "missing")


def test_the_cli_exits_non_zero_with_a_message_and_no_traceback(tmp_path: Path) -> None:
    _register()
    data = _corpus(tmp_path, "time,value\n2015-01-01 00:00:00,1.0\n")
    for args in (["eval", "replay", str(data)], ["eval", "replay", str(tmp_path / "missing")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2
        assert "error:" in result.output and "Traceback" not in result.output
