"""Benchmark: the incident drill over every shipped scenario (docs/BENCHMARKS.md, "Incident drill").

Runs ``guardian-dev bench drill`` for each ``configs/scenarios/drill-*.yaml`` in
turn (guardian off, then on, on the same broker) and prints one row per
scenario: incidents detected / acted on, onset -> detection and onset ->
verified action (p50 / p95 over the scenario's repeats), benign tenants' p99
produce latency during the incident over before (worst tenant; guardian on
and off), with the guardian on also before and after the verified throttle,
actions on benign workloads, a surge drill's throttles and watch records,
the broker's capacity and the load average at the start and end.

    python -m bench.bench_drill [OUT_DIR] [SCENARIO ...]
    python -m bench.bench_drill --report OUT_DIR     # rows from drills already run (their drill.json)

A scenario with ``broker:`` runs on the drill's own broker with that
capacity; others use KAFKA_BOOTSTRAP_SERVERS + REDIS_URL when set, else the
embedded dev stack (started if needed, left running like ``guardian-dev up``).
Takes about 6 minutes per scenario on 2 cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def row(res: dict) -> dict:
    from guardian_dev.drill.report import headline

    m, b = res.get("machine") or {}, res.get("broker") or {}
    return {"scenario": res["scenario"], "expect": res.get("expect"), "detected": res.get("incidents_detected"),
            "acted_on": res.get("incidents_acted_on"),
            "onset_to_detection_p50_s": res.get("onset_to_detection_p50_s"),
            "onset_to_detection_p95_s": res.get("onset_to_detection_p95_s"), **headline(res),
            "capacity": b.get("capacity"), "loadavg_start": m.get("loadavg_at_start"), "loadavg_end": m.get("loadavg")}


def report(out: Path) -> list[dict]:
    """One row per ``OUT/*/drill.json`` (drills run one at a time, e.g. with ``--only``)."""
    rows = [row(json.loads(p.read_text())) for p in sorted(out.glob("*/drill.json"))]
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


def main(argv: list[str]) -> list[dict]:
    from guardian_dev.drill.cli import run_drill

    if argv[:1] == ["--report"]:
        return report(Path(argv[1]))
    out = Path(argv[0]) if argv else Path("/tmp/guardian-drills")
    names = argv[1:] or sorted(p.stem for p in (ROOT / "configs" / "scenarios").glob("drill-*.yaml"))
    rows = []
    for name in names:
        path = ROOT / "configs" / "scenarios" / f"{name if name.startswith('drill-') else 'drill-' + name}.yaml"
        res = run_drill(path, out / path.stem, say=lambda m: print(m, file=sys.stderr),
                        command=f"python -m bench.bench_drill {out} {path.stem}")
        rows.append(row(res))
        print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
