"""Labelled synthetic multi-workload traces, replayed through the detector pipeline.

A scenario (YAML under ``configs/scenarios/``) describes workload groups,
each with per-metric traffic (level, multiplicative and additive noise,
diurnal amplitude, random benign bursts) and timed events that multiply or
add to metrics (step, ramp, or a spike that ends). Events with a ``label``
(a ``Signature`` value) are runaways the detectors must find; events without
one (deploy spikes, failovers, level shifts) are benign.

Scoring: a detection on a workload inside a labelled event (from its start to
``grace_s`` after its end) is a true positive; every other detection is a
false one. Recall counts labelled events with at least one detection; time to
detect is measured from the event start (for ramps the time after the ramp
reached its full factor is kept too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from guardian.model.detection import Detection, Signature
from guardian.detectors.pipeline import DetectorPipeline
from guardian.errors import ConfigError
from guardian.model.samples import METRICS_BY_NAME, Metric, Workload

DAY = 86_400.0


@dataclass
class MetricSpec:
    base: float
    noise: float = 0.05          # multiplicative log-normal sd
    abs_noise: float = 0.0       # additive normal sd
    diurnal: float = 0.0         # amplitude of the daily cycle, share of base
    burst_per_h: float = 0.0     # benign bursts per hour
    burst_factor: float = 1.5
    burst_s: float = 10.0


@dataclass
class Event:
    at_s: float
    kind: str = "step"           # step | ramp | spike
    over_s: float = 0.0          # ramp length
    duration_s: float = math.inf # spike length (steps and ramps last to the end)
    factors: dict[Metric, float] = field(default_factory=dict)
    adds: dict[Metric, float] = field(default_factory=dict)
    label: Signature | None = None
    members: list[int] | None = None   # which replicas of the group (default all)

    def envelope(self, t: np.ndarray) -> np.ndarray:
        """0 before the event, 1 at full strength."""
        if self.kind == "ramp" and self.over_s > 0:
            env = np.clip((t - self.at_s) / self.over_s, 0.0, 1.0)
        else:
            env = (t >= self.at_s).astype(np.float64)
        if math.isfinite(self.duration_s):
            env = np.where(t >= self.at_s + self.duration_s, 0.0, env)
        return env

    @property
    def end_s(self) -> float:
        return self.at_s + (self.duration_s if math.isfinite(self.duration_s) else math.inf)


@dataclass
class Group:
    id: str
    tenant: str
    count: int
    metrics: dict[Metric, MetricSpec]
    events: list[Event]


@dataclass
class Scenario:
    name: str
    duration_s: float
    resolution_s: float
    seed: int
    groups: list[Group]
    grace_s: float = 300.0


def _metric(name: str) -> Metric:
    m = METRICS_BY_NAME.get(name)
    if m is None:
        raise ConfigError(f"unknown metric {name!r}")
    return m


def parse_scenario(data: dict[str, Any]) -> Scenario:
    try:
        groups = []
        for g in data["workloads"]:
            metrics = {_metric(k): MetricSpec(**{f: float(x) for f, x in v.items()}) for k, v in g["metrics"].items()}
            events = []
            for e in g.get("events", []):
                e = dict(e)
                label = e.pop("label", None)
                events.append(Event(
                    at_s=float(e.pop("at_s")), kind=e.pop("kind", "step"), over_s=float(e.pop("over_s", 0.0)),
                    duration_s=float(e.pop("duration_s", math.inf)),
                    factors={_metric(k): float(v) for k, v in (e.pop("factors", {}) or {}).items()},
                    adds={_metric(k): float(v) for k, v in (e.pop("adds", {}) or {}).items()},
                    label=Signature(label) if label else None, members=e.pop("members", None)))
                if e:
                    raise ConfigError(f"unknown event keys {sorted(e)}")
            groups.append(Group(id=str(g["id"]), tenant=str(g.get("tenant", "tenant-a")),
                                count=int(g.get("count", 1)), metrics=metrics, events=events))
        return Scenario(name=str(data["name"]), duration_s=float(data["duration_s"]),
                        resolution_s=float(data.get("resolution_s", 1.0)), seed=int(data.get("seed", 0)),
                        groups=groups, grace_s=float(data.get("grace_s", 300.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"bad scenario {data.get('name', '?')}: {exc}") from exc


def load_scenarios(directory: Path) -> list[Scenario]:
    docs = [yaml.safe_load(f.read_text()) for f in sorted(Path(directory).glob("*.yaml"))]
    # other YAML may share the directory (the incident drills of ``guardian-dev bench drill``);
    # a detector scenario is the one with ``workloads``
    scenarios = [parse_scenario(d) for d in docs if isinstance(d, dict) and "workloads" in d]
    if not scenarios:
        raise ConfigError(f"no scenario YAML files (with 'workloads') in {directory}")
    return scenarios


@dataclass
class EventResult:
    scenario: str
    group: str
    label: str
    kind: str
    detected: bool
    ttd_s: float | None
    ttd_after_full_s: float | None
    signature_match: bool


@dataclass
class ScenarioResult:
    name: str
    workloads: int
    duration_s: float
    detections: int
    true_detections: int
    false_detections: int
    events: list[EventResult]
    false_examples: list[str]


@dataclass
class Report:
    results: list[ScenarioResult]

    def summary(self) -> dict[str, Any]:
        dets = sum(r.detections for r in self.results)
        tp = sum(r.true_detections for r in self.results)
        fp = sum(r.false_detections for r in self.results)
        events = [e for r in self.results for e in r.events]
        found = [e for e in events if e.detected]
        ttds = [e.ttd_s for e in found if e.ttd_s is not None]
        wdays = sum(r.workloads * r.duration_s / DAY for r in self.results)
        return {
            "precision": round(tp / dets, 4) if dets else 1.0,
            "recall": round(len(found) / len(events), 4) if events else 1.0,
            "ttd_p50_s": round(float(np.percentile(ttds, 50)), 2) if ttds else None,
            "ttd_p95_s": round(float(np.percentile(ttds, 95)), 2) if ttds else None,
            "false_detections_per_workload_day": round(fp / wdays, 6) if wdays else 0.0,
            "signature_accuracy": round(sum(e.signature_match for e in found) / len(found), 4) if found else None,
            "events": len(events), "detections": dets, "false_detections": fp,
            "workload_days": round(wdays, 2),
        }

    def table(self) -> str:
        lines = [f"{'scenario':34s} {'wl':>5s} {'hours':>6s} {'det':>5s} {'fp':>4s}  events (label kind ttd_s)"]
        for r in self.results:
            ev = ", ".join(f"{e.label}/{e.kind}:{'miss' if not e.detected else f'{e.ttd_s:.0f}s'}"
                           + (f" ({e.ttd_after_full_s:+.0f}s vs full)" if e.ttd_after_full_s is not None else "")
                           + ("" if e.signature_match or not e.detected else " (other signature)")
                           for e in r.events)
            lines.append(f"{r.name:34s} {r.workloads:5d} {r.duration_s / 3600:6.1f} {r.detections:5d} "
                         f"{r.false_detections:4d}  {ev}")
            lines.extend(f"    false: {x}" for x in r.false_examples[:3])
        s = self.summary()
        lines.append("")
        lines.append(f"precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
                     f"ttd p50 {s['ttd_p50_s']} s  p95 {s['ttd_p95_s']} s  "
                     f"false detections per workload-day {s['false_detections_per_workload_day']:.4g}  "
                     f"({s['workload_days']} workload-days, {s['events']} labelled events)")
        return "\n".join(lines)


def _bursts(rng: np.random.Generator, spec: MetricSpec, t0: float, t1: float, count: int) -> np.ndarray:
    """Start times and replica of benign bursts in [t0, t1): array of (start, replica)."""
    if spec.burst_per_h <= 0:
        return np.empty((0, 2))
    n = rng.poisson(spec.burst_per_h * (t1 - t0) / 3600.0 * count)
    return np.column_stack([rng.uniform(t0, t1, n), rng.integers(0, count, n)])


def run_scenario(sc: Scenario, pipeline: DetectorPipeline | None = None, chunk_s: float = 600.0) -> ScenarioResult:
    """Generate the trace chunk by chunk and feed it to a pipeline one tick (all workloads) at a time."""
    pipe = pipeline or DetectorPipeline(clock=lambda: 0.0)
    rng = np.random.default_rng(sc.seed)
    # workload identities and slots per metric
    owners: dict[Workload, tuple[int, int]] = {}
    layout = []
    for gi, g in enumerate(sc.groups):
        wls = [Workload(principal=f"User:{g.tenant}", client_id=f"{sc.name}-{g.id}-{k}") for k in range(g.count)]
        for k, w in enumerate(wls):
            owners[w] = (gi, k)
        slots = {m: np.array([pipe.slot(w, m) for w in wls], dtype=np.int64) for m in g.metrics}
        phases = rng.uniform(0, DAY, g.count)
        bursts = {m: _bursts(rng, spec, 0.0, sc.duration_s, g.count) for m, spec in g.metrics.items()}
        layout.append((g, slots, phases, bursts))

    detections: list[Detection] = []
    res = sc.resolution_s
    start = 0.0
    while start < sc.duration_s:
        t = np.arange(start, min(start + chunk_s, sc.duration_s), res)
        per_metric: dict[Metric, list[tuple[np.ndarray, np.ndarray]]] = {}
        for g, slots, phases, bursts in layout:
            for m, spec in g.metrics.items():
                level = np.full((len(t), g.count), spec.base)
                if spec.diurnal:
                    level *= 1.0 + spec.diurnal * np.sin(2 * np.pi * (t[:, None] + phases[None, :]) / DAY)
                in_burst = np.zeros(level.shape, dtype=bool)   # overlapping bursts do not compound
                for b_start, replica in bursts[m]:
                    in_burst[:, int(replica)] |= (t >= b_start) & (t < b_start + spec.burst_s)
                level[in_burst] *= spec.burst_factor
                for e in g.events:
                    if m not in e.factors and m not in e.adds:
                        continue
                    env = e.envelope(t)[:, None]
                    cols = np.zeros(g.count, dtype=bool)
                    cols[e.members if e.members is not None else slice(None)] = True
                    env = env * cols[None, :]
                    if m in e.factors:
                        level *= 1.0 + (e.factors[m] - 1.0) * env
                    if m in e.adds:
                        level += e.adds[m] * env
                if spec.noise:
                    level *= rng.lognormal(0.0, spec.noise, level.shape)
                if spec.abs_noise:
                    level += rng.normal(0.0, spec.abs_noise, level.shape)
                per_metric.setdefault(m, []).append((slots[m], np.maximum(level, 0.0)))
        stacked = {m: (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts], axis=1))
                   for m, parts in per_metric.items()}
        for row, tick in enumerate(t):
            for m, (s, v) in stacked.items():
                detections.extend(pipe.process_arrays(m, s, np.full(len(s), tick), v[row]))
        start += chunk_s
    return _score(sc, owners, detections)


def _score(sc: Scenario, owners: dict[Workload, tuple[int, int]], detections: list[Detection]) -> ScenarioResult:
    by_workload: dict[tuple[int, int], list[Detection]] = {}
    for d in detections:
        key = owners.get(Workload(**d.workload))
        if key is not None:
            by_workload.setdefault(key, []).append(d)
    tp = fp = 0
    false_examples: list[str] = []
    events: list[EventResult] = []
    for (gi, k), dets in by_workload.items():
        labelled = [e for e in sc.groups[gi].events if e.label and (e.members is None or k in e.members)]
        for d in dets:
            if any(e.at_s <= d.ts <= e.end_s + sc.grace_s for e in labelled):
                tp += 1
            else:
                fp += 1
                false_examples.append(f"t={d.ts:.0f}s {d.explain()}")
    for gi, g in enumerate(sc.groups):
        for e in g.events:
            if not e.label:
                continue
            for k in (e.members if e.members is not None else range(g.count)):
                hits = sorted((d for d in by_workload.get((gi, k), [])
                               if e.at_s <= d.ts <= e.end_s + sc.grace_s), key=lambda d: d.ts)
                first = hits[0] if hits else None
                ttd = first.ts - e.at_s if first else None
                events.append(EventResult(
                    scenario=sc.name, group=g.id, label=e.label.value, kind=e.kind, detected=first is not None,
                    ttd_s=ttd, ttd_after_full_s=(ttd - e.over_s) if ttd is not None and e.kind == "ramp" else None,
                    signature_match=any(d.signature is e.label for d in hits)))
    workloads = sum(g.count for g in sc.groups)
    return ScenarioResult(name=sc.name, workloads=workloads, duration_s=sc.duration_s,
                          detections=len(detections), true_detections=tp, false_detections=fp,
                          events=events, false_examples=false_examples)


def run_scenarios(directory: Path) -> Report:
    return Report([run_scenario(sc) for sc in load_scenarios(directory)])
