"""The ``guardian`` command line.

Each area keeps its commands in its own module; this file only wires them
together, importing lazily so ``guardian --help`` stays fast.
"""

from __future__ import annotations

import sys

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
    from guardian.ingest.cli import bench_ingest_command, collect_app, run_command

    app.add_typer(collect_app, name="collect")
    app.command("run")(run_command)
    bench_app.command("ingest")(bench_ingest_command)
    from guardian.engine.cli import bench_act_command

    bench_app.command("act")(bench_act_command)
    app.command("demo")(demo)


def demo(keep: bool = typer.Option(True, help="Leave the services running afterwards.")) -> None:
    """Run the main job on the embedded default (local Kafka and Redis)."""
    from guardian.demo import run_basic_demo
    from guardian.dev.stack import DevStack
    from guardian.settings import GuardianSettings

    stack = DevStack(GuardianSettings().dev)
    run_basic_demo(stack, say=typer.echo)
    if keep:
        typer.echo("services keep running; stop them with `guardian dev down` (or `make down`)")
    else:
        stack.down(progress=typer.echo)


def main() -> None:
    _register()
    try:
        app()
    except GuardianError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
