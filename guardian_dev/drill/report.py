"""What a drill measured: timings per incident, benign latency and throughput per phase, false actions.

``summarize(off, on)`` turns two ``RunContext`` (guardian off and on) into
one JSON-able dict; ``write_report`` writes ``drill.json``, ``drill.md`` and
PNG timelines into the output directory. Phases are per incident: *before*
(the last 20 s before the onset, at most ``before_s`` minus 5 s),
*during* (onset to the incident's end) and *after* (the next ``after_s``).
With the guardian on, *during* is also split at the incident's first
verified action: *uncontained* (onset to the verified throttle; the whole of
*during* when there is none) and *contained* (the verified throttle to the
incident's end), so the protection is seen apart from the seconds it took;
*settled* is *contained* without its first ``DRAIN_S`` (the broker working off
what the runaway queued before the throttle). Two p99s of ~20 s windows stray
from each other with nothing happening (a GC pause, a scrape, the scheduler of
a small machine): ``settled_noise`` lays the same two windows on the run's
quiet stretch, so the report gives *settled* next to that noise.

A surge drill (``Scenario.expect == "watch"``) counts, per incident, the
quarantines that throttled its surge workload (must be 0) and the watch
records, instead of the time to act.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import types
from pathlib import Path
from typing import Any

import numpy as np

PHASES = ("before", "during", "after")
SPLIT = ("uncontained", "contained", "settled")   # during, cut at the verified action (guardian on)
# *settled*: contained without its first DRAIN_S. A throttle stops new requests, not those the broker
# already queued: on the drills' one-thread broker the requests a runaway queued before the throttle
# take up to ~1 s to work off, and benign requests sent then wait behind them
DRAIN_S = 2.0
# harm began when the benign p99 reached this multiple of its normal (the drills' "hurts" line, issue 15)
HARM_FACTOR = 3.0


def _pct(xs: list[float], p: float) -> float | None:
    return float(np.percentile(np.asarray(xs), p)) if xs else None


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


def windows(ctx: Any, inc: Any, verified: float | None = None) -> dict[str, tuple[float, float]]:
    """The incident's phases; with ``verified`` (when its action was verified) also *during* split there."""
    ph = ctx.scenario.phases
    start = inc.onset - ph.before_s
    # the last 20 s before the onset: the clients' (and JVMs') start-up stays out of the baseline
    out = {"before": (max(start + min(5.0, ph.before_s / 3), inc.onset - 20.0), inc.onset),
           "during": (inc.onset, inc.end),
           "after": (inc.end, inc.end + ph.after_s)}
    cut = min(max(verified, inc.onset), inc.end) if verified is not None else inc.end
    out["uncontained"] = (inc.onset, cut)
    out["contained"] = (cut, inc.end)
    out["settled"] = (min(cut + DRAIN_S, inc.end), inc.end)
    return out


def in_window(phase: str, inc: Any, lo: float, hi: float, acked: float, latency: float) -> bool:
    """Whether a message's latency belongs to ``phase``: it was *sent* in the window (acked minus its
    latency), so a request queued before the throttle and answered after it counts where it was sent
    (uncontained), and *contained* is what requests sent after the verified throttle met. *before*
    also needs the ack before the onset: a request sent just before the onset and delayed by the
    incident is not part of the normal it is compared with. Throughput stays counted by ack time.
    """
    sent = acked - latency
    if not lo <= sent < hi:
        return False
    return phase != "before" or acked < inc.onset


def action_times(ctx: Any, inc: Any) -> tuple[float | None, float | None, dict[str, Any] | None]:
    """(first verified, first applied, the verified action) of the incident's quarantines, from the ledger."""
    upto = inc.end + ctx.scenario.phases.after_s
    verified, applied, action = None, None, None
    for q in getattr(ctx, "quarantines", []):
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
    return verified, applied, action


