"""The harm test: does this runaway hurt anyone? Pure: a detection, a ``Pressure`` snapshot and
the policy's ``HarmTest`` in, a ``Harm`` out.

A detection says a workload ran away from its own normal. That alone is a change, not harm: a
backfill, a launch or a scale-up changes too. The engine throttles automatically only when one
of these holds (checked in this order; the first that holds is the reason):

1. ``pressure``: a broker is under pressure (a ``PressureTargets`` line is crossed) and this
   workload has at least ``min_share`` of that broker's thread time or of its bytes in the
   detection's direction, so its load explains the pressure. The throttle is then sized to shed
   the workload's part of the missing headroom (``scale``: idle back to its target and the
   others' wait back near what it was), never below its own baseline;
2. ``budget``: the workload breaks one of the policy's absolute budgets: a budget is a sustained
   rate, and a metric with a ``bursts`` entry breaks it only once its excess over the budget, over
   the detection's duration, is more than that burst (a token bucket, as Kafka's own controller
   mutation quota: a deploy creates its topics at once). Every rate of its signature is judged
   (``extra["rates"]``, averages since the onset: a partition storm's topic and partition creation
   rates), whichever series fired;
3. ``extreme``: its ratio to its normal is at least ``extreme_ratio`` for ``extreme_evidence_s``;
4. ``unknown``: no broker has fresh pressure signals and ``on_unknown_pressure`` is ``act``.

Otherwise the decision is a ``watch``: recorded and escalated, nothing changed on the cluster.

Example::

    >>> from guardian.policy.config import HarmTest
    >>> from guardian.policy.pressure import BrokerPressure, ClientLoad, Pressure
    >>> calm = Pressure(ts=0.0, brokers={"b1": BrokerPressure("b1", 0.0, {"request_handler_idle": 0.8}, {}, {})})
    >>> assess(_example_detection(), calm, HarmTest(), 0.0).reason
    'none'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from guardian.model.detection import Detection, Signature
from guardian.policy.pressure import BrokerPressure, ClientLoad, Pressure
from guardian.policy.config import HarmTest

PRODUCE_SIDE = frozenset({Signature.RUNAWAY_PRODUCER, Signature.RETRY_STORM, Signature.PARTITION_STORM})
CONSUME_SIDE = frozenset({Signature.RUNAWAY_CONSUMER, Signature.LAG_EXPLOSION, Signature.REBALANCE_STORM})
# A consumer's fetch waits up to fetch.wait.max.ms (500 ms by default) on a quiet topic by design, so where
# long polls set Fetch total time's normal (>= LONG_POLL_NORMAL_MS) it swings with how much data there is,
# not with how busy the broker is, and is no pressure signal. Where fetches normally return fast (busy
# topics), a 3x rise is a broker answering late. Fetch queue time (waiting for a handler) is always one.
LONG_POLL_SIGNALS = frozenset({"request_total_time_p99:Fetch"})
LONG_POLL_NORMAL_MS = 250.0
_IDLE = (("request_handler_idle", "request handlers"), ("network_processor_idle", "network threads"))


@dataclass(frozen=True)
class Harm:
    harmful: bool
    reason: str                 # pressure | budget | extreme | unknown | disabled | none
    line: str                   # one line for a human: what harm was seen, or that none was
    broker: str | None = None   # the pressured broker the workload explains
    share: float | None = None  # its share of that broker's load
    scale: float | None = None  # pressure only: keep this fraction of its current load (idle-based)
    load: dict[str, float] | None = None   # pressure only: its ClientLoad on that broker

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def breaches(b: BrokerPressure, cfg: HarmTest) -> list[str]:
    """What puts broker ``b`` under pressure, one phrase each; empty when it is healthy."""
    t = cfg.pressure
    out = []
    for name, what in _IDLE:
        idle = b.signals.get(name)
        if idle is not None and idle < t.idle_below:
            out.append(f"{what} {_pct(idle)} idle (line {_pct(t.idle_below)})")
    for name, normal in sorted(b.normals.items()):
        if name in LONG_POLL_SIGNALS and normal >= LONG_POLL_NORMAL_MS:
            continue
        value = b.signals.get(name)
        metric, _, req = name.partition(":")
        if "queue" in metric:
            kind, floor, factor = "queue", t.queue_floor_ms, t.queue_factor
        else:
            kind, floor, factor = "total", t.latency_floor_ms, t.latency_factor
        if value is not None and value > floor and value >= factor * normal:
            out.append(f"{req or 'request'} p99 {kind} time {value:.0f} ms (normal {normal:.0f} ms)")
    urp = b.signals.get("under_replicated_partitions")
    if urp is not None and urp > t.under_replicated_above:
        out.append(f"{urp:.0f} under-replicated partitions")
    return out


def _health(b: BrokerPressure) -> str:
    bits = [f"{what} {_pct(b.signals[name])} idle" for name, what in _IDLE if name in b.signals]
    p99 = b.signals.get("request_total_time_p99:Produce")
    if p99 is not None:
        bits.append(f"Produce p99 {p99:.0f} ms")
    return f"{b.broker}: " + (", ".join(bits) or "no signals")


def workload_load(detection: Detection, b: BrokerPressure) -> ClientLoad:
    """The detection's workload's load on ``b``: its client-id, its group's members, or all of the principal's."""
    wl = detection.workload
    principal = wl.get("principal")
    if wl.get("client_id"):
        return b.load_of(principal, [wl["client_id"]])
    members = [str(c) for c in detection.extra.get("client_ids") or [] if c]
    if members:
        return b.load_of(principal, members)
    if principal:
        return b.load_of(principal)
    return ClientLoad()


def share_of(detection: Detection, b: BrokerPressure) -> float:
    """The workload's share of ``b``'s thread time or of its bytes in the detection's direction, whichever is larger."""
    mine, total = workload_load(detection, b), b.total
    shares = []
    if total.request_time > 0:
        shares.append(mine.request_time / total.request_time)
    sig = detection.signature
    if sig not in CONSUME_SIDE and total.bytes_in > 0:
        shares.append(mine.bytes_in / total.bytes_in)
    if sig not in PRODUCE_SIDE and total.bytes_out > 0:
        shares.append(mine.bytes_out / total.bytes_out)
    return min(1.0, max(shares, default=0.0))


