"""Replay labelled real series through the detectors and the engine's decision code against a
simulated broker: does the guardian throttle harm, and only harm?

``guardian-dev eval replay DIR`` reads a NAB-layout corpus (``DIR/<category>/<name>.csv`` with
``timestamp,value``) and plays each file as one client's produce rate, one row per second:

* **The client.** A series becomes bytes/s by one rule for every file (``client_rates``): a
  series with negative values is shifted so its minimum is 0; it is then scaled so the median of
  its positive values is ``CLIENT_MEDIAN`` (100 kB/s; for most files that is simply its median,
  for the mostly-idle ones it is the level of their active rows). NAB's timestamps only place
  the labelled windows; row ``i`` is second ``i``.
* **The broker** (``BrokerModel``): one broker, shared by the client and ``peers`` steady
  peers of ``peer_rate`` each. Its request handlers saturate at ``capacity`` bytes/s, sized per
  series by one rule: ``headroom`` x (the peers' sum + the client's peak benign rate), so a
  benign shape alone never takes more than 1/headroom of it. Handler idle is
  ``1 - offered/capacity`` (clamped to 0..1); the network threads saturate at
  ``network_factor`` x capacity; produce p99 total time is M/M/1's
  ``service_ms * ln(100) / (1 - rho)`` with ``rho = min(offered/capacity, rho_max)``, and its
  p99 queue time (the wait for one of the ``handler_threads``) M/M/c's: with C the Erlang C
  probability that a request waits, P(wait > t) = C exp(-c (1 - rho) t / service_ms), so the p99
  is ``service_ms * ln(100 C) / (c (1 - rho))``, 0 while C <= 1 %. (M/M/1's wait, a one-thread
  broker's, put a benign peak at 67 % load at 12x the service time and crossed the queue line.) Over
  capacity the broker takes only ``capacity``, each client in proportion to what it offers.
  Each client's ``REQUEST_TIME_SHARE`` is its part of the busy handler time in Kafka's unit
  (percent of one thread, ``handler_threads`` threads). Consumers read every produced byte
  ``fanout`` times, so the cluster's traffic (the share-of-traffic cap) is in + out.
* **The guardian**: ``guardian.app.run.DetectorStage`` over a ``DetectorPipeline`` with the
  shipped ``DetectorConfig`` (it re-emits an ongoing episode with growing evidence, as
  ``guardian run`` does), ``ClusterPressure`` and ``ClusterTraffic`` fed every second, and
  ``guardian.policy.decide.decide`` with the shipped default policy for every (re-)emitted
  detection. A tiny in-memory ledger (``_Ledger``) keeps what the engine would: the client's
  open quarantine or watch record, its expiry and probation. A throttle caps the client's rate
  at the decision's ``producer_byte_rate`` from 1 s after the decision until its TTL.
* **Runs.** Each file is replayed once as it is (benign: its own labelled anomalies are not
  harm to a Kafka cluster) and once per ``Injection`` (the client's rate multiplied, as a step
  or a ramp, at a share of the file for a duration), stopped ``TAIL_S`` after the injection.

Pure apart from reading the files: the clock is the replayed second.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from guardian.errors import ConfigError

DAY = 86_400.0
CLIENT_MEDIAN = 100_000.0     # bytes/s a series' median (of its positive values) is mapped to
T0 = 1_700_000_000.0          # the replay's first second (unix time)
TAIL_S = 300.0                # an injected run goes on this long after the injection ends
GRACE_S = 30.0                # decisions this long after an injection ends still belong to it
BROKER = "broker-1"
PRINCIPAL = "User:replay"


# ------------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class BrokerModel:
    """The simulated broker; see the module docstring. One configuration for every file."""

    peers: int = 9
    peer_rate: float = 100_000.0      # bytes/s each peer produces, steadily
    headroom: float = 1.5             # capacity = headroom x (peers' sum + the client's peak)
    handler_threads: int = 8          # num.io.threads (Kafka's default)
    network_factor: float = 2.0       # network threads saturate at this x capacity
    service_ms: float = 2.0           # M/M/1 mean service time of a produce request
    rho_max: float = 0.99             # the p99 curve is clamped here (an overloaded queue)
    fanout: float = 1.0               # consumers read each produced byte this many times

    def capacity(self, client_rates: np.ndarray) -> float:
        peak = float(np.max(client_rates)) if len(client_rates) else 0.0
        return self.headroom * (self.peers * self.peer_rate + peak)

    def signals(self, offered: float, capacity: float) -> tuple[float, float, float, float]:
        """(request-handler idle, network-processor idle, produce p99 total ms, produce p99 queue ms) at
        ``offered`` bytes/s."""
        load = offered / capacity
        idle = min(1.0, max(0.0, 1.0 - load))
        net_idle = min(1.0, max(0.0, 1.0 - load / self.network_factor))
        rho = min(load, self.rho_max)
        total = self.service_ms * math.log(100.0) / (1.0 - rho)
        c = self.handler_threads
        waits = erlang_c(c, rho)
        queue = self.service_ms * math.log(100.0 * waits) / (c * (1.0 - rho)) if waits > 0.01 else 0.0
        return idle, net_idle, total, queue


def erlang_c(c: int, rho: float) -> float:
    """The probability that a request waits in an M/M/c queue at utilization ``rho`` (< 1).

    >>> round(erlang_c(1, 0.5), 3), round(erlang_c(8, 0.5), 3), round(erlang_c(8, 0.9), 3)
    (0.5, 0.059, 0.702)
    """
    a = c * rho                      # offered load in Erlangs
    term, below = 1.0, 1.0           # a^k / k!, and their sum for k < c
    for k in range(1, c):
        term *= a / k
        below += term
    top = term * a / c / (1.0 - rho)   # a^c / c! * 1 / (1 - rho)
    return top / (below + top)


@dataclass(frozen=True)
class Injection:
    """A harmful runaway: the client's rate times ``factor`` (reached over ``ramp_s``) from
    ``at`` (share of the file's rows) for ``duration_s``."""

    name: str
    factor: float
    ramp_s: float = 0.0
    at: float = 0.6
    duration_s: float = 120.0

    def multiplier(self, since_s: float) -> float:
        if since_s < 0 or since_s >= self.duration_s:
            return 1.0
        if self.ramp_s > 0 and since_s < self.ramp_s:
            return 1.0 + (self.factor - 1.0) * (since_s + 1.0) / self.ramp_s
        return self.factor


DEFAULT_INJECTIONS: tuple[Injection, ...] = (
    Injection("step 10x", 10.0), Injection("step 25x", 25.0), Injection("ramp 20x/30s", 20.0, ramp_s=30.0))


# ------------------------------------------------------------------------------- the corpus

@dataclass
class ReplaySeries:
    key: str                                  # "category/name.csv"
    values: np.ndarray                        # the file's values, as written
    windows: list[tuple[int, int]] = field(default_factory=list)   # labelled rows, inclusive

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1].removesuffix(".csv")


