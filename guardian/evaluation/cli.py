"""``guardian eval ...`` and ``guardian bench detect``: thin wrappers over the evaluation code."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def nab_cmd(
    data_dir: Path = typer.Argument(..., help="NAB-layout directory: <category>/<name>.csv files."),
    windows: Path = typer.Option(..., "--windows", help="combined_windows.json of that corpus."),
    out: Path = typer.Option(Path("results/nab"), "--out", help="Results directory (NAB's layout)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes (one series each)."),
) -> None:
    """Run the one fixed detector configuration over a NAB corpus and score it with NAB's method."""
    from guardian.evaluation.nab import run_nab

    results = run_nab(data_dir, windows, out, jobs=jobs)
    for name, r in results.items():
        typer.echo(f"{name:20s} {r.normalised:6.2f}  (threshold {r.threshold:.4f}, raw {r.raw:.3f})")
    typer.echo(f"results: {out}/  scores: {out / 'scores.json'}")


def scenarios_cmd(
    scenario_dir: Path = typer.Argument(Path("configs/scenarios"), help="Directory of scenario YAML files."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Replay labelled synthetic multi-workload traces through the detector pipeline and score them."""
    from guardian.evaluation.scenarios import run_scenarios

    report = run_scenarios(scenario_dir)
    if as_json:
        typer.echo(json.dumps(report.summary()))
        return
    typer.echo(report.table())


def bench_detect_cmd(
    workloads: int = typer.Option(100_000, "--workloads", min=1),
    steps: int = typer.Option(20, "--steps", min=1, help="Samples per workload (one per simulated second)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Throughput of the detector pipeline on one core, and memory per tracked series."""
    from bench.bench_detect import run_bench

    result = run_bench(workloads=workloads, steps=steps)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for key, value in result.items():
        typer.echo(f"{key:28s} {value}")