def proportionate_scale(b: BrokerPressure, share: float, cfg: HarmTest, ratio: float | None = None) -> float | None:
    """The fraction of its current load the workload may keep so the broker is back under both targets.

    busy = 1 - idle (the most starved of the handler and network pools); the workload is ``share``
    of that and sheds the whole gap to the target busy level, or all it has. The target is the
    tighter of two:

    - idle back to ``target_idle``;
    - given the detection's ``ratio`` (its load over its normal), the others' wait for a thread at
      most ``wait_growth`` times what it was before the workload ran away. The broker's busy level
      before is today's less the workload's excess (``share * busy * (1 - 1/ratio)``), and a wait
      for a thread grows as busy / (1 - busy) (one server, M/M/1): on a broker that was 22 % busy,
      70 % idle still makes the others wait 1.5x longer (the 1-broker ramp drill settled at 1.43x
      under it). A pool of many threads queues less than that at the same busy level, so for it
      the estimate is on the others' side; the baseline floor (``intents_for``) bounds it for the
      runaway.

    A pool under its target but above its line counts too (pressure shown by queue time: a few
    threads busy with large requests queue the others' while still half idle). None when the
    broker is already under both targets (nothing to shed) or gave no idle signal.
    """
    t = cfg.pressure
    idles = [b.signals[n] for n, _ in _IDLE if n in b.signals]
    if not idles or share <= 0:
        return None
    busy = 1.0 - min(max(min(idles), 0.0), 1.0)
    mine = share * busy
    target = 1.0 - t.target_idle
    if t.wait_growth is not None and ratio is not None and ratio > 1:
        before = min(max(busy - mine * (1.0 - 1.0 / ratio), 0.0), 0.99)
        k = t.wait_growth * before / (1.0 - before)
        target = min(target, k / (1.0 + k))
    need = busy - target
    if need <= 0:   # also when busy (so mine) is 0: the target is never below 0
        return None
    return max(0.0, mine - need) / mine