def client_rates(values: np.ndarray) -> np.ndarray:
    """A series as one client's produce bytes/s (the rule in the module docstring).

    >>> client_rates(np.array([1.0, 2.0, 2.0, 4.0])).tolist()
    [50000.0, 100000.0, 100000.0, 200000.0]
    >>> client_rates(np.array([-1.0, 0.0, 1.0])).tolist()   # shifted, then the positive median
    [0.0, 66666.66666666667, 133333.33333333334]
    """
    v = np.asarray(values, dtype=np.float64)
    low = float(np.min(v)) if len(v) else 0.0
    if low < 0:
        v = v - low
    positive = v[v > 0]
    if not len(positive):
        return np.zeros_like(v)
    return v * (CLIENT_MEDIAN / float(np.median(positive)))


def _parse_ts(text: str) -> float:
    dt = datetime.fromisoformat(text.strip())
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def load_windows(path: Path | None) -> dict[str, list[tuple[float, float]]]:
    """``combined_windows.json`` as unix-second spans per key; ``{}`` when ``path`` is None."""
    if path is None:
        return {}
    try:
        raw = json.loads(Path(path).read_text())
        if not isinstance(raw, dict):
            raise ValueError("expected an object of 'category/name.csv': [[start, end], ...]")
        return {k: [(_parse_ts(a), _parse_ts(b)) for a, b in spans] for k, spans in raw.items()}
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"windows file {path}: {exc}") from exc