def harm_onset(ctx: Any, inc: Any, factor: float = HARM_FACTOR) -> float | None:
    """When the incident began to hurt: the first second after its onset from which the benign
    producers' p99 (pooled, by send time) stays at least ``factor`` times its *before* p99 for two
    seconds running (one slow second is noise); None if it never does before the incident ends.

    A ramp hurts only once it has grown, and the guardian acts on harm, so the time from here to
    the verified throttle is how long the others were hurt before the guardian stopped it.
    """
    producers = [r for r in ctx.recorders if r.role == "benign" and r.kind == "producer"]
    lo, hi = windows(ctx, inc)["before"]
    before = _pct([lat for r in producers for ts, _, lat in r.acks if in_window("before", inc, lo, hi, ts, lat)], 99)
    if not before:
        return None
    seconds = int(inc.end - inc.onset)
    buckets: list[list[float]] = [[] for _ in range(seconds)]
    for r in producers:
        for ts, _, lat in r.acks:
            sent = ts - lat - inc.onset
            if 0 <= sent < seconds:
                buckets[int(sent)].append(lat)
    hurt = [bool(b) and (_pct(b, 99) or 0.0) >= factor * before for b in buckets]
    for i in range(seconds - 1):
        if hurt[i] and hurt[i + 1]:
            return inc.onset + i
    return None


def benign_stats(ctx: Any, split: bool = False) -> dict[str, Any]:
    """Per benign tenant and phase: produce latency p50/p99 (ms, by the time each message was sent:
    ``in_window``) and throughput (by ack time), over every incident.

    ``split`` (guardian on) adds the *uncontained* and *contained* parts of *during*.
    """
    out: dict[str, Any] = {}
    cuts = {inc.index: action_times(ctx, inc)[0] for inc in ctx.incidents} if split else {}
    for tenant in sorted({r.tenant for r in ctx.recorders if r.role == "benign"}):
        recs = [r for r in ctx.recorders if r.tenant == tenant and r.role == "benign"]
        producers = [r for r in recs if r.kind == "producer"]
        t: dict[str, Any] = {}
        for phase in PHASES + (SPLIT if split else ()):
            lats: list[float] = []
            nbytes = nmsgs = 0
            span = 0.0
            perf_rates, perf_lat = [], []
            for inc in ctx.incidents:
                lo, hi = windows(ctx, inc, cuts.get(inc.index))[phase]
                if hi <= lo:
                    continue
                span += hi - lo
                for r in producers:
                    for ts, b, lat in r.acks:
                        if lo <= ts < hi:
                            nbytes += b
                            nmsgs += 1
                        if in_window(phase, inc, lo, hi, ts, lat):
                            lats.append(lat * 1000.0)
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
        before = t["before"]["p99_ms"]
        for phase in ("during",) + (SPLIT if split else ()):
            p99 = t[phase]["p99_ms"]
            t[f"p99_ratio_{phase}_vs_before"] = _r(p99 / before if before and p99 else None)
        provisions = [r for r in recs if r.kind == "provision"]
        if provisions:
            t["provision"] = _provision_stats(ctx, provisions, cuts if split else {})
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


def settled_noise(ctx: Any, step_s: float = 5.0, startup_s: float = 60.0) -> dict[str, Any] | None:
    """How far *settled* / *before* strays with nothing happening: the two windows, spaced as in this
    run's first verified incident, laid every ``step_s`` on the quiet stretch before its first incident
    (from ``startup_s`` after the first benign ack); per position the worst tenant's ratio, as the
    headline. p50 / p90 of those, so a settled ratio can be read against this run's own noise."""
    cuts = [(inc, action_times(ctx, inc)[0]) for inc in ctx.incidents]
    acted = [(inc, cut) for inc, cut in cuts if cut is not None and cut < inc.end]
    if not acted:
        return None
    inc, cut = acted[0]
    w = windows(ctx, inc, cut)
    before_len = w["before"][1] - w["before"][0]
    a, b = w["settled"][0] - inc.onset, w["settled"][1] - inc.onset
    by_tenant: dict[str, list[tuple[float, float]]] = {}
    for r in ctx.recorders:
        if r.role == "benign" and r.kind == "producer":
            by_tenant.setdefault(r.tenant, []).extend((ts, lat) for ts, _, lat in r.acks)
    firsts = [ts for acks in by_tenant.values() for ts, _ in acks[:1]]
    if not firsts or b <= a:
        return None
    t, end = min(firsts) + startup_s, min(i.onset for i in ctx.incidents)
    ratios = []
    while t + before_len + b <= end:
        worst = None
        for acks in by_tenant.values():
            lo = t + before_len   # the pseudo onset
            before = [lat for ts, lat in acks if t <= ts - lat and ts < lo]
            settled = [lat for ts, lat in acks if lo + a <= ts - lat < lo + b]
            if len(before) >= 100 and len(settled) >= 100:
                ratio = float(np.percentile(settled, 99) / np.percentile(before, 99))
                worst = ratio if worst is None else max(worst, ratio)
        if worst is not None:
            ratios.append(worst)
        t += step_s
    if not ratios:
        return None
    return {"positions": len(ratios), "p50": _r(_pct(ratios, 50)), "p90": _r(_pct(ratios, 90))}


