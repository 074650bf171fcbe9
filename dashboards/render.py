"""Render every dashboard to JSON: ``python -m dashboards.render [--out DIR] [--check]``.

``--check`` writes nothing and exits 1 when a committed file differs from what
the code renders (for CI), so the JSON in the chart never drifts from the code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import sre_review, tenant_view

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "helm" / "guardian" / "files" / "dashboards"

# file name (without .json) -> builder
DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {
    "guardian-sre-review": sre_review.build,
    "guardian-tenant-view": tenant_view.build,
}


def render(build: Callable[[], db.Dashboard]) -> dict[str, Any]:
    """The dashboard as plain JSON data, panels (rows included) numbered in grid order."""
    model = build().build()
    for i, panel in enumerate(model.panels or [], start=1):
        panel.id_val = i
    return json.loads(json.dumps(model, cls=JSONEncoder))


def prometheus_queries(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every Prometheus query in a rendered dashboard: panel targets and annotations."""
    out: list[tuple[str, str]] = []
    for ann in doc.get("annotations", {}).get("list", []):
        if (ann.get("datasource") or {}).get("type") == "prometheus" and ann.get("expr"):
            out.append((f"annotation {ann['name']!r}", ann["expr"]))
    for panel in doc.get("panels", []):
        for target in panel.get("targets") or []:
            if (target.get("datasource") or {}).get("type") == "prometheus" and target.get("expr"):
                out.append((f"panel {panel.get('title')!r} {target.get('refId', '')}", target["expr"]))
    return out


def dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.render", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="fail if the files on disk are stale; write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = args.out / f"{name}.json"
        text = dump(render(build))
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print("stale dashboards (run python -m dashboards.render): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
