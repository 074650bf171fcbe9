"""Benchmark: the incident drill over every shipped scenario (docs/BENCHMARKS.md, "Incident drill").

Runs ``guardian bench drill`` for each ``configs/scenarios/drill-*.yaml`` in
turn (guardian off, then on, on the same broker) and prints one row per
scenario: incidents detected / acted on, onset -> detection and onset ->
verified action (p50 / p95 over the scenario's repeats), benign tenants' p99
produce latency during the incident over before (worst tenant; guardian on
and off) and actions on benign workloads.

    python -m bench.bench_drill [OUT_DIR] [SCENARIO ...]

Uses KAFKA_BOOTSTRAP_SERVERS + REDIS_URL when set, else the embedded dev
stack (started if needed, left running like ``guardian dev up``). Takes
about 8 minutes per scenario on 2 cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> list[dict]:
    from guardian.drill.cli import run_drill
    from guardian.drill.report import headline

    out = Path(argv[0]) if argv else Path("/tmp/guardian-drills")
    names = argv[1:] or sorted(p.stem for p in (ROOT / "configs" / "scenarios").glob("drill-*.yaml"))
    rows = []
    for name in names:
        path = ROOT / "configs" / "scenarios" / f"{name if name.startswith('drill-') else 'drill-' + name}.yaml"
        res = run_drill(path, out / path.stem, say=lambda m: print(m, file=sys.stderr),
                        command=f"python -m bench.bench_drill {out} {path.stem}")
        row = {"scenario": res["scenario"], "detected": res.get("incidents_detected"),
               "acted_on": res.get("incidents_acted_on"),
               "onset_to_detection_p50_s": res.get("onset_to_detection_p50_s"),
               "onset_to_detection_p95_s": res.get("onset_to_detection_p95_s"), **headline(res)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
