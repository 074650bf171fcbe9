"""`guardian-dev up|down|status|env`: the embedded default for local use and tests."""

from __future__ import annotations

import json
import shlex
import time

import typer

from guardian_dev.kafka import MAX_BROKERS, MAX_CONTROLLERS
from guardian_dev.stack import DevStack
from guardian.errors import ConfigError
from guardian.settings import GuardianSettings

dev_app = typer.Typer(no_args_is_help=True, help="Local Kafka and Redis for development and tests.")


def _stack(broker_plugin: bool = False, kubernetes: bool = False, brokers: int | None = None,
           controllers: int | None = None) -> DevStack:
    return DevStack(GuardianSettings().dev, broker_plugin=broker_plugin, kubernetes=kubernetes, brokers=brokers,
                    controllers=controllers)


def _say(msg: str) -> None:
    typer.echo(f"  {msg}", err=True)


@dev_app.command()
def up(broker_plugin: bool = typer.Option(False, "--broker-plugin",
                                          help="Build and load the guardian broker plugin (metrics + KIP-714)."),
       kubernetes: bool = typer.Option(False, "--kubernetes",
                                       help="Also build (once) and start a local kube-apiserver + etcd."),
       brokers: int | None = typer.Option(None, "--brokers", show_default=False,
                                          help=f"Brokers in the local cluster, 1 to {MAX_BROKERS} (default 1, "
                                               "or GUARDIAN_DEV__BROKERS): KRaft combined broker+controller "
                                               "nodes, one quorum, each with its own JMX exporter."),
       controllers: int | None = typer.Option(None, "--controllers", show_default=False,
                                              help=f"Dedicated KRaft controllers, 0 to {MAX_CONTROLLERS} (default 0, "
                                                   "or GUARDIAN_DEV__CONTROLLERS): with 1 or more the brokers are "
                                                   "only brokers and these are the quorum, as Kafka advises for "
                                                   "production; 0: the brokers are combined nodes.")) -> None:
    """Start local Kafka and Redis (idempotent) and wait until a tenant can authenticate."""
    if brokers is not None and not 1 <= brokers <= MAX_BROKERS:
        raise ConfigError(f"--brokers must be 1 to {MAX_BROKERS}, got {brokers}")
    if controllers is not None and not 0 <= controllers <= MAX_CONTROLLERS:
        raise ConfigError(f"--controllers must be 0 to {MAX_CONTROLLERS}, got {controllers}")
    t0 = time.monotonic()
    ep = _stack(broker_plugin, kubernetes, brokers, controllers).up(progress=_say)
    metrics = ep.kafka_metrics_url if len(ep.metrics_urls) <= 1 else ",".join(ep.metrics_urls)
    typer.echo(f"up in {time.monotonic() - t0:.1f}s: Kafka {ep.kafka_bootstrap_servers} ({ep.kafka_provider}), "
               f"SASL {ep.kafka_sasl_bootstrap_servers}, metrics {metrics}, "
               f"Redis {ep.redis_url} ({ep.redis_provider})")
    if ep.kubeconfig:
        typer.echo(f"Kubernetes: KUBECONFIG={ep.kubeconfig} (the guardian's service account)")
    typer.echo("load the environment with:  eval \"$(guardian-dev env)\"")


@dev_app.command()
def down(purge: bool = typer.Option(False, help="Also delete broker and Redis data.")) -> None:
    """Stop only what `guardian-dev up` started (and the incident drill's own broker, when one runs)."""
    from guardian_dev.stack import DRILL_RUN_DIR

    stack = _stack()
    stack.down(progress=_say, purge=purge)
    drill_dir = stack.settings.home / DRILL_RUN_DIR
    if drill_dir.exists():
        _say(f"the incident drill's own broker ({drill_dir}):")
        DevStack(stack.settings, run_dir=drill_dir, use_environment=False, use_docker=False).down(
            progress=_say, purge=purge)


@dev_app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Say what runs where."""
    st = _stack().status()
    if as_json:
        typer.echo(json.dumps(st, indent=2))
        return
    for name, info in st.items():
        state = "running" if info["running"] else "stopped"
        where = info.get("bootstrap") or info.get("url") or "-"
        typer.echo(f"{name:6} {state:8} pid={info['pid'] or '-'} {where}")
        if name == "kubernetes" and info["running"]:
            typer.echo(f"{'':6} KUBECONFIG={info['kubeconfig']}")
        if name == "kafka" and len(info.get("brokers") or []) > 1:
            for b in info["brokers"]:
                typer.echo(f"{'':6} broker {b['node_id']} {'running' if b['running'] else 'stopped':8} "
                           f"pid={b['pid'] or '-'} {b['bootstrap']} sasl={b['sasl_bootstrap']} "
                           f"metrics={b['metrics_url']} ({'answering' if b['metrics_up'] else 'not answering'}) "
                           f"log={b['log']}")
        if name == "kafka":
            for c in info.get("controllers") or []:
                typer.echo(f"{'':6} controller {c['node_id']} {'running' if c['running'] else 'stopped':8} "
                           f"pid={c['pid'] or '-'} {c['controller']} log={c['log']}")
        if name == "kafka" and len(info.get("brokers") or []) <= 1 and info["running"]:
            typer.echo(f"{'':6} sasl={info['sasl_bootstrap']} metrics={info['metrics_url']} "
                       f"({'answering' if info['metrics_up'] else 'not answering'}) log={info['log']}")


@dev_app.command()
def env(as_json: bool = typer.Option(False, "--json", help="Also print tenants and passwords, as JSON.")) -> None:
    """Print shell exports for the running services."""
    ep = _stack().endpoints()
    if as_json:
        out = dict(ep.exports())
        out.update(tenants=ep.tenants, admin_user=ep.admin_user, admin_password=ep.admin_password,
                   kafka_provider=ep.kafka_provider, redis_provider=ep.redis_provider)
        typer.echo(json.dumps(out, indent=2))
        return
    for k, v in ep.exports().items():
        typer.echo(f"export {k}={shlex.quote(v)}")
