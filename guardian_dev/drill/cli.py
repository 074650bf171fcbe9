"""``guardian-dev bench drill``: run a scenario with the guardian off, then on, and report."""

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


def drill_stack(scenario: Any, say: Callable[[str], None], brokers: int = 1, controllers: int = 0) -> Any:
    """The stack a scenario runs on (``brokers``: local nodes, each with the scenario's capacity;
    ``controllers``: dedicated KRaft controllers beside them, 0 for combined nodes).

    Without ``broker:`` it is the usual one (KAFKA_BOOTSTRAP_SERVERS, else `guardian-dev up`'s).
    With it, the drill's own local broker and Redis under ``<home>/run-drill`` (free ports, so the
    dev broker others may be using is never restarted), started with the stated capacity and
    restarted when it runs with another one. Like `guardian-dev up` it is left running (a warm
    broker for the next drill; a just-started JVM would stall the first incident's baseline);
    `guardian-dev down` stops it too.
    """
    from guardian_dev.stack import DRILL_RUN_DIR, DevStack
    from guardian.settings import GuardianSettings

    dev = GuardianSettings().dev
    if scenario.broker is None:
        return DevStack(dev, brokers=brokers, controllers=controllers)
    b = scenario.broker
    dev = dev.model_copy(update={**b.dev_settings(), "kafka_port": 0, "kafka_sasl_port": 0,
                                 "kafka_controller_port": 0, "kafka_metrics_port": 0, "redis_port": 0})
    stack = DevStack(dev, run_dir=dev.home / DRILL_RUN_DIR, use_environment=False, use_docker=False,
                     brokers=brokers, controllers=controllers)
    st = stack.kafka.state()
    wanted = stack.kafka.capacity
    if stack.kafka.is_running() and st is not None and st.capacity != vars(wanted):
        say(f"  the drill's broker(s) run with {st.capacity}; restarting with {vars(wanted)}")
        stack.kafka.stop()
    if st is not None and (st.brokers, len(st.controllers)) != (brokers, controllers):
        # another quorum is recorded in the cluster's metadata log: the drill's own data goes
        say(f"  the drill's cluster had {st.brokers} broker(s) and {len(st.controllers)} dedicated controller(s); "
            f"starting over with {brokers} and {controllers}")
        stack.kafka.destroy()
    quorum = f", {controllers} dedicated controller(s)" if controllers else ""
    say(f"  the drill's own {'broker' if brokers == 1 else f'{brokers} brokers'}{quorum} ({stack.run_dir}): "
        f"{vars(wanted)}")
    return stack


def broker_record(ep: Any, scenario: Any, brokers: int = 1, workers: int = 1, controllers: int = 0) -> dict[str, Any]:
    """The capacity and topology the drill ran with, for the report (a cluster named in the environment:
    capacity unknown)."""
    return {"provider": ep.kafka_provider, "bootstrap": ep.kafka_bootstrap_servers,
            "capacity": dict(ep.kafka_capacity) or None,
            "stated_by_scenario": scenario.broker is not None, "brokers": brokers, "workers": workers,
            "controllers": controllers}


def run_drill(scenario_path: Path, out_dir: Path, modes: tuple[str, ...] = ("off", "on"),
              say: Callable[[str], None] = print, command: str = "", brokers: int = 1,
              workers: int = 1, controllers: int = 0) -> dict[str, Any]:
    """Both runs on the same broker(s) (the scenario's own, the embedded default or
    KAFKA_BOOTSTRAP_SERVERS), with ``workers`` guardian processes when on, then the report."""
    from guardian_dev.drill.scenario import load_scenario

    scenario = load_scenario(scenario_path)
    ep = drill_stack(scenario, say, brokers=brokers, controllers=controllers).up(progress=lambda m: say(f"  {m}"))
    return _run_on(ep, scenario, out_dir, modes, say, command, brokers=brokers, workers=workers,
                   controllers=controllers)