def read_series(path: Path, key: str, spans: list[tuple[float, float]]) -> ReplaySeries:
    """One ``timestamp,value`` file; ``ConfigError`` naming the file and line when it is malformed."""
    try:
        with Path(path).open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not rows or [h.strip() for h in rows[0][:2]] != ["timestamp", "value"]:
        raise ConfigError(f"{path}: line 1: expected the header 'timestamp,value'")
    ts, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 2:
            raise ConfigError(f"{path}: line {line}: expected 'timestamp,value', got {','.join(row)!r}")
        try:
            ts.append(_parse_ts(row[0]))
        except ValueError:
            raise ConfigError(f"{path}: line {line}: bad timestamp {row[0]!r}") from None
        try:
            x = float(row[1])
        except ValueError:
            x = math.nan
        if not math.isfinite(x):
            raise ConfigError(f"{path}: line {line}: value {row[1]!r} is not a finite number")
        values.append(x)
    if not values:
        raise ConfigError(f"{path}: no rows")
    t = np.array(ts)
    windows = []
    for a, b in spans:
        inside = np.nonzero((t >= a) & (t <= b))[0]
        if len(inside):
            windows.append((int(inside[0]), int(inside[-1])))
    return ReplaySeries(key=key, values=np.array(values), windows=windows)


def load_corpus(data_dir: Path, windows_file: Path | None = None) -> list[ReplaySeries]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"data directory {data_dir} does not exist")
    files = sorted(data_dir.glob("*/*.csv"))
    if not files:
        raise ConfigError(f"no <category>/<name>.csv files under {data_dir}")
    windows = load_windows(windows_file)
    return [read_series(p, f"{p.parent.name}/{p.name}", windows.get(f"{p.parent.name}/{p.name}", []))
            for p in files]


# ------------------------------------------------------------------------------- one run

class _Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _Ledger:
    """What the engine's ledger would hold for the one decided workload (``Engine._handle_once``)."""

    def __init__(self, policies: Any) -> None:
        self.policies = policies
        self.q: Any = None
        self.probation: dict[str, Any] | None = None
        self.watch_records = 0

    def expire(self, now: float) -> bool:
        """End the quarantine at its TTL (probation after one that acted); True when one ended."""
        from guardian.model.lifecycle import move
        from guardian.model.quarantine import QState

        q = self.q
        if q is None or now < q.expires_at:
            return False
        acted = q.state.enforcing
        move(q, QState.EXPIRED, now, "replay", "ttl")
        p = self.policies.global_.probation
        if acted and not q.dry_run and p.duration_s > 0:
            self.probation = {"until": now + p.duration_s, "rung": q.rung, "policy": q.policy}
        self.q = None
        return True

    def view(self, pressure: Any, cluster_traffic: float | None) -> Any:
        from guardian.policy.decide import View

        counting = self.q is not None and self.q.counts_for_caps
        return View(open_quarantines=int(counting),
                    throttled_traffic=self.q.traffic if counting and self.q.throttles else 0.0,
                    cluster_traffic=cluster_traffic, existing=self.q, probation=self.probation,
                    pressure=pressure)

    def record(self, d: Any, det: Any, now: float) -> None:
        from guardian.policy.decide import traffic_of
        from guardian.model.lifecycle import move
        from guardian.model.quarantine import Outcome, QState, Quarantine, workload_key
        from guardian.policy.config import ThrottleRung

        q = self.q
        g = self.policies.global_
        if q is not None and q.state is QState.WATCHING:
            if d.outcome is Outcome.QUARANTINED:
                rung = self.policies.policy(q.policy).ladder[q.rung]
                q.traffic, q.throttles, q.harm = traffic_of(det), isinstance(rung, ThrottleRung), d.harm
                move(q, QState.ACTIVE, now, "replay", d.reason)
                q.rung_at, q.expires_at = now, now + rung.ttl_s
            return
        new = {Outcome.QUARANTINED: QState.ACTIVE, Outcome.AWAITING_APPROVAL: QState.AWAITING_APPROVAL,
               Outcome.SHADOW: QState.PROPOSED, Outcome.WATCH: QState.WATCHING}
        if q is None and d.outcome in new:
            rung = self.policies.policy(d.policy).ladder[d.rung]
            watch = d.outcome is Outcome.WATCH
            q = Quarantine(id=d.quarantine_id, workload=dict(det.workload), workload_key=workload_key(det.workload),
                           policy=d.policy, state=QState.PROPOSED, rung=d.rung, dry_run=d.dry_run,
                           created_at=now, updated_at=now, rung_at=now,
                           expires_at=now + (g.harm.watch_ttl_s if watch else rung.ttl_s),
                           traffic=traffic_of(det), throttles=isinstance(rung, ThrottleRung) and not watch,
                           detection=det.to_dict(), harm=d.harm)
            if new[d.outcome] is not QState.PROPOSED:
                move(q, new[d.outcome], now, "replay", d.reason)
            self.q = q
            self.watch_records += watch
        elif q is not None and d.outcome is Outcome.ESCALATED:
            q.rung, q.rung_at = d.rung, now
            q.expires_at = max(q.expires_at, now + self.policies.policy(q.policy).ladder[d.rung].ttl_s)
        elif q is not None and d.outcome is Outcome.ESCALATION_AWAITING_APPROVAL:
            q.pending_rung = d.rung     # no human answers in a replay: it stays under review