def _provision_stats(ctx: Any, recs: list[Any], cuts: dict[int, float | None]) -> dict[str, Any]:
    """The ``provision`` clients' deploy steps (create a topic, ack its first record): latency p50/p99
    (ms) per phase, by the time each step began, and p99 during (and its parts) over before."""
    out: dict[str, Any] = {}
    phases = PHASES + (SPLIT if cuts else ())
    for phase in phases:
        lats = [lat * 1000.0 for inc in ctx.incidents for r in recs for ts, _, lat in r.acks
                if in_window(phase, inc, *windows(ctx, inc, cuts.get(inc.index))[phase], ts, lat)]
        out[phase] = {"p50_ms": _r(_pct(lats, 50)), "p99_ms": _r(_pct(lats, 99)), "steps": len(lats)}
    out["errors"] = sum(r.errors for r in recs)
    before = out["before"]["p99_ms"]
    for phase in ("during",) + (SPLIT if cuts else ()):
        p99 = out[phase]["p99_ms"]
        out[f"p99_ratio_{phase}_vs_before"] = _r(p99 / before if before and p99 else None)
    return out


def _rate(recs: list[Any], lo: float, hi: float) -> float | None:
    if hi <= lo:
        return None
    return sum(b for r in recs for ts, b, _ in r.acks if lo <= ts < hi) / (hi - lo)


def throttled(q: dict[str, Any], lo: float = float("-inf"), hi: float = float("inf")) -> bool:
    """Did this quarantine change the cluster (an action applied between ``lo`` and ``hi``)? A watch never does."""
    return any(h.get("status") in ("applied", "verified") and lo <= h.get("ts", lo) < hi
               for a in q["actions"] for h in a["history"])


def watched(q: dict[str, Any]) -> bool:
    """Was this quarantine a watch record at some point (now or before it turned into a throttle)?"""
    return q.get("state") == "watching" or any("watching" in (h.get("from"), h.get("to"))
                                               for h in q.get("history") or [])


