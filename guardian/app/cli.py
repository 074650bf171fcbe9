"""The ``guardian`` command line.

Each area keeps its commands in its own module; this file only wires them
together, importing lazily so ``guardian --help`` stays fast. The developer
tools (local stack, demo, drills, evaluation, benchmarks) are the separate
``guardian-dev`` command (``guardian_dev``), outside the wheel and the image.
"""

from __future__ import annotations

import sys

import typer

from guardian.errors import GuardianError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Kafka workload guardian: finds runaway clients and sequesters exactly them.")


def _register() -> None:
    from guardian.app.collect import collect_app
    from guardian.app.run import run_command

    app.command("run")(run_command)
    app.add_typer(collect_app, name="collect")
    from guardian.api.cli import api as api_command, appeals_app, quarantines_app, tokens_app

    app.command("api")(api_command)
    app.add_typer(quarantines_app, name="quarantines")
    app.add_typer(appeals_app, name="appeals")
    app.add_typer(tokens_app, name="tokens")
    from guardian.app.telemetry import telemetry_app

    app.add_typer(telemetry_app, name="telemetry")
    from guardian.mcp.cli import mcp_command

    app.command("mcp")(mcp_command)


def run_app(cli: typer.Typer) -> None:
    """Run a command line; a ``GuardianError`` (bad config, a missing service) is one red line and exit 2,
    never a traceback. ``guardian-dev`` runs through it too."""
    try:
        cli()
    except GuardianError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


def main() -> None:
    _register()
    run_app(app)


if __name__ == "__main__":
    main()