@dataclass
class Throttle:
    """One decision that throttled the client."""

    t: float                 # replayed second of the decision (0 = the file's first row)
    in_window: bool          # inside one of the file's labelled anomaly windows
    reason: str
    harm_reason: str | None
    harm_line: str | None
    quota: float | None      # producer_byte_rate bytes/s
    ratio: float
    duration_s: float


@dataclass
class InjectedResult:
    injection: str
    onset_t: float
    saturates: bool                      # median handler idle from onset to the throttle (or the end) under the line
    idle_median: float | None            # that median
    top_reason: str | None               # the most frequent decision (outcome: reason) about it
    detected: bool
    first_detection_s: float | None      # onset -> first detection
    throttled: bool
    time_to_throttle_s: float | None     # onset -> the throttle decision (the cap holds 1 s later)
    watched: bool                        # a watch decision while it ran
    outcomes: dict[str, int]             # decisions about it, by outcome
    harm_reason: str | None
    harm_line: str | None
    idle_min: float                      # lowest handler idle while it ran
    idle_after: float | None             # mean handler idle from 5 s after the cap until it ends
    throttled_before_onset: bool         # a benign throttle's cap was already on the client


@dataclass
class RunResult:
    key: str
    seconds: int
    capacity: float
    injection: str | None
    detections: int                       # episodes the pipeline opened
    decisions: dict[str, int]
    throttles: list[Throttle]
    watch_records: int
    injected: InjectedResult | None = None


