"""``guardian-dev bench act|ingest|plugin|scale``: the benchmarks behind docs/BENCHMARKS.md.

``bench detect`` lives with the evaluation (``guardian_dev.evaluation.cli``) and
``bench drill`` with the drill (``guardian_dev.drill.cli``).
"""

from __future__ import annotations

import json

import typer


def bench_act_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    rounds: int = typer.Option(30, min=1, help="Detections timed (one warm-up round is extra)."),
) -> None:
    """Time from a detection handed to the engine to an applied and verified throttle (p50, p95)."""
    from bench.bench_act import run

    result = run(rounds=rounds, say=(lambda m: None) if as_json else typer.echo)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


def bench_ingest_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    batch: int = typer.Option(500, help="Samples per batch (one workload's)."),
    samples: int = typer.Option(1_000_000, help="Samples through Kafka."),
    pack: bool = typer.Option(False, "--pack", help="Pack a tenant's batches into records as the collectors do "
                                                    "(up to 1,000 samples a record); without it, a batch a record."),
) -> None:
    """Decode+route throughput in process and through the local broker (docs/BENCHMARKS.md)."""
    from bench.bench_ingest import run_all

    result = run_all(batch=batch, kafka_samples=samples, say=(lambda m: None) if as_json else typer.echo, pack=pack)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


def bench_plugin_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
                         rounds: int = typer.Option(5, help="Alternating runs per mode."),
                         records: int = typer.Option(1_000_000, help="Records per ProducerPerformance run."),
                         subscribe: bool = typer.Option(True, help="Subscribe every client to KIP-714 pushes at 1 s.")
                         ) -> None:
    """Broker throughput with and without the broker plugin (ProducerPerformance)."""
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
    view: bool = typer.Option(True, "--view/--no-view",
                              help="Measure the shared cluster view (publish and engine read, real Redis) at each count."),
    through_kafka: int = typer.Option(0, help="Also run this many clients' scrapes through the local broker "
                                              "to one worker with its detectors, pinned to one core (0: skip)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Scrape and parse cost, detector memory, worker samples/s per core, shared view, ledger and API at scale."""
    from bench.bench_scale import run

    try:
        counts = [int(x) for x in clients.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"--clients takes comma-separated integers, not {clients!r}") from None
    result = run(counts, brokers=brokers, quarantines=quarantines, real_broker_clients=real_broker,
                 view=view, through_kafka=through_kafka, say=lambda m: typer.echo(m, err=True))
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))
