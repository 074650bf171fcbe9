"""``guardian-dev eval ...`` and ``guardian-dev bench detect``: thin wrappers over the evaluation code."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def nab_cmd(
    data_dir: Path = typer.Argument(..., help="NAB-layout directory: <category>/<name>.csv files."),
    windows: Path = typer.Option(..., "--windows", help="combined_windows.json of that corpus."),
    out: Path = typer.Option(Path("results/nab"), "--out", help="Results directory (NAB's layout)."),
    detector: str = typer.Option("pipeline", "--detector",
                                 help="pipeline: what `guardian run` runs (the default and only one)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes (one series each)."),
    as_json: bool = typer.Option(False, "--json", help="Print scores.json."),
) -> None:
    """Score a detector over a NAB corpus with NAB's method: tuned, per category, and held-out category."""
    from guardian.errors import ConfigError
    from guardian_dev.evaluation.nab import PROFILES, run_nab

    try:
        report = run_nab(data_dir, windows, out, detector=detector, jobs=jobs)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(f"detector {detector}: {report['measures']}; {report['files']} files, {report['windows']} windows")
    typer.echo(f"{'profile':20s} {'tuned':>7s} {'held-out':>9s}  threshold")
    for p in PROFILES:
        entry = report[p.name]
        tuned, held = entry["tuned"], entry["held_out"]["overall"]
        typer.echo(f"{p.name:20s} {tuned['normalised']:7.2f} {held['normalised']:9.2f}  {tuned['threshold']:.4f}"
                   f"  (every detection counted: {entry['operating_point']['normalised']:.2f})")
    typer.echo(f"results: {out}/{report['results']}/  scores: {out / 'scores.json'}")


def scenarios_cmd(
    scenario_dir: Path = typer.Argument(Path("configs/scenarios"), help="Directory of scenario YAML files."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Replay labelled synthetic multi-workload traces through the detector pipeline and score them."""
    from guardian_dev.evaluation.scenarios import run_scenarios

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


def replay_cmd(
    data_dir: Path = typer.Argument(..., help="NAB-layout directory: <category>/<name>.csv files."),
    windows: Path = typer.Option(None, "--windows",
                                 help="combined_windows.json (default: DIR/../combined_windows.json if it exists)."),
    out: Path = typer.Option(None, "--out", help="Also write per-file rows (replay_rows.csv, replay.json) here."),
    peers: int = typer.Option(9, "--peers", min=0, help="Steady peers sharing the simulated broker."),
    headroom: float = typer.Option(1.5, "--headroom", min=1.0,
                                   help="Broker capacity = headroom x (peers' sum + the client's peak)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes (one file each)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Replay real series through the detectors and the engine's decisions against a simulated broker."""
    from guardian.errors import GuardianError
    from guardian_dev.evaluation.replay import BrokerModel, run_replay, write_rows

    if windows is None and (data_dir.parent / "combined_windows.json").is_file():
        windows = data_dir.parent / "combined_windows.json"
    try:
        report = run_replay(data_dir, windows, BrokerModel(peers=peers, headroom=headroom), jobs=jobs,
                            progress=lambda n, total, key: typer.echo(f"[{n}/{total}] {key}", err=True))
        written = write_rows(report, out) if out is not None else []
    except (GuardianError, OSError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(report.summary()) if as_json else report.table())
    for path in written:
        typer.echo(f"wrote {path}", err=True)