def replay_run(series: ReplaySeries, policies: Any, model: BrokerModel = BrokerModel(),
               injection: Injection | None = None, detector_config: Any = None) -> RunResult:
    """Play one file (optionally with one injected runaway) through detectors, pressure and decide()."""
    from guardian.detectors.config import DetectorConfig
    from guardian.detectors.pipeline import DetectorPipeline
    from guardian.policy.decide import decide
    from guardian.model.quarantine import Outcome
    from guardian.policy.pressure import ClusterPressure
    from guardian.model.samples import SampleBatch
    from guardian.ingest.stage import ClusterTraffic, DetectorStage
    from guardian.model.samples import Metric, Sample, Workload

    rates = client_rates(series.values)
    capacity = model.capacity(rates)
    clock = _Clock()
    stage = DetectorStage(DetectorPipeline(detector_config or DetectorConfig(), clock=clock))
    pressure = ClusterPressure(clock=clock)
    traffic = ClusterTraffic(clock=clock)
    ledger = _Ledger(policies)
    idle_line = policies.global_.harm.pressure.idle_below

    client = Workload(principal=PRINCIPAL, client_id=series.name)
    client_at_broker = replace(client, broker=BROKER)
    peers = [Workload(principal=f"User:peer-{i}", client_id=f"peer-{i}", broker=BROKER) for i in range(model.peers)]
    broker = Workload(broker=BROKER)
    produce = {"request": "Produce"}
    in_window = np.zeros(len(rates), dtype=bool)
    for a, b in series.windows:
        in_window[a:b + 1] = True

    n = len(rates)
    onset_row = end_row = None
    if injection is not None:
        onset_row = min(n - 1, int(injection.at * n))
        end_row = onset_row + int(injection.duration_s)
        n = min(n, end_row + int(TAIL_S))
    quota: float | None = None
    quota_from = math.inf
    episodes: set[str] = set()          # detection ids without the re-emission's slow-phase suffix
    decisions: Counter[str] = Counter()
    throttles: list[Throttle] = []
    inj_outcomes: Counter[str] = Counter()
    inj: dict[str, Any] = {"detected_at": None, "throttle": None, "watched": False, "idle_min": 1.0,
                           "after": [], "before": [], "capped_at_onset": False,
                           "reasons": Counter()}
    peer_total = model.peers * model.peer_rate

    for i in range(n):
        now = T0 + i
        clock.now = now
        if ledger.expire(now):
            quota, quota_from = None, math.inf
        offered = float(rates[i])
        injecting = onset_row is not None and onset_row <= i < end_row
        if injecting:
            offered *= injection.multiplier(float(i - onset_row))
        if i >= quota_from and quota is not None:
            offered = min(offered, quota)
        total = offered + peer_total
        served = min(1.0, capacity / total) if total > 0 else 1.0
        mine, peer = offered * served, model.peer_rate * served
        idle, net_idle, p99, queue_p99 = model.signals(total, capacity)
        busy_pct = 100.0 * model.handler_threads * (1.0 - idle)     # percent of one thread, all clients
        share = (lambda x: busy_pct * x / (total * served)) if total > 0 else (lambda x: 0.0)
        pressure.observe([Sample(now, broker, Metric.REQUEST_HANDLER_IDLE, idle),
                          Sample(now, broker, Metric.NETWORK_PROCESSOR_IDLE, net_idle),
                          Sample(now, broker, Metric.REQUEST_TOTAL_TIME_P99, p99, labels=produce),
                          Sample(now, broker, Metric.REQUEST_QUEUE_TIME_P99, queue_p99, labels=produce),
                          Sample(now, client_at_broker, Metric.REQUEST_TIME_SHARE, share(mine)),
                          Sample(now, client_at_broker, Metric.PRODUCE_BYTE_RATE, mine)])
        pressure.observe([s for w in peers for s in (Sample(now, w, Metric.REQUEST_TIME_SHARE, share(peer)),
                                                     Sample(now, w, Metric.PRODUCE_BYTE_RATE, peer))])
        traffic.observe(SampleBatch(broker, (Metric.PRODUCE_BYTE_RATE, Metric.FETCH_BYTE_RATE), (now, now),
                                    (total * served, model.fanout * total * served)))
        if injecting:
            if i == onset_row and quota is not None:
                inj["capped_at_onset"] = True
            inj["idle_min"] = min(inj["idle_min"], idle)
            if inj["throttle"] is None:
                inj["before"].append(idle)
            if inj["throttle"] is not None and i >= onset_row + inj["throttle"] + 6:
                inj["after"].append(idle)

        out = stage.process(SampleBatch(client, (Metric.PRODUCE_BYTE_RATE,), (now,), (mine,), source="replay"))
        if not out:
            continue
        snap = pressure.snapshot()
        cluster = traffic()
        for det in out:
            episodes.add(det.id.split(".", 1)[0])
            d = decide(det, policies, ledger.view(snap, cluster), now)
            ledger.record(d, det, now)
            decisions[d.outcome.value] += 1
            mine_inj = onset_row is not None and onset_row <= i <= end_row + GRACE_S
            if mine_inj:
                inj_outcomes[d.outcome.value] += 1
                if inj["detected_at"] is None:
                    inj["detected_at"] = i - onset_row
                inj["watched"] |= d.outcome is Outcome.WATCH
                inj["reasons"][f"{d.outcome.value}: {d.reason}"] += 1
            if d.acts:
                q = _quota_of(d.intents)
                if q is not None:
                    quota, quota_from = q, i + 1
                harm = d.harm or {}
                throttles.append(Throttle(t=float(i), in_window=bool(in_window[min(i, len(in_window) - 1)]),
                                          reason=d.reason, harm_reason=harm.get("reason"), harm_line=harm.get("line"),
                                          quota=q, ratio=round(det.ratio, 2), duration_s=det.duration_s))
                if mine_inj and inj["throttle"] is None:
                    inj["throttle"] = i - onset_row
                    inj["harm"] = (harm.get("reason"), harm.get("line"))

    injected = None
    if injection is not None and onset_row is not None:
        t = inj["throttle"]
        injected = InjectedResult(
            injection=injection.name, onset_t=float(onset_row),
            saturates=bool(inj["before"]) and float(np.median(inj["before"])) < idle_line,
            idle_median=round(float(np.median(inj["before"])), 3) if inj["before"] else None,
            top_reason=inj["reasons"].most_common(1)[0][0] if inj["reasons"] else None,
            detected=inj["detected_at"] is not None, first_detection_s=inj["detected_at"],
            throttled=t is not None, time_to_throttle_s=t, watched=inj["watched"], outcomes=dict(inj_outcomes),
            harm_reason=inj.get("harm", (None, None))[0], harm_line=inj.get("harm", (None, None))[1],
            idle_min=round(inj["idle_min"], 3),
            idle_after=round(float(np.mean(inj["after"])), 3) if inj["after"] else None,
            throttled_before_onset=inj["capped_at_onset"])
        # the benign part of an injected run is the benign run's business: keep only the injection's throttles
        throttles = [x for x in throttles if onset_row <= x.t <= end_row + GRACE_S]
    return RunResult(key=series.key, seconds=n, capacity=round(capacity, 1),
                     injection=injection.name if injection else None, detections=len(episodes),
                     decisions=dict(decisions), throttles=throttles, watch_records=ledger.watch_records,
                     injected=injected)