def incident_stats(ctx: Any) -> list[dict[str, Any]]:
    detections = getattr(ctx, "detections", [])
    quarantines = getattr(ctx, "quarantines", [])
    out = []
    for inc in ctx.incidents:
        recs = [r for r in ctx.recorders if r.role in ("runaway", "surge") and r.name in inc.client_ids]
        # this incident's detections: from its onset to the end of its "after" phase
        upto = inc.end + ctx.scenario.phases.after_s
        mine = [d for d in detections if inc.onset - 2 <= d["published_at"] < upto
                and inc.matches(d["workload"], d.get("signature"))]
        first = min(mine, key=lambda d: d["published_at"], default=None)
        first_det = first["published_at"] if first else None
        # where the time went: the detector fired on a sample of time ``ts``; publishing took the rest
        fired = float(first["ts"]) if first and isinstance(first.get("ts"), (int, float)) else None
        sigs = sorted({d["signature"] for d in mine})
        verified, applied, action = action_times(ctx, inc)
        hurt = harm_onset(ctx, inc)
        held = [q for q in quarantines if inc.holds(q)]
        ph = ctx.scenario.phases
        cut = verified if verified is not None and verified < inc.end else inc.end
        # what the engine decided about this incident's detections (why nothing was done, if so)
        ids = {d.get("id") for d in mine}
        outcomes: dict[str, int] = {}
        reason, harm, acted_harm = None, None, None
        for dec in getattr(ctx, "decisions", []):
            if dec.get("detection_id") in ids:
                outcomes[dec.get("outcome", "?")] = outcomes.get(dec.get("outcome", "?"), 0) + 1
                reason = dec.get("reason")
                harm = dec.get("harm") or harm
                if dec.get("outcome") in ("quarantined", "escalated") and acted_harm is None:
                    acted_harm = dec.get("harm")
        out.append({
            "incident": inc.index, "tenant": inc.tenant, "pattern": inc.pattern,
            "role": getattr(inc, "role", "runaway"),
            # in this incident's window: a tenant-wide quarantine (a partition storm's) is held by each
            # of its incidents, and a watch opened in one may act in the next
            "throttles": sum(1 for q in held if throttled(q, inc.onset - 2, upto)),
            "watches": sum(1 for q in held
                           if watched(q) and inc.onset - 2 <= q.get("created_at", inc.onset) < upto),
            "harm_when_acted": acted_harm, "last_harm": harm,
            "onset": inc.onset, "signatures": sigs,
            "onset_to_detection_s": _r(first_det - inc.onset if first_det else None),
            "onset_to_detector_fired_s": _r(fired - inc.onset if fired is not None else None),
            "fired_to_published_s": _r(first_det - fired if fired is not None and first_det else None),
            "onset_to_applied_s": _r(applied - inc.onset if applied else None),
            "onset_to_verified_action_s": _r(verified - inc.onset if verified else None),
            # when the benign p99 first held at 3x its normal, and from there to the verified throttle
            # (negative: verified before anyone was hurt that much)
            "onset_to_harm_s": _r(hurt - inc.onset if hurt is not None else None),
            "harm_to_verified_action_s": _r(verified - hurt if verified and hurt is not None else None),
            "action": action,
            "decisions": outcomes, "last_decision_reason": reason,
            "runaway_bytes_per_s": {
                "before": _r(_rate(recs, inc.onset - ph.before_s + 5, inc.onset), 0),
                "during_unthrottled": _r(_rate(recs, inc.onset, cut), 0),
                "during_throttled": _r(_rate(recs, cut + 2, inc.end), 0) if cut + 2 < inc.end else None},
        })
    return out


