"""The drill's topology options: extra guardian workers and the number of brokers, as a user sets them."""

from __future__ import annotations

from pathlib import Path

import typer.main
from typer.testing import CliRunner

from guardian_dev.drill.runner import GuardianProc, extra_worker


def main_proc(tmp_path: Path) -> GuardianProc:
    env = {"GUARDIAN_INGEST__APP_ID": "drill-abc", "GUARDIAN_INGEST__METRICS_PORT": "9001",
           "GUARDIAN_API__PORT": "9002", "GUARDIAN_REDIS__PREFIX": "drill-abc:", "KAFKA_BOOTSTRAP_SERVERS": "x:1"}
    return GuardianProc(env=env, log_path=tmp_path / "guardian-on.log", api_url="http://127.0.0.1:9002",
                        metrics_url="http://127.0.0.1:9001/metrics", prefix="drill-abc:",
                        detections_topic="drill-abc.detections")


def test_an_extra_worker_shares_the_app_topics_and_ledger_but_not_the_ports(tmp_path):
    main = main_proc(tmp_path)
    w = extra_worker(main, 2)
    assert w.extra_worker and not main.extra_worker
    for key in ("GUARDIAN_INGEST__APP_ID", "GUARDIAN_REDIS__PREFIX", "KAFKA_BOOTSTRAP_SERVERS"):
        assert w.env[key] == main.env[key]   # one consumer group, one ledger: the same guardian
    assert w.env["GUARDIAN_INGEST__METRICS_PORT"] != main.env["GUARDIAN_INGEST__METRICS_PORT"]
    assert w.metrics_url.endswith(f":{w.env['GUARDIAN_INGEST__METRICS_PORT']}/metrics")
    assert w.log_path == tmp_path / "guardian-on-worker2.log"
    assert w.prefix == main.prefix and w.detections_topic == main.detections_topic


def test_the_drill_command_takes_brokers_and_workers_and_refuses_nonsense(tmp_path):
    from guardian_dev.cli import _register, app

    _register()
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: x\n")
    group = typer.main.get_command(app)
    drill = group.commands["bench"].commands["drill"]
    params = drill.make_context("drill", ["--scenario", str(scenario), "--out", str(tmp_path / "o"),
                                          "--brokers", "3", "--workers", "2"]).params
    assert params["brokers"] == 3 and params["workers"] == 2
    res = CliRunner().invoke(app, ["bench", "drill", "--scenario", str(scenario), "--out", str(tmp_path / "o"),
                                   "--workers", "0"])
    assert res.exit_code == 2 and "workers" in res.output
