"""`guardian collect scrape|admin|client-stats`, `guardian run` and `guardian bench ingest`."""

from __future__ import annotations

import json
import logging
import threading

import typer

collect_app = typer.Typer(no_args_is_help=True,
                          help="Run one metrics source in the foreground, publishing to the metrics topic.")


def _collect(name: str, once: bool, interval: float | None) -> None:
    from guardian.ingest.collect import build_collector, run_collector
    from guardian.settings import GuardianSettings
    from guardian.topics import ensure_topics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = GuardianSettings()
    ensure_topics(settings.kafka.client_config(), settings.topics,
                  only=[settings.topics.metrics, settings.topics.client_stats])
    collector = build_collector(name, settings)
    if interval is not None:
        collector.interval_s = interval
    stop = threading.Event()
    try:
        run_collector(collector, stop, max_steps=1 if once else None)
    except KeyboardInterrupt:
        stop.set()


_ONCE = typer.Option(False, "--once", help="Collect and publish once, then exit.")
_INTERVAL = typer.Option(None, "--interval", help="Seconds between collections (default from settings).")


@collect_app.command("scrape")
def scrape(once: bool = _ONCE, interval: float = _INTERVAL) -> None:
    """Scrape the brokers' Prometheus endpoint(s) (GUARDIAN_KAFKA__METRICS_URL)."""
    _collect("scrape", once, interval)


@collect_app.command("admin")
def admin(once: bool = _ONCE, interval: float = _INTERVAL) -> None:
    """Poll consumer groups, offsets and topic counts through the Admin API."""
    _collect("admin", once, interval)


@collect_app.command("client-stats")
def client_stats(once: bool = _ONCE, interval: float = _INTERVAL) -> None:
    """Decode librdkafka statistics that clients publish to the client-stats topic."""
    _collect("client-stats", once, interval)


def run_command(
    worker_id: str = typer.Option(None, help="Name of this worker (default host-pid)."),
    collectors: str = typer.Option(None, help="Comma-separated collectors (default from settings); '' for none."),
    loglevel: str = typer.Option("warning", help="faust/worker log level."),
) -> None:
    """Run the collectors, the stream processors and the action engine until stopped."""
    from guardian.run import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = None if collectors is None else [c for c in collectors.split(",") if c]
    run(worker_id=worker_id, collectors=names, loglevel=loglevel)


def bench_ingest_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    batch: int = typer.Option(500, help="Samples per record."),
    samples: int = typer.Option(1_000_000, help="Samples through Kafka."),
) -> None:
    """Decode+route throughput in process and through the local broker (docs/BENCHMARKS.md)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_ingest.py"
    spec = importlib.util.spec_from_file_location("bench_ingest", path)
    if spec is None or spec.loader is None:
        raise typer.BadParameter(f"benchmark script not found at {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    result = mod.run_all(batch=batch, kafka_samples=samples, say=(lambda m: None) if as_json else typer.echo)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))
