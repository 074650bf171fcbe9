"""Scenario directories with the fast tier's daily seasonality off or on (every metric's tier).

    python bench/bench_seasonal.py off configs/scenarios/diurnal     # ~10-14 min on 2 busy cores
    python bench/bench_seasonal.py on configs/scenarios/diurnal

``guardian-dev eval scenarios`` always runs the default configuration (seasonality off); this runs the
same scenarios with ``TierParams(seasonal=True)`` so the two can be compared. Prints the report
table and the summary JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path


def main(argv: list[str]) -> None:
    from guardian.detectors.config import DetectorConfig
    from guardian.detectors.pipeline import DetectorPipeline
    from guardian_dev.evaluation.scenarios import Report, load_scenarios, run_scenario

    if len(argv) < 2 or argv[0] not in ("on", "off"):
        raise SystemExit("usage: bench_seasonal.py on|off SCENARIO_DIR...")
    cfg = DetectorConfig()
    if argv[0] == "on":
        cfg = replace(cfg, tiers={m: replace(p, seasonal=True) for m, p in cfg.tiers.items()})
    report = Report([run_scenario(sc, DetectorPipeline(cfg, clock=lambda: 0.0))
                     for d in argv[1:] for sc in load_scenarios(Path(d))])
    print(report.table())
    print(json.dumps(report.summary()))


if __name__ == "__main__":
    main(sys.argv[1:])
