"""The ``guardian`` command line.

Each area keeps its commands in its own module; this file only wires them
together, importing lazily so ``guardian --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from guardian.errors import GuardianError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Kafka workload guardian: finds runaway clients and sequesters exactly them.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks; results go to docs/BENCHMARKS.md.")
eval_app = typer.Typer(no_args_is_help=True, help="Offline detector evaluation.")
app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")


def _register() -> None:
    from guardian.dev.cli import dev_app

    app.add_typer(dev_app, name="dev")

    from guardian.evaluation.cli import bench_detect_cmd, nab_cmd, replay_cmd, scenarios_cmd

    eval_app.command("nab")(nab_cmd)
    eval_app.command("scenarios")(scenarios_cmd)
    eval_app.command("replay")(replay_cmd)
    bench_app.command("detect")(bench_detect_cmd)
    from guardian.ingest.cli import bench_ingest_command, collect_app, run_command

    app.add_typer(collect_app, name="collect")
    from guardian.run import run_command as guardian_run_command

    app.command("run")(guardian_run_command)
    bench_app.command("ingest")(bench_ingest_command)
    from guardian.engine.cli import bench_act_command

    bench_app.command("act")(bench_act_command)
    app.command("demo")(demo)
    from guardian.api.cli import api as api_command, appeals_app, quarantines_app, tokens_app

    app.command("api")(api_command)
    app.add_typer(quarantines_app, name="quarantines")
    app.add_typer(appeals_app, name="appeals")
    app.add_typer(tokens_app, name="tokens")
    from guardian.telemetry_cli import telemetry_app

    app.add_typer(telemetry_app, name="telemetry")
    bench_app.command("plugin")(bench_plugin_command)
    bench_app.command("scale")(bench_scale_command)
    from guardian.drill.cli import bench_drill_command

    bench_app.command("drill")(bench_drill_command)
    from guardian.mcp.cli import mcp_command

    app.command("mcp")(mcp_command)


def bench_plugin_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
                         rounds: int = typer.Option(5, help="Alternating runs per mode."),
                         records: int = typer.Option(1_000_000, help="Records per ProducerPerformance run."),
                         subscribe: bool = typer.Option(True, help="Subscribe every client to KIP-714 pushes at 1 s.")
                         ) -> None:
    """Broker throughput with and without the broker plugin (ProducerPerformance)."""
    import json

    from bench.bench_plugin import run

    result = run(rounds=rounds, records=records, subscribe=subscribe, say=lambda m: typer.echo(m, err=True))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"plugin overhead: {result['overhead_pct']:.2f}% "
                   f"({result['median_records_per_s_on']:,.0f} vs {result['median_records_per_s_off']:,.0f} records/s)")


def bench_scale_command(
    clients: str = typer.Option("10000,50000", help="Client-id counts to measure, comma-separated."),
    brokers: int = typer.Option(3, help="Brokers every client is on, for the worker figures."),
    quarantines: int = typer.Option(1000, help="Active quarantines in the ledger for the engine and API figures (0: skip)."),
    real_broker: int = typer.Option(0, help="Also scrape a private local broker given this many client sensors."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Scrape and parse cost, detector memory, worker samples/s per core, ledger and API latency at scale."""
    import json

    from bench.bench_scale import run

    try:
        counts = [int(x) for x in clients.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"--clients takes comma-separated integers, not {clients!r}") from None
    result = run(counts, brokers=brokers, quarantines=quarantines, real_broker_clients=real_broker,
                 say=lambda m: typer.echo(m, err=True))
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


def demo(keep: bool = typer.Option(False, "--keep", help="Leave the guardian, Kafka and Redis running afterwards."),
         quick: bool = typer.Option(False, "--quick", help="Shorter phases (about 2 minutes)."),
         out: Path = typer.Option(Path("demo-report"), "--out", file_okay=False,
                                  help="Where the report (demo.md, timeline-on.png, drill.json) goes.")) -> None:
    """The main job end to end: local Kafka + Redis, the guardian, a runaway producer and consumer, live."""
    from guardian.demo import run_demo
    from guardian.drill.cli import interrupt_on_sigterm

    interrupt_on_sigterm()
    try:
        run_demo(say=typer.echo, quick=quick, keep=keep, out_dir=out)
    except KeyboardInterrupt:
        typer.echo("interrupted: clients and the guardian stopped", err=True)
        raise typer.Exit(130)


def main() -> None:
    _register()
    try:
        app()
    except GuardianError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
