"""`guardian collect scrape|admin|client-stats`: one metrics source in the foreground."""

from __future__ import annotations

import logging
import threading

import typer

collect_app = typer.Typer(no_args_is_help=True,
                          help="Run one metrics source in the foreground, publishing to the metrics topic.")


def _collect(name: str, once: bool, interval: float | None) -> None:
    from guardian.ingest.collect import build_collector, run_collector
    from guardian.settings import GuardianSettings
    from guardian.clients.topics import ensure_topics

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