def over_budget(detection: Detection, cfg: HarmTest) -> str | None:
    """The line saying which budget ``detection``'s workload breaks, or None (module docstring, 2.).

    A budget without a burst is judged on the metric's value now (the detection's ``observed``); one
    with a burst on its average since the onset (``extra["rates"]``) times the detection's duration."""
    rates = detection.extra.get("rates", {})
    for metric in dict.fromkeys([detection.metric, *rates]):
        budget = cfg.budgets.get(metric)
        if budget is None:
            continue
        burst = cfg.bursts.get(metric)
        if burst is None:
            value = detection.observed if metric == detection.metric else rates[metric]
            if value > budget:
                return f"{metric} {value:.4g} breaks the policy budget of {budget:.4g}"
            continue
        value = rates.get(metric, detection.observed)
        excess = (value - budget) * detection.duration_s
        if value > budget and excess > burst:
            return (f"{metric} {value:.4g} on average for {detection.duration_s:.0f}s breaks the policy budget "
                    f"of {budget:.4g} by {excess:.0f}, more than its burst of {burst:.4g}")
    return None


def assess(detection: Detection, pressure: Pressure | None, cfg: HarmTest, now: float) -> Harm:
    """Does ``detection``'s runaway hurt? See the module docstring for the order of the tests."""
    if not cfg.enabled:
        return Harm(True, "disabled", "harm test off: throttling on change alone")
    fresh = [b for b in (pressure.brokers.values() if pressure else [])
             if b.signals and now - b.ts <= cfg.stale_after_s]
    pressured = [(b, breaches(b, cfg)) for b in fresh]
    pressured = [(b, why) for b, why in pressured if why]
    best: tuple[BrokerPressure, list[str], float] | None = None
    for b, why in pressured:
        share = share_of(detection, b)
        if best is None or share > best[2]:
            best = (b, why, share)
    if best is not None and best[2] >= cfg.min_share:
        b, why, share = best
        return Harm(True, "pressure", f"broker {b.broker} under pressure ({'; '.join(why)}); this workload has "
                    f"{_pct(share)} of its load", broker=b.broker, share=round(share, 3),
                    scale=proportionate_scale(b, share, cfg, detection.ratio), load=asdict(workload_load(detection, b)))
    broken = over_budget(detection, cfg)
    if broken is not None:
        return Harm(True, "budget", broken)
    if detection.ratio >= cfg.extreme_ratio and detection.duration_s >= cfg.extreme_evidence_s:
        return Harm(True, "extreme", f"{detection.ratio:.0f}x its normal for {detection.duration_s:.0f}s "
                    f"(extreme from {cfg.extreme_ratio:.0f}x for {cfg.extreme_evidence_s:.0f}s)")
    if best is not None:
        b, why, share = best
        return Harm(False, "none", f"broker {b.broker} is under pressure ({'; '.join(why)}) but this workload has "
                    f"only {_pct(share)} of its load (needs {_pct(cfg.min_share)}); watching",
                    broker=b.broker, share=round(share, 3))
    if not fresh:
        if cfg.on_unknown_pressure == "act":
            return Harm(True, "unknown", "no fresh broker pressure signals; on_unknown_pressure is 'act'")
        return Harm(False, "none", "no fresh broker pressure signals, so no harm can be shown; watching")
    return Harm(False, "none", "no harm seen (" + "; ".join(_health(b) for b in fresh[:3]) + "); watching")


def _example_detection() -> Detection:  # for the doctest
    from guardian.model.detection import Severity

    return Detection(id="d1", ts=0.0, signature=Signature.RUNAWAY_PRODUCER, severity=Severity.HIGH,
                     confidence=0.9, workload={"principal": "User:a", "client_id": "x"},
                     metric="produce_byte_rate", baseline=1e5, observed=8e5, ratio=8.0, duration_s=10.0)
