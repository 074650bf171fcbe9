"""``guardian bench act``: detection -> applied and verified throttle (docs/BENCHMARKS.md)."""

from __future__ import annotations

import json

import typer


def bench_act_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    rounds: int = typer.Option(30, min=1, help="Detections timed (one warm-up round is extra)."),
) -> None:
    """Time from a detection handed to the engine to an applied and verified throttle (p50, p95)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_act.py"
    spec = importlib.util.spec_from_file_location("bench_act", path)
    if spec is None or spec.loader is None:
        raise typer.BadParameter(f"benchmark script not found at {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    result = mod.run(rounds=rounds, say=(lambda m: None) if as_json else typer.echo)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))