def _run_on(ep: Any, scenario: Any, out_dir: Path, modes: tuple[str, ...], say: Callable[[str], None],
            command: str, brokers: int = 1, workers: int = 1, controllers: int = 0) -> dict[str, Any]:
    from guardian_dev.drill.report import summarize, write_report
    from guardian_dev.drill.runner import leftover_quotas, probe_latency, run_once, settle_broker, warm_broker
    from guardian.errors import SetupError

    missing = [t.name for t in scenario.tenants if t.name not in ep.tenants]
    if missing:
        raise typer.BadParameter(f"the broker has no credentials for tenants {missing}; it knows {sorted(ep.tenants)}")
    runs: dict[str, Any] = {"off": None, "on": None}
    at_start = machine(command)["loadavg"]
    warm_broker(ep.kafka_bootstrap_servers)
    stale = leftover_quotas(ep.kafka_bootstrap_servers, [t.name for t in scenario.tenants])
    if stale:
        raise SetupError(f"tenants already carry user-level quotas {stale} (left by a run that did not "
                         "finish?); remove them first: kafka-configs.sh --bootstrap-server <admin listener> "
                         "--alter --entity-type users --entity-name <tenant> --delete-config <key>")
    normal = probe_latency(ep.kafka_bootstrap_servers) if len(modes) > 1 else 0.0   # for the settle step
    waits: list[str] = []
    for i, mode in enumerate(modes):
        if i:
            waited = settle_broker(ep.kafka_bootstrap_servers, normal, say=say)
            if waited >= 1.0:
                waits.append(f"waited {waited:.0f}s for the broker to settle (probe latency back near its "
                             f"{normal * 1000:.1f} ms) before the {mode} run")
                say(f"  {waits[-1]}")
        runs[mode] = run_once(scenario, ep, mode, out_dir / mode, say=say, workers=workers)
    res = summarize(runs["off"], runs["on"], {**machine(command), "loadavg_at_start": at_start})
    if waits:
        res.setdefault("notes", []).extend(waits)
    res["broker"] = broker_record(ep, scenario, brokers, workers, controllers)
    files = write_report(res, runs, out_dir)
    say(f"report: {files['markdown']} ({', '.join(str(p) for p in files.values())})")
    return res


def rescore_drill(out_dir: Path) -> dict[str, Any]:
    """The report of a finished drill computed again from its saved runs; machine and broker as recorded."""
    from guardian_dev.drill.report import RAW, load_run, summarize, write_report

    runs = {m: load_run(out_dir / m / RAW) if (out_dir / m / RAW).exists() else None for m in ("off", "on")}
    if not any(runs.values()):
        raise typer.BadParameter(f"{out_dir} holds no saved run ({'/'.join(('off', 'on'))}/{RAW}); "
                                 "drills save them since 2026-12-06")
    old = json.loads((out_dir / "drill.json").read_text()) if (out_dir / "drill.json").exists() else {}
    res = summarize(runs["off"], runs["on"], old.get("machine"))
    if "broker" in old:
        res["broker"] = old["broker"]
    write_report(res, runs, out_dir)
    return res


def bench_drill_command(
    scenario: Path | None = typer.Option(None, "--scenario", exists=True, dir_okay=False,
                                  help="Scenario YAML (configs/scenarios/drill-*.yaml)."),
    out: Path = typer.Option(..., "--out", file_okay=False, help="Directory for drill.json, drill.md and PNGs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the headline figures."),
    only: str = typer.Option("off,on", help="Which runs: off,on (default), off or on."),
    brokers: int = typer.Option(1, min=1, help="Local brokers (the drill's own cluster or `guardian-dev up`'s)."),
    controllers: int = typer.Option(0, min=0, max=3, help="Dedicated KRaft controllers beside the brokers "
                                                          "(0: the brokers are combined broker+controller nodes)."),
    rescore: bool = typer.Option(False, "--rescore", help="Compute --out's report again from the runs it saved "
                                                         "(<mode>/run.json.gz), with this version's report code."),
    workers: int = typer.Option(1, min=1, max=8, help="`guardian run` processes sharing the stream processors "
                                                      "(the first also collects and serves the API)."),
) -> None:
    """Incident drill: the scenario with the guardian off and on; time to act, benign latency, false actions."""
    from guardian_dev.drill.report import headline

    if rescore:
        res = rescore_drill(out)
        typer.echo(json.dumps(headline(res)) if as_json else f"report: {out / 'drill.md'}")
        return
    if scenario is None:
        raise typer.BadParameter("--scenario is needed (or --rescore)")
    modes = tuple(m for m in only.split(",") if m)
    if not set(modes) <= {"off", "on"} or not modes:
        raise typer.BadParameter("--only takes off, on or off,on")
    say = (lambda m: typer.echo(m, err=True))
    interrupt_on_sigterm()
    res = run_drill(scenario, out, modes, say=say, command=" ".join(["guardian-dev"] + sys.argv[1:]),
                    brokers=brokers, workers=workers, controllers=controllers)
    if as_json:
        typer.echo(json.dumps(headline(res)))
    else:
        typer.echo(json.dumps({k: v for k, v in res.items() if k not in ("on", "off")}, indent=2))