def _quota_of(intents: list[dict[str, Any]]) -> float | None:
    rates = [float(i["params"]["producer_byte_rate"]) for i in intents
             if i.get("kind") == "quota" and "producer_byte_rate" in i.get("params", {})]
    return min(rates) if rates else None


# ------------------------------------------------------------------------------- the report

def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 1) if xs else None


def per_1000_days(count: int, seconds: float) -> float | None:
    """``count`` events per 1,000 workload-days of ``seconds`` replayed (one workload-day = 86,400 s).

    >>> per_1000_days(1, 86_400 * 2)
    500.0
    """
    return round(1000.0 * count / (seconds / DAY), 1) if seconds > 0 else None


@dataclass
class ReplayReport:
    model: BrokerModel
    injections: tuple[Injection, ...]
    benign: list[RunResult]
    injected: list[RunResult]

    def summary(self) -> dict[str, Any]:
        seconds = sum(r.seconds for r in self.benign)
        throttles = [(r.key, t) for r in self.benign for t in r.throttles]
        inside = [x for x in throttles if x[1].in_window]
        watches = sum(r.watch_records for r in self.benign)
        decisions: Counter[str] = Counter()
        for r in self.benign:
            decisions.update(r.decisions)
        out: dict[str, Any] = {
            "files": len(self.benign), "replayed_seconds": seconds, "workload_days": round(seconds / DAY, 3),
            "benign": {
                "detections": sum(r.detections for r in self.benign),
                "decisions": dict(sorted(decisions.items())),
                "throttles": len(throttles),
                "throttles_per_1000_workload_days": per_1000_days(len(throttles), seconds),
                "throttles_outside_windows": len(throttles) - len(inside),
                "throttles_outside_windows_per_1000_workload_days": per_1000_days(len(throttles) - len(inside), seconds),
                "throttles_inside_windows": len(inside),
                "throttles_inside_windows_per_1000_workload_days": per_1000_days(len(inside), seconds),
                "watch_records": watches,
                "watch_records_per_1000_workload_days": per_1000_days(watches, seconds),
                "throttled": [{"key": k, **asdict(t)} for k, t in throttles],
            },
            "injected": {},
            "model": asdict(self.model), "client_median_bytes_s": CLIENT_MEDIAN,
            "injections": [asdict(i) for i in self.injections], "tail_s": TAIL_S, "grace_s": GRACE_S,
        }
        for inj in self.injections:
            runs = [r.injected for r in self.injected if r.injected and r.injected.injection == inj.name]
            ttt = [x.time_to_throttle_s for x in runs if x.time_to_throttle_s is not None]
            ttd = [x.first_detection_s for x in runs if x.first_detection_s is not None]
            outcomes: Counter[str] = Counter()
            for x in runs:
                outcomes.update(x.outcomes)
            not_throttled = [(r.key, r.injected) for r in self.injected
                             if r.injected and r.injected.injection == inj.name and not r.injected.throttled]
            out["injected"][inj.name] = {
                "runs": len(runs), "saturating": sum(x.saturates for x in runs),
                "detected": sum(x.detected for x in runs), "throttled": len(ttt),
                "throttled_of_saturating": sum(x.throttled for x in runs if x.saturates),
                "detect_p50_s": _pct(ttd, 50), "detect_p95_s": _pct(ttd, 95),
                "throttle_p50_s": _pct(ttt, 50), "throttle_p95_s": _pct(ttt, 95),
                "throttle_max_s": max(ttt) if ttt else None,
                "harm_reasons": dict(Counter(x.harm_reason for x in runs if x.throttled)),
                "only_watched": sum(x.watched and not x.throttled for x in runs),
                "only_capped": sum(not x.throttled and x.outcomes.get("capped", 0) > 0 for x in runs),
                "decisions": dict(sorted(outcomes.items())),
                "idle_min_median": _pct([x.idle_min for x in runs], 50),
                "idle_after_throttle_median": _pct([x.idle_after for x in runs if x.idle_after is not None], 50),
                "not_throttled": [{"key": k, "saturates": x.saturates, "detected": x.detected, "watched": x.watched,
                                   "decisions": x.outcomes, "idle_median": x.idle_median, "top_reason": x.top_reason}
                                  for k, x in not_throttled],
            }
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One row per file and run (benign, then each injection)."""
        out = []
        for r in self.benign + self.injected:
            row: dict[str, Any] = {"key": r.key, "run": r.injection or "benign", "seconds": r.seconds,
                                   "capacity_bytes_s": r.capacity, "detections": r.detections,
                                   "throttles": len(r.throttles),
                                   "throttles_in_windows": sum(t.in_window for t in r.throttles),
                                   "watch_records": r.watch_records,
                                   "decisions": ";".join(f"{k}={v}" for k, v in sorted(r.decisions.items()))}
            x = r.injected
            row.update({"onset_t": x.onset_t if x else None, "saturates": x.saturates if x else None,
                        "idle_median": x.idle_median if x else None,
                        "first_detection_s": x.first_detection_s if x else None,
                        "time_to_throttle_s": x.time_to_throttle_s if x else None,
                        "harm_reason": x.harm_reason if x else None,
                        "idle_min": x.idle_min if x else None, "idle_after": x.idle_after if x else None})
            out.append(row)
        return out

    def table(self) -> str:
        s = self.summary()
        b = s["benign"]
        m = self.model
        lines = [f"replayed {s['files']} files, {s['replayed_seconds']} s = {s['workload_days']} workload-days "
                 f"(one row per second, median {CLIENT_MEDIAN / 1e3:.0f} kB/s; broker capacity {m.headroom}x "
                 f"(the {m.peers} peers' {m.peers * m.peer_rate / 1e3:.0f} kB/s + the client's peak))",
                 "",
                 f"{'benign shapes':34s} {'count':>7s} {'per 1,000 wl-days':>18s}",
                 f"{'  throttles':34s} {b['throttles']:7d} {b['throttles_per_1000_workload_days']:18.1f}",
                 f"{'    outside labelled windows':34s} {b['throttles_outside_windows']:7d} "
                 f"{b['throttles_outside_windows_per_1000_workload_days']:18.1f}",
                 f"{'    inside labelled windows':34s} {b['throttles_inside_windows']:7d} "
                 f"{b['throttles_inside_windows_per_1000_workload_days']:18.1f}",
                 f"{'  watch records':34s} {b['watch_records']:7d} {b['watch_records_per_1000_workload_days']:18.1f}",
                 f"{'  detections (episodes)':34s} {b['detections']:7d} {per_1000_days(b['detections'], s['replayed_seconds']):18.1f}",
                 f"  decisions: " + ", ".join(f"{k} {v}" for k, v in b["decisions"].items()),
                 ""]
        for t in b["throttled"]:
            lines.append(f"  THROTTLED {t['key']} at {t['t']:.0f}s ({'inside' if t['in_window'] else 'outside'} "
                         f"window, {t['ratio']}x for {t['duration_s']:.0f}s): {t['harm_reason']}: {t['harm_line']}")
        if b["throttled"]:
            lines.append("")
        lines.append(f"{'injected runaway':16s} {'runs':>5s} {'satur.':>6s} {'detect':>6s} {'throttl':>7s} "
                     f"{'(of sat.)':>9s} {'watched':>7s} {'capped':>6s} {'detect p50/p95 s':>17s} "
                     f"{'throttle p50/p95 s':>19s}  idle min -> after")
        for name, e in s["injected"].items():
            lines.append(f"{name:16s} {e['runs']:5d} {e['saturating']:6d} {e['detected']:6d} {e['throttled']:7d} "
                         f"{e['throttled_of_saturating']:9d} {e['only_watched']:7d} {e['only_capped']:6d} "
                         f"{str(e['detect_p50_s']) + ' / ' + str(e['detect_p95_s']):>17s} "
                         f"{str(e['throttle_p50_s']) + ' / ' + str(e['throttle_p95_s']):>19s}  "
                         f"{e['idle_min_median']} -> {e['idle_after_throttle_median']}")
        for name, e in s["injected"].items():
            for x in e["not_throttled"]:
                what = ", ".join(f"{k} {v}" for k, v in sorted(x["decisions"].items())) or "no detection"
                lines.append(f"  not throttled: {name} on {x['key']} ({'saturates' if x['saturates'] else 'no saturation'}, "
                             f"median idle {x['idle_median']}): {what}"
                             + (f"; mostly {x['top_reason'][:110]}" if x["top_reason"] else ""))
        return "\n".join(lines)


def _one(args: tuple[ReplaySeries, BrokerModel, tuple[Injection, ...]]) -> list[RunResult]:
    from guardian.policy.config import default_policy_path, load_policy

    series, model, injections = args
    policies = load_policy(default_policy_path())
    return [replay_run(series, policies, model)] + [replay_run(series, policies, model, inj) for inj in injections]


def run_replay(data_dir: Path, windows_file: Path | None = None, model: BrokerModel = BrokerModel(),
               injections: Iterable[Injection] = DEFAULT_INJECTIONS, jobs: int = 1,
               progress: Callable[[int, int, str], None] | None = None) -> ReplayReport:
    """Replay every file of ``data_dir``: benign, then once per injection (shipped defaults only)."""
    corpus = load_corpus(data_dir, windows_file)
    injections = tuple(injections)
    benign: list[RunResult] = []
    injected: list[RunResult] = []
    work = [(s, model, injections) for s in corpus]
    if jobs > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(jobs) as pool:
            results = pool.imap(_one, work)
            for n, (s, runs) in enumerate(zip(corpus, results), start=1):
                benign.append(runs[0])
                injected.extend(runs[1:])
                if progress:
                    progress(n, len(corpus), s.key)
    else:
        for n, w in enumerate(work, start=1):
            runs = _one(w)
            benign.append(runs[0])
            injected.extend(runs[1:])
            if progress:
                progress(n, len(corpus), w[0].key)
    return ReplayReport(model=model, injections=injections, benign=benign, injected=injected)


def write_rows(report: ReplayReport, out_dir: Path) -> list[Path]:
    """``replay_rows.csv`` (one row per file and run) and ``replay.json`` (the summary with every throttle)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = report.rows()
    csv_path, json_path = out_dir / "replay_rows.csv", out_dir / "replay.json"
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["key"])
        w.writeheader()
        w.writerows(rows)
    json_path.write_text(json.dumps({"summary": report.summary(), "rows": rows}, indent=1))
    return [csv_path, json_path]
