"""What a drill measured: timings per incident, benign latency and throughput per phase, false actions.

``summarize(off, on)`` turns two ``RunContext`` (guardian off and on) into
one JSON-able dict; ``write_report`` writes ``drill.json``, ``drill.md`` and
PNG timelines into the output directory. Phases are per incident: *before*
(the last 20 s before the onset, at most ``before_s`` minus 5 s),
*during* (onset to the incident's end) and *after* (the next ``after_s``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

PHASES = ("before", "during", "after")


def _pct(xs: list[float], p: float) -> float | None:
    return float(np.percentile(np.asarray(xs), p)) if xs else None


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


def windows(ctx: Any, inc: Any) -> dict[str, tuple[float, float]]:
    ph = ctx.scenario.phases
    start = inc.onset - ph.before_s
    # the last 20 s before the onset: the clients' (and JVMs') start-up stays out of the baseline
    return {"before": (max(start + min(5.0, ph.before_s / 3), inc.onset - 20.0), inc.onset),
            "during": (inc.onset, inc.end),
            "after": (inc.end, inc.end + ph.after_s)}


def benign_stats(ctx: Any) -> dict[str, Any]:
    """Per benign tenant and phase: produce latency p50/p99 (ms) and throughput, over every incident."""
    out: dict[str, Any] = {}
    for tenant in sorted({r.tenant for r in ctx.recorders if r.role == "benign"}):
        recs = [r for r in ctx.recorders if r.tenant == tenant and r.role == "benign"]
        producers = [r for r in recs if r.kind == "producer"]
        t: dict[str, Any] = {}
        for phase in PHASES:
            lats: list[float] = []
            nbytes = nmsgs = 0
            span = 0.0
            perf_rates, perf_lat = [], []
            for inc in ctx.incidents:
                lo, hi = windows(ctx, inc)[phase]
                if hi <= lo:
                    continue
                span += hi - lo
                for r in producers:
                    for ts, b, lat in r.acks:
                        if lo <= ts < hi:
                            lats.append(lat * 1000.0)
                            nbytes += b
                            nmsgs += 1
                for r in recs:
                    if r.kind == "perf-producer":
                        for p in r.perf:
                            if lo <= p["ts"] < hi and "records_per_s" in p:
                                perf_rates.append(p["records_per_s"])
                                perf_lat.append(p["avg_latency_ms"])
            t[phase] = {"p50_ms": _r(_pct(lats, 50)), "p99_ms": _r(_pct(lats, 99)), "messages": nmsgs,
                        "mb_per_s": _r(nbytes / span / 1e6 if span else None, 4),
                        "msgs_per_s": _r(nmsgs / span if span else None, 1),
                        "perf_producer_records_per_s": _r(float(np.mean(perf_rates)) if perf_rates else None, 1),
                        "perf_producer_avg_latency_ms": _r(float(np.mean(perf_lat)) if perf_lat else None, 1)}
        before, during = t["before"]["p99_ms"], t["during"]["p99_ms"]
        t["p99_ratio_during_vs_before"] = _r(during / before if before and during else None)
        finals = [p for r in recs if r.kind == "perf-producer" for p in r.perf if p.get("final")]
        if finals:
            t["perf_producer_run_p99_ms"] = max(p["p99_ms"] for p in finals)
        consumers = [r for r in recs if r.kind in ("consumer", "perf-consumer")]
        if consumers:
            t["consumers"] = {r.name: {"messages": len(r.acks) or sum(1 for _ in r.perf), "errors": r.errors}
                              for r in consumers}
        t["errors"] = sum(r.errors for r in recs)
        out[tenant] = t
    return out


def _rate(recs: list[Any], lo: float, hi: float) -> float | None:
    if hi <= lo:
        return None
    return sum(b for r in recs for ts, b, _ in r.acks if lo <= ts < hi) / (hi - lo)


def incident_stats(ctx: Any) -> list[dict[str, Any]]:
    detections = getattr(ctx, "detections", [])
    quarantines = getattr(ctx, "quarantines", [])
    out = []
    for inc in ctx.incidents:
        recs = [r for r in ctx.recorders if r.role == "runaway" and r.name in inc.client_ids]
        # this incident's detections: from its onset to the end of its "after" phase
        upto = inc.end + ctx.scenario.phases.after_s
        mine = [d for d in detections if inc.onset - 2 <= d["published_at"] < upto
                and inc.matches(d["workload"], d.get("signature"))]
        first = min(mine, key=lambda d: d["published_at"], default=None)
        first_det = first["published_at"] if first else None
        # where the time went: the detector fired on a sample of time ``ts``; publishing took the rest
        fired = float(first["ts"]) if first and isinstance(first.get("ts"), (int, float)) else None
        sigs = sorted({d["signature"] for d in mine})
        verified, applied, action = None, None, None
        for q in quarantines:
            if not inc.holds(q):
                continue
            for a in q["actions"]:
                for h in a["history"]:
                    if not inc.onset - 2 <= h["ts"] < upto:
                        continue
                    if h.get("status") == "verified" and (verified is None or h["ts"] < verified):
                        verified, action = h["ts"], {"kind": a["kind"], "params": a["params"]}
                    if h.get("status") == "applied" and (applied is None or h["ts"] < applied):
                        applied = h["ts"]
        ph = ctx.scenario.phases
        cut = verified if verified is not None and verified < inc.end else inc.end
        # what the engine decided about this incident's detections (why nothing was done, if so)
        ids = {d.get("id") for d in mine}
        outcomes: dict[str, int] = {}
        reason = None
        for dec in getattr(ctx, "decisions", []):
            if dec.get("detection_id") in ids:
                outcomes[dec.get("outcome", "?")] = outcomes.get(dec.get("outcome", "?"), 0) + 1
                reason = dec.get("reason")
        out.append({
            "incident": inc.index, "tenant": inc.tenant, "pattern": inc.pattern,
            "onset": inc.onset, "signatures": sigs,
            "onset_to_detection_s": _r(first_det - inc.onset if first_det else None),
            "onset_to_detector_fired_s": _r(fired - inc.onset if fired is not None else None),
            "fired_to_published_s": _r(first_det - fired if fired is not None and first_det else None),
            "onset_to_applied_s": _r(applied - inc.onset if applied else None),
            "onset_to_verified_action_s": _r(verified - inc.onset if verified else None),
            "action": action,
            "decisions": outcomes, "last_decision_reason": reason,
            "runaway_bytes_per_s": {
                "before": _r(_rate(recs, inc.onset - ph.before_s + 5, inc.onset), 0),
                "during_unthrottled": _r(_rate(recs, inc.onset, cut), 0),
                "during_throttled": _r(_rate(recs, cut + 2, inc.end), 0) if cut + 2 < inc.end else None},
        })
    return out


def false_actions(ctx: Any) -> list[dict[str, Any]]:
    out = []
    for q in getattr(ctx, "quarantines", []):
        if any(inc.holds(q) for inc in ctx.incidents):
            continue
        out.append({"quarantine": q["id"], "workload": q["workload"], "state": q["state"], "dry_run": q["dry_run"],
                    "signature": (q.get("detection") or {}).get("signature"),
                    "actions": [a["kind"] for a in q["actions"]]})
    return out


def false_detections(ctx: Any) -> int:
    """Detections on benign clients the drill ran (tenant principals, not the runaways)."""
    benign = {r.workload.get("client_id") for r in ctx.recorders if r.role in ("benign", "feeder")}
    return sum(1 for d in getattr(ctx, "detections", []) if d["workload"].get("client_id") in benign
               and not any(inc.matches(d["workload"], d.get("signature")) for inc in ctx.incidents))


def summarize(off: Any | None, on: Any | None, machine: dict[str, Any] | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"scenario": (on or off).scenario.name, "machine": machine or {}}
    runs = {"off": off, "on": on}
    for mode, ctx in runs.items():
        if ctx is None:
            continue
        res[mode] = {"benign": benign_stats(ctx), "incidents": incident_stats(ctx), "notes": ctx.notes,
                     "runaway_errors": sum(r.errors for r in ctx.recorders if r.role == "runaway")}
    if on is not None:
        inc = res["on"]["incidents"]
        det = [i["onset_to_detection_s"] for i in inc if i["onset_to_detection_s"] is not None]
        ver = [i["onset_to_verified_action_s"] for i in inc if i["onset_to_verified_action_s"] is not None]
        res["on"]["false_actions"] = false_actions(on)
        res["on"]["false_detections"] = false_detections(on)
        res["onset_to_detection_p50_s"] = _r(_pct(det, 50))
        res["onset_to_detection_p95_s"] = _r(_pct(det, 95))
        res["onset_to_verified_action_p50_s"] = _r(_pct(ver, 50))
        res["onset_to_verified_action_p95_s"] = _r(_pct(ver, 95))
        res["incidents_detected"] = f"{len(det)}/{len(inc)}"
        res["incidents_acted_on"] = f"{len(ver)}/{len(inc)}"
        res["false_actions"] = len(res["on"]["false_actions"])
    for mode in ("on", "off"):
        if mode in res:
            ratios = [t["p99_ratio_during_vs_before"] for t in res[mode]["benign"].values()
                      if t["p99_ratio_during_vs_before"] is not None]
            res[f"benign_p99_ratio_{mode}"] = max(ratios) if ratios else None
    return res


HEADLINE_KEYS = ("onset_to_verified_action_p50_s", "onset_to_verified_action_p95_s", "benign_p99_ratio_on",
                 "benign_p99_ratio_off", "false_actions")


def headline(res: dict[str, Any]) -> dict[str, Any]:
    return {k: res.get(k) for k in HEADLINE_KEYS}


# ------------------------------------------------------------------------------- files

def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Incident drill: {res['scenario']}", ""]
    m = res.get("machine") or {}
    if m:
        lines += [f"Machine: {m.get('cpus', '?')} cores, load average {m.get('loadavg', '?')}; "
                  f"command `{m.get('command', '')}`", ""]
    if "on" in res:
        lines += ["| measure | value |", "|---|---|",
                  f"| incidents detected / acted on | {res.get('incidents_detected')} / {res.get('incidents_acted_on')} |",
                  f"| onset -> detection p50 / p95 | {res.get('onset_to_detection_p50_s')} s / "
                  f"{res.get('onset_to_detection_p95_s')} s |",
                  f"| onset -> verified action p50 / p95 | {res.get('onset_to_verified_action_p50_s')} s / "
                  f"{res.get('onset_to_verified_action_p95_s')} s |",
                  f"| benign p99 during / before, guardian on | {res.get('benign_p99_ratio_on')} |",
                  f"| benign p99 during / before, guardian off | {res.get('benign_p99_ratio_off')} |",
                  f"| false actions (benign workloads) | {res.get('false_actions')} |",
                  f"| false detections (benign clients) | {res['on'].get('false_detections')} |", ""]
    for mode in ("off", "on"):
        if mode not in res:
            continue
        lines += [f"## Guardian {mode}", "", "Benign tenants' produce latency (ms) and throughput:", "",
                  "| tenant | phase | p50 ms | p99 ms | MB/s | msgs/s | ProducerPerformance rec/s, avg ms |",
                  "|---|---|---|---|---|---|---|"]
        for tenant, t in res[mode]["benign"].items():
            for phase in PHASES:
                p = t[phase]
                lines.append(f"| {tenant} | {phase} | {p['p50_ms']} | {p['p99_ms']} | {p['mb_per_s']} | "
                             f"{p['msgs_per_s']} | {p['perf_producer_records_per_s']}, "
                             f"{p['perf_producer_avg_latency_ms']} |")
        lines += ["", "Incidents (runaway bytes/s before, during until the action, under the action):", "",
                  "| # | pattern | signatures | detect s (fired + published) | verified s | action | before | "
                  "during | throttled |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for i in res[mode]["incidents"]:
            rb = i["runaway_bytes_per_s"]
            act = f"{i['action']['kind']} {i['action']['params']}" if i["action"] else "-"
            lines.append(f"| {i['incident'] + 1} | {i['pattern']} | {', '.join(i['signatures']) or '-'} | "
                         f"{i['onset_to_detection_s']} ({i.get('onset_to_detector_fired_s')} + "
                         f"{i.get('fired_to_published_s')}) | {i['onset_to_verified_action_s']} | {act} | "
                         f"{rb['before']} | {rb['during_unthrottled']} | {rb['during_throttled']} |")
        if mode == "on":
            for i in res[mode]["incidents"]:
                if i["action"] is None and i.get("decisions"):
                    lines.append(f"\nIncident {i['incident'] + 1} not acted on: decisions {i['decisions']}; "
                                 f"last: {i.get('last_decision_reason')}")
            fa = res["on"]["false_actions"]
            lines += ["", f"False actions: {len(fa)}" + ("" if not fa else ":")]
            lines += [f"- {f['quarantine']} {f['workload']} {f['signature']} {f['state']} {f['actions']}" for f in fa]
        if res[mode]["notes"]:
            lines += ["", "Notes:"] + [f"- {n}" for n in res[mode]["notes"]]
        lines.append("")
    return "\n".join(lines)


def plot_timeline(ctx: Any, path: Path, title: str, highlight: list[str] | None = None) -> Path:
    """Throughput and latency per second of the runaway(s) and each benign tenant, incidents marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = ctx.t0
    end = t0 + ctx.scenario.duration_s
    secs = np.arange(0, int(end - t0) + 1)
    groups: dict[str, list[Any]] = {}
    for r in ctx.recorders:
        if r.role == "runaway":
            groups.setdefault(f"runaway {r.tenant} ({r.kind})", []).append(r)
        elif r.role == "benign" and r.kind == "producer":
            groups.setdefault(f"benign {r.tenant}", []).append(r)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for label, recs in groups.items():
        tput = np.zeros(len(secs))
        lat: list[list[float]] = [[] for _ in secs]
        for r in recs:
            for ts, b, la in r.acks:
                i = int(ts - t0)
                if 0 <= i < len(secs):
                    tput[i] += b
                    lat[i].append(la * 1000)
        ax1.plot(secs, tput / 1e6, label=label, lw=1.2)
        p99 = [np.percentile(x, 99) if x else np.nan for x in lat]
        ax2.plot(secs, p99, label=f"{label} p99", lw=1.0)
    for inc in ctx.incidents:
        for ax in (ax1, ax2):
            ax.axvspan(inc.onset - t0, inc.end - t0, color="red", alpha=0.06)
            ax.axvline(inc.onset - t0, color="red", ls="--", lw=0.8)
    for q in getattr(ctx, "quarantines", []):
        for a in q["actions"]:
            for h in a["history"]:
                if h.get("status") in ("verified", "reverted"):
                    for ax in (ax1, ax2):
                        ax.axvline(h["ts"] - t0, color="green" if h["status"] == "verified" else "grey",
                                   ls=":", lw=1.0)
    ax1.set_ylabel("MB/s acknowledged")
    ax1.set_title(title)
    ax1.legend(fontsize=7, loc="upper left")
    ax2.set_ylabel("latency p99 per second (ms)")
    ax2.set_yscale("log")
    ax2.set_xlabel("seconds since start (red: incident; green dotted: action verified; grey: reverted)")
    ax2.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(res: dict[str, Any], runs: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "drill.json", "markdown": out_dir / "drill.md"}
    files["json"].write_text(json.dumps(res, indent=2, default=str))
    for mode, ctx in runs.items():
        if ctx is None:
            continue
        try:
            files[f"plot_{mode}"] = plot_timeline(ctx, out_dir / f"timeline-{mode}.png",
                                                  f"{res['scenario']}: guardian {mode}")
        except ImportError:   # matplotlib is in the dev extra; the figures are in drill.json anyway
            res.setdefault("notes", []).append("no PNG: matplotlib is not installed (pip install matplotlib)")
    md = markdown(res) + "\n" + "\n".join(f"![{k}]({p.name})" for k, p in files.items() if k.startswith("plot")) + "\n"
    files["markdown"].write_text(md)
    return files