def false_actions(ctx: Any, watches: bool = False) -> list[dict[str, Any]]:
    """Quarantines on workloads that are not an incident's: those that throttled (or, with
    ``watches``, the watch records that never changed anything)."""
    out = []
    for q in getattr(ctx, "quarantines", []):
        watch_only = watched(q) and not throttled(q)
        if any(inc.holds(q) for inc in ctx.incidents) or watch_only != watches:
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
        res[mode] = {"benign": benign_stats(ctx, split=mode == "on"), "incidents": incident_stats(ctx),
                     "notes": ctx.notes,
                     "runaway_errors": sum(r.errors for r in ctx.recorders if r.role == "runaway")}
    res["expect"] = (on or off).scenario.expect
    if on is not None:
        inc = res["on"]["incidents"]
        det = [i["onset_to_detection_s"] for i in inc if i["onset_to_detection_s"] is not None]
        ver = [i["onset_to_verified_action_s"] for i in inc if i["onset_to_verified_action_s"] is not None]
        res["on"]["false_actions"] = false_actions(on)
        res["on"]["benign_watches"] = false_actions(on, watches=True)
        res["on"]["false_detections"] = false_detections(on)
        res["surge_throttles"] = sum(i["throttles"] for i in inc if i["role"] == "surge")
        res["surge_watches"] = sum(i["watches"] for i in inc if i["role"] == "surge")
        res["runaway_watches"] = sum(i["watches"] for i in inc if i["role"] == "runaway")
        res["onset_to_detection_p50_s"] = _r(_pct(det, 50))
        res["onset_to_detection_p95_s"] = _r(_pct(det, 95))
        res["onset_to_verified_action_p50_s"] = _r(_pct(ver, 50))
        res["onset_to_verified_action_p95_s"] = _r(_pct(ver, 95))
        h2v = [i["harm_to_verified_action_s"] for i in inc if i["harm_to_verified_action_s"] is not None]
        res["harm_to_verified_action_p50_s"] = _r(_pct(h2v, 50))
        res["harm_to_verified_action_p95_s"] = _r(_pct(h2v, 95))
        res["incidents_detected"] = f"{len(det)}/{len(inc)}"
        res["incidents_acted_on"] = f"{len(ver)}/{len(inc)}"
        res["false_actions"] = len(res["on"]["false_actions"])
    for mode in ("on", "off"):
        if mode not in res:
            continue
        tenants = res[mode]["benign"].values()
        res[f"benign_p99_ratio_{mode}"] = _worst(tenants, "p99_ratio_during_vs_before")
        # the benign tenants' acknowledged messages/s during over before (worst tenant): a fall is harm too
        falls = [t["during"]["msgs_per_s"] / t["before"]["msgs_per_s"] for t in tenants
                 if t["before"]["msgs_per_s"] and t["during"]["msgs_per_s"] is not None]
        res[f"benign_throughput_ratio_{mode}"] = _r(min(falls)) if falls else None
        hurt = [i["onset_to_harm_s"] for i in res[mode]["incidents"] if i["onset_to_harm_s"] is not None]
        res[f"onset_to_harm_p50_s_{mode}"] = _r(_pct(hurt, 50))
    if "on" in res:
        for phase in SPLIT:
            res[f"benign_p99_ratio_{phase}_on"] = _worst(res["on"]["benign"].values(),
                                                         f"p99_ratio_{phase}_vs_before")
        res["benign_p99_ratio_settled_noise_on"] = settled_noise(on)
    # the benign deploy steps' p99 (``provision`` clients): the control plane's harm, apart from produce's
    for mode in ("on", "off"):
        provs = [t["provision"] for t in res.get(mode, {}).get("benign", {}).values() if "provision" in t]
        if provs:
            res[f"benign_provision_p99_ratio_{mode}"] = _worst(provs, "p99_ratio_during_vs_before")
            if mode == "on":
                for phase in SPLIT:
                    res[f"benign_provision_p99_ratio_{phase}_on"] = _worst(provs, f"p99_ratio_{phase}_vs_before")
    return res


def _worst(tenants: Any, key: str) -> float | None:
    ratios = [t[key] for t in tenants if t.get(key) is not None]
    return max(ratios) if ratios else None


def _noise_cell(noise: dict[str, Any] | None) -> str:
    return "None" if not noise else f"{noise['p50']} / {noise['p90']} ({noise['positions']})"


HEADLINE_KEYS = ("onset_to_verified_action_p50_s", "onset_to_verified_action_p95_s", "benign_p99_ratio_on",
                 "benign_p99_ratio_off", "false_actions", "benign_p99_ratio_contained_on",
                 "benign_p99_ratio_uncontained_on", "benign_throughput_ratio_off", "surge_throttles",
                 "surge_watches", "benign_provision_p99_ratio_off", "benign_provision_p99_ratio_contained_on",
                 "benign_p99_ratio_settled_on", "onset_to_harm_p50_s_off", "harm_to_verified_action_p50_s")


def headline(res: dict[str, Any]) -> dict[str, Any]:
    return {k: res.get(k) for k in HEADLINE_KEYS}


# ------------------------------------------------------------------------------- files

