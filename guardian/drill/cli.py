"""``guardian bench drill``: run a scenario with the guardian off, then on, and report."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import typer


def interrupt_on_sigterm() -> None:
    """SIGTERM stops a drill like Ctrl-C: clients, perf tools and the guardian are stopped in ``finally``."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def machine(command: str) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpus": os.cpu_count(), "loadavg": [round(x, 1) for x in load], "command": command}


def run_drill(scenario_path: Path, out_dir: Path, modes: tuple[str, ...] = ("off", "on"),
              say: Callable[[str], None] = print, command: str = "") -> dict[str, Any]:
    """Both runs on the same broker (the embedded default or KAFKA_BOOTSTRAP_SERVERS), then the report."""
    from guardian.dev.stack import DevStack
    from guardian.drill.report import summarize, write_report
    from guardian.drill.runner import leftover_quotas, run_once, warm_broker
    from guardian.drill.scenario import load_scenario
    from guardian.errors import SetupError
    from guardian.settings import GuardianSettings

    scenario = load_scenario(scenario_path)
    ep = DevStack(GuardianSettings().dev).up(progress=lambda m: say(f"  {m}"))
    missing = [t.name for t in scenario.tenants if t.name not in ep.tenants]
    if missing:
        raise typer.BadParameter(f"the broker has no credentials for tenants {missing}; it knows {sorted(ep.tenants)}")
    runs: dict[str, Any] = {"off": None, "on": None}
    warm_broker(ep.kafka_bootstrap_servers)
    stale = leftover_quotas(ep.kafka_bootstrap_servers, [t.name for t in scenario.tenants])
    if stale:
        raise SetupError(f"tenants already carry user-level quotas {stale} (left by a run that did not "
                         "finish?); remove them first: kafka-configs.sh --bootstrap-server <admin listener> "
                         "--alter --entity-type users --entity-name <tenant> --delete-config <key>")
    for mode in modes:
        runs[mode] = run_once(scenario, ep, mode, out_dir / mode, say=say)
    start = machine(command)
    res = summarize(runs["off"], runs["on"], start)
    files = write_report(res, runs, out_dir)
    say(f"report: {files['markdown']} ({', '.join(str(p) for p in files.values())})")
    return res


def bench_drill_command(
    scenario: Path = typer.Option(..., "--scenario", exists=True, dir_okay=False,
                                  help="Scenario YAML (configs/scenarios/drill-*.yaml)."),
    out: Path = typer.Option(..., "--out", file_okay=False, help="Directory for drill.json, drill.md and PNGs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the headline figures."),
    only: str = typer.Option("off,on", help="Which runs: off,on (default), off or on."),
) -> None:
    """Incident drill: the scenario with the guardian off and on; time to act, benign latency, false actions."""
    from guardian.drill.report import headline

    modes = tuple(m for m in only.split(",") if m)
    if not set(modes) <= {"off", "on"} or not modes:
        raise typer.BadParameter("--only takes off, on or off,on")
    say = (lambda m: typer.echo(m, err=True))
    interrupt_on_sigterm()
    res = run_drill(scenario, out, modes, say=say, command=" ".join(["guardian"] + sys.argv[1:]))
    if as_json:
        typer.echo(json.dumps(headline(res)))
    else:
        typer.echo(json.dumps({k: v for k, v in res.items() if k not in ("on", "off")}, indent=2))
