"""The ``guardian-dev`` command: the local stack, the demo, drills, evaluation and benchmarks.

None of it is in the guardian's wheel or image (``guardian_dev/pyproject.toml``
is its own distribution, installed by ``make setup``). Each area keeps its
commands in its own module; this file only wires them together, importing
lazily so ``guardian-dev --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Developer tools of the Kafka workload guardian: local Kafka and Redis, the demo, drills, "
                       "evaluation, benchmarks.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks; results go to docs/BENCHMARKS.md.")
eval_app = typer.Typer(no_args_is_help=True, help="Offline detector evaluation.")
app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")


def _register() -> None:
    from guardian_dev.stack_cli import dev_app

    app.registered_commands.extend(dev_app.registered_commands)   # up, down, status, env
    app.command("demo")(demo)

    from guardian_dev.evaluation.cli import bench_detect_cmd, nab_cmd, replay_cmd, scenarios_cmd

    eval_app.command("nab")(nab_cmd)
    eval_app.command("scenarios")(scenarios_cmd)
    eval_app.command("replay")(replay_cmd)
    bench_app.command("detect")(bench_detect_cmd)

    from guardian_dev.bench_cli import (bench_act_command, bench_ingest_command, bench_plugin_command,
                                        bench_scale_command)
    from guardian_dev.drill.cli import bench_drill_command

    bench_app.command("ingest")(bench_ingest_command)
    bench_app.command("act")(bench_act_command)
    bench_app.command("plugin")(bench_plugin_command)
    bench_app.command("scale")(bench_scale_command)
    bench_app.command("drill")(bench_drill_command)


def demo(keep: bool = typer.Option(False, "--keep", help="Leave the guardian, Kafka and Redis running afterwards."),
         quick: bool = typer.Option(False, "--quick", help="Shorter phases (about 2 minutes)."),
         out: Path = typer.Option(Path("demo-report"), "--out", file_okay=False,
                                  help="Where the report (demo.md, timeline-on.png, drill.json) goes.")) -> None:
    """The main job end to end: local Kafka + Redis, the guardian, a runaway producer and consumer, live."""
    from guardian_dev.demo import run_demo
    from guardian_dev.drill.cli import interrupt_on_sigterm

    interrupt_on_sigterm()
    try:
        run_demo(say=typer.echo, quick=quick, keep=keep, out_dir=out)
    except KeyboardInterrupt:
        typer.echo("interrupted: clients and the guardian stopped", err=True)
        raise typer.Exit(130)


def main() -> None:
    from guardian.app.cli import run_app

    _register()
    run_app(app)


if __name__ == "__main__":
    main()
