"""`guardian telemetry subscribe|unsubscribe|list`: KIP-714 client-metrics subscriptions."""

from __future__ import annotations

import json

import typer

from guardian.clients.telemetry import DEFAULT_METRICS, Subscription, TelemetrySubscriptions

telemetry_app = typer.Typer(no_args_is_help=True, help="Manage KIP-714 client-metrics subscriptions.")


def _subs() -> TelemetrySubscriptions:
    from guardian.errors import ConfigError
    from guardian.settings import GuardianSettings

    boot = GuardianSettings().kafka.bootstrap_servers
    if not boot:
        raise ConfigError("no Kafka bootstrap servers: set KAFKA_BOOTSTRAP_SERVERS (or `eval \"$(guardian-dev env)\"`)")
    return TelemetrySubscriptions(boot)


@telemetry_app.command()
def subscribe(name: str = typer.Argument(..., help="Subscription name (the CLIENT_METRICS resource)."),
              metrics: str = typer.Option(",".join(DEFAULT_METRICS), help="Comma-separated metric name prefixes; '*' for all."),
              interval_ms: int = typer.Option(5000, help="Push interval the clients use."),
              match: list[str] = typer.Option([], help="client_id=REGEX and the like; repeatable. None = every client.")) -> None:
    """Create or update a subscription."""
    pairs = dict(m.split("=", 1) for m in match if "=" in m)
    sub = Subscription(name, [m for m in metrics.split(",") if m], interval_ms, pairs)
    with _subs() as subs:
        subs.subscribe(sub)
    typer.echo(f"subscribed {name}: metrics={','.join(sub.metrics)} interval={interval_ms}ms match={pairs or 'all'}")


@telemetry_app.command()
def unsubscribe(name: str) -> None:
    """Delete a subscription."""
    with _subs() as subs:
        subs.unsubscribe(name)
    typer.echo(f"unsubscribed {name}")


@telemetry_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """List subscriptions."""
    with _subs() as subs:
        found = subs.list()
    if as_json:
        typer.echo(json.dumps([s.__dict__ for s in found], indent=2))
        return
    for s in found:
        typer.echo(f"{s.name}: metrics={','.join(s.metrics)} interval={s.interval_ms}ms match={s.match or 'all'}")
    if not found:
        typer.echo("no subscriptions")