def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Incident drill: {res['scenario']}", ""]
    m = res.get("machine") or {}
    if m:
        lines += [f"Machine: {m.get('cpus', '?')} cores, load average {m.get('loadavg_at_start', '?')} at the "
                  f"start, {m.get('loadavg', '?')} at the end (1, 5, 15 min); command `{m.get('command', '')}`", ""]
    lines += [f"Broker: {broker_line(res.get('broker'))}", ""]
    lines += ["| measure | value |", "|---|---|",
              f"| benign p99 during / before, guardian off | {res.get('benign_p99_ratio_off')} |",
              f"| benign msgs/s during / before, guardian off | {res.get('benign_throughput_ratio_off')} |",
              f"| onset -> benign p99 at {HARM_FACTOR:g}x its normal, guardian off (p50) | "
              f"{res.get('onset_to_harm_p50_s_off')} s |"]
    if "benign_provision_p99_ratio_off" in res or "benign_provision_p99_ratio_on" in res:
        lines += [f"| benign deploy step (create a topic, ack its first record) p99 during / before, guardian off "
                  f"| {res.get('benign_provision_p99_ratio_off')} |",
                  f"| the same, guardian on: during / uncontained / contained / settled | "
                  f"{res.get('benign_provision_p99_ratio_on')} / {res.get('benign_provision_p99_ratio_uncontained_on')}"
                  f" / {res.get('benign_provision_p99_ratio_contained_on')}"
                  f" / {res.get('benign_provision_p99_ratio_settled_on')} |"]
    if "on" in res and res.get("expect") == "watch":
        lines += [f"| throttles of the surge workloads (must be 0) | {res.get('surge_throttles')} |",
                  f"| watch records on the surge workloads | {res.get('surge_watches')} |",
                  f"| incidents detected | {res.get('incidents_detected')} |",
                  f"| benign p99 during / before, guardian on | {res.get('benign_p99_ratio_on')} |",
                  f"| false actions (benign workloads) | {res.get('false_actions')} |"]
    elif "on" in res:
        lines += [
                  f"| incidents detected / acted on | {res.get('incidents_detected')} / {res.get('incidents_acted_on')} |",
                  f"| onset -> detection p50 / p95 | {res.get('onset_to_detection_p50_s')} s / "
                  f"{res.get('onset_to_detection_p95_s')} s |",
                  f"| onset -> verified action p50 / p95 | {res.get('onset_to_verified_action_p50_s')} s / "
                  f"{res.get('onset_to_verified_action_p95_s')} s |",
                  f"| benign p99 at {HARM_FACTOR:g}x its normal -> verified action p50 / p95 (negative: before) | "
                  f"{res.get('harm_to_verified_action_p50_s')} s / {res.get('harm_to_verified_action_p95_s')} s |",
                  f"| benign p99 during / before, guardian on | {res.get('benign_p99_ratio_on')} |",
                  f"| benign p99 onset to verified throttle / before, guardian on | "
                  f"{res.get('benign_p99_ratio_uncontained_on')} |",
                  f"| benign p99 verified throttle to incident end / before, guardian on | "
                  f"{res.get('benign_p99_ratio_contained_on')} |",
                  f"| the same from {DRAIN_S:g} s after the verified throttle (settled) / before | "
                  f"{res.get('benign_p99_ratio_settled_on')} |",
                  f"| the same two windows on this run's quiet stretch (no incident): p50 / p90 (positions) | "
                  f"{_noise_cell(res.get('benign_p99_ratio_settled_noise_on'))} |",
                  f"| watch records on the runaways | {res.get('runaway_watches')} |",
                  f"| false actions (benign workloads) | {res.get('false_actions')} |"]
    if "on" in res:
        lines += [f"| watch records on benign workloads | {len(res['on'].get('benign_watches', []))} |",
                  f"| false detections (benign clients) | {res['on'].get('false_detections')} |"]
    lines.append("")
    for mode in ("off", "on"):
        if mode not in res:
            continue
        lines += [f"## Guardian {mode}", "", "Benign tenants' produce latency (ms) and throughput:", "",
                  "| tenant | phase | p50 ms | p99 ms | MB/s | msgs/s | ProducerPerformance rec/s, avg ms |",
                  "|---|---|---|---|---|---|---|"]
        for tenant, t in res[mode]["benign"].items():
            for phase in PHASES + tuple(ph for ph in SPLIT if ph in t):
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
            lines.append("")
            for i in res[mode]["incidents"]:
                if i.get("decisions"):
                    what = "acted on" if i["action"] else "not acted on"
                    lines.append(f"- incident {i['incident'] + 1} ({i.get('role', 'runaway')}, {what}; "
                                 f"throttles {i.get('throttles')}, watches {i.get('watches')}): decisions "
                                 f"{i['decisions']}; last: {i.get('last_decision_reason')}")
            fa = res["on"]["false_actions"]
            lines += ["", f"False actions: {len(fa)}" + ("" if not fa else ":")]
            lines += [f"- {f['quarantine']} {f['workload']} {f['signature']} {f['state']} {f['actions']}" for f in fa]
        if res[mode]["notes"]:
            lines += ["", "Notes:"] + [f"- {n}" for n in res[mode]["notes"]]
        lines.append("")
    return "\n".join(lines)


def broker_line(b: dict[str, Any] | None) -> str:
    if not b:
        return "not recorded"
    c = b.get("capacity")
    cap = (f"{c['io_threads']} I/O thread(s) (num.io.threads), {c['network_threads']} network thread(s) "
           f"(num.network.threads), queued.max.requests={c['queued_max_requests']}"
           + (f", log.flush.interval.messages={c['flush_interval_messages']} (fsync every N messages)"
              if c.get("flush_interval_messages") else "")
           + (f", compression.type={c['compression_type']}" if c.get("compression_type", "producer") != "producer"
              else "")
           + (f", compression.gzip.level={c['compression_gzip_level']}"
              if c.get("compression_gzip_level", -1) != -1 else "")
           + (f", memory limit {c['memory_mb']} MB (512 MB heap, the rest page cache)" if c.get("memory_mb") else "")
           + (f", disk reads {c['disk_read_mb_s']:g} MB/s" if c.get("disk_read_mb_s") else "")) \
        if c else "capacity not known"
    quorum = (f"; {b['controllers']} dedicated KRaft controller(s), capacity Kafka's defaults"
              if b.get("controllers") else "")
    return f"{b.get('provider')} at {b.get('bootstrap')}: {cap}" + (", as the scenario states"
                                                                   if b.get("stated_by_scenario") else "") + quorum


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
        if r.role in ("runaway", "surge"):
            groups.setdefault(f"{r.role} {r.tenant} ({r.kind})", []).append(r)
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


RAW = "run.json.gz"   # <out>/<mode>/run.json.gz: what a run recorded, for ``load_run`` and ``--rescore``


def save_run(ctx: Any, path: Path) -> Path:
    """What the report reads from a run (every ack, the incidents, the ledger and detections), as gzip
    JSON, so a report can be computed again (``guardian-dev bench drill --rescore``) without a rerun."""
    data = {"scenario": ctx.scenario.model_dump(mode="json", exclude_none=True), "mode": ctx.mode, "t0": ctx.t0,
            "recorders": [dataclasses.asdict(r) for r in ctx.recorders],
            "incidents": [{**dataclasses.asdict(i), "client_ids": sorted(i.client_ids), "groups": sorted(i.groups)}
                          for i in ctx.incidents],
            "quarantines": getattr(ctx, "quarantines", []), "detections": getattr(ctx, "detections", []),
            "decisions": getattr(ctx, "decisions", []), "notes": ctx.notes}
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(data, f, default=str)
    return path


def load_run(path: Path) -> Any:
    """A run saved by ``save_run``, with the attributes ``summarize`` and ``plot_timeline`` read."""
    from guardian_dev.drill.load import Recorder
    from guardian_dev.drill.runner import Incident
    from guardian_dev.drill.scenario import parse_scenario

    with gzip.open(path, "rt") as f:
        d = json.load(f)
    recs = []
    for r in d["recorders"]:
        rec = Recorder(**r)
        rec.acks = [tuple(a) for a in r["acks"]]      # type: ignore[misc]
        rec.events = [tuple(e) for e in r["events"]]  # type: ignore[misc]
        recs.append(rec)
    incs = [Incident(**{**i, "client_ids": set(i["client_ids"]), "groups": set(i["groups"])}) for i in d["incidents"]]
    return types.SimpleNamespace(scenario=parse_scenario(d["scenario"], str(path)), mode=d["mode"], t0=d["t0"],
                                 recorders=recs, incidents=incs, quarantines=d["quarantines"],
                                 detections=d["detections"], decisions=d["decisions"], notes=d["notes"])


def write_report(res: dict[str, Any], runs: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "drill.json", "markdown": out_dir / "drill.md"}
    for mode, ctx in runs.items():
        if ctx is not None and not isinstance(ctx, types.SimpleNamespace):   # a rescored run is saved already
            files[f"raw_{mode}"] = save_run(ctx, out_dir / mode / RAW)
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
