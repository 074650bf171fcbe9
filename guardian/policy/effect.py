"""Did a throttle work? The client's cluster-wide rate after a quota is verified, judged once. Pure.

``QuotaActuator.verify`` reads the quota value back; that the value holds does not mean the client
slowed down (the per-broker quota is R x the busiest broker's share, ``decide.per_broker_quota``,
and a client whose spread moved can be under it everywhere). The engine therefore follows the
client's **cluster-wide** rate for the quota's key once the action is verified, from the series the
detector stage already builds (``guardian.ingest.cluster_series``): ``producer_byte_rate`` follows
``produce_byte_rate``, ``consumer_byte_rate`` follows ``fetch_byte_rate``. Other keys
(``request_percentage``, ``controller_mutation_rate``) have no cluster-wide rate series to compare
with and are recorded as ``skipped``, as are plans on more than one client (scope ``user`` or
``default_client``).

The rule (``EffectRule``): Kafka enforces a quota as an average over its quota window W (11 x 1 s
by default), and its byte-rate sensor is that windowed rate. The first two windows after the
verification settle: the sensor still carries the pre-quota excess, and the first throttle pays
it back with up to a window of silence, which would read as success. The third window decides:
the throttle is **effective** when the client's cluster-wide samples in (2 W, 3 W] after the
verification average at most ``tolerance`` x R (1.25: Kafka lets a client run ~15 % over on a
broker while its in-flight requests land, and a throttled client on a busy host goes in bursts),
**not effective** when they average more, and **unmeasured** when that window has too few samples
(the client went silent; with several workers the engine reads the points every worker publishes,
``guardian.policy.view``, so a series on another worker's partition is measured too).
The verdict is recorded ``grace_s`` after the window ends (samples reach the engine through the
metrics topic a little late): 38 s after the verification by default.

A client far over R pays its excess back for longer than a window (on the 3-broker test cluster a
3x runaway was silent for about two): its silence can still reach into the judged window. The
verdict is then true of that window (held back as a whole, the client stayed under R) but says
less about its steady rate; one that later breaks out is still detected at its cluster-wide rate.

A not-effective throttle names its brokers, and says whether its spread **moved**: the busiest
broker now carries a share at least 0.1 smaller than the one q was planned from, so its load sits
on brokers where it is under q and no broker holds it back.

    >>> rule = EffectRule()
    >>> plan = {"kind": "quota", "target": {"principal": "User:a", "user": "a", "client_id": "x"},
    ...         "params": {"scope": "client", "producer_byte_rate": 300.0, "cluster_rate": 900.0,
    ...                    "broker_share": 1 / 3}}
    >>> pts = [RatePoint(100.0 + i, 880.0, {"1": 300.0, "2": 290.0, "3": 290.0}) for i in range(34)]
    >>> judge(plan, pts[:20], start=100.0, now=120.0, rule=rule) is None    # not yet: keep following
    True
    >>> judge(plan, pts, start=100.0, now=138.0, rule=rule).result
    'effective'
    >>> pts = [RatePoint(100.0 + i, 1800.0, {"1": 600.0, "2": 600.0, "3": 600.0}) for i in range(34)]
    >>> e = judge(plan, pts, start=100.0, now=138.0, rule=rule)
    >>> e.result, e.measured, e.moved
    ('not_effective', 1800.0, False)
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from guardian.policy.decide import BYTE_RATE_METRICS, METRIC_QUOTA
from guardian.model.units import bytes_rate as _num   # only byte-rate keys are ever measured

# The cluster-wide series that shows a quota key's effect: producer_byte_rate -> produce_byte_rate, ...
QUOTA_SERIES = {METRIC_QUOTA[m]: m for m in BYTE_RATE_METRICS}
_RATE_KEYS = tuple(METRIC_QUOTA.values())
RESULTS = ("effective", "not_effective", "unmeasured", "skipped")
# The engine event (and quarantine history entry) that escalates a throttle that did not work.
NOT_EFFECTIVE_EVENT = "throttle_not_effective"
_MOVED_BY = 0.1   # the busiest broker's share fell this much below the planned one: the spread moved


@dataclass(frozen=True)
class EffectRule:
    """When a throttle to R counts as effective; see the module docstring."""

    window_s: float = 11.0          # Kafka's quota window: quota.window.num 11 x quota.window.size.seconds 1
    tolerance: float = 1.25         # effective: the judged window averages at most tolerance x R
    settle_windows: float = 2.0     # windows after the verification that do not count
    grace_s: float = 5.0            # how long after the judged window ends the verdict waits for its samples

    def judged(self, start: float) -> tuple[float, float]:
        """The window (from, to] whose samples decide, for a throttle followed since ``start``."""
        begin = start + self.settle_windows * self.window_s
        return begin, begin + self.window_s

    @property
    def deadline_s(self) -> float:
        """From the verification to the verdict."""
        return (self.settle_windows + 1) * self.window_s + self.grace_s


@dataclass(frozen=True)
class RatePoint:
    """One cluster-wide sample of a client: its rate summed over brokers, and each broker's part."""

    ts: float
    total: float
    brokers: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Effect:
    """What a throttle did, as recorded once on its action record (``ActionRecord.effect``)."""

    result: str                          # one of RESULTS
    key: str                             # the quota key
    line: str                            # one human line; the escalation's for not_effective
    target: float | None = None          # R: the cluster-wide rate the plan means
    per_broker: float | None = None      # q: the quota value on every broker
    measured: float | None = None        # the client's cluster-wide rate, averaged over the window
    brokers: dict[str, float] = field(default_factory=dict)   # each broker's part, averaged likewise
    window: tuple[float, float] | None = None                 # the window measured (sample time)
    moved: bool = False                  # the client's spread moved off the one q was planned from

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["window"] = list(self.window) if self.window else None
        return d


def _brokers_text(brokers: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{b}: {_num(v)}" for b, v in sorted(brokers.items())) + "}"


def series_of(plan: Mapping[str, Any]) -> tuple[str, str, str] | Effect:
    """(quota key, client-id, cluster-wide metric) whose series shows the effect of a quota ``plan``
    (``ActionPlan.to_dict()``), or the ``skipped`` Effect saying why there is none."""
    params = plan.get("params", {})
    keys = [k for k in _RATE_KEYS if k in params]
    key = keys[0] if len(keys) == 1 else ",".join(keys)
    if len(keys) != 1:
        return Effect("skipped", key, f"throttle sets {key}: one cluster-wide series cannot show several keys")
    if key not in QUOTA_SERIES:
        return Effect("skipped", key, f"{key} has no cluster-wide rate series to check the throttle against")
    if params.get("scope", "client") != "client" or not plan.get("target", {}).get("client_id"):
        return Effect("skipped", key, f"throttle on {params.get('scope')} scope covers several clients; "
                                      "the cluster-wide series are per client")
    return key, str(plan["target"]["client_id"]), QUOTA_SERIES[key]


def _whole(window: Sequence[RatePoint], rule: EffectRule) -> bool:
    """Enough samples to stand for the window: two or more, spanning at least half of it."""
    return len(window) >= 2 and window[-1].ts - window[0].ts >= rule.window_s / 2


def _mean(window: Sequence[RatePoint]) -> tuple[float, dict[str, float]]:
    total = math.fsum(p.total for p in window) / len(window)
    brokers: dict[str, list[float]] = {}
    for p in window:
        for b, v in p.brokers.items():
            brokers.setdefault(b, []).append(v)
    # a broker missing from some samples counts zero there: the mean parts add up to the mean total
    return total, {b: math.fsum(vs) / len(window) for b, vs in brokers.items()}


def judge(plan: Mapping[str, Any], points: Sequence[RatePoint], start: float, now: float,
          rule: EffectRule) -> Effect | None:
    """The effect of a verified quota ``plan`` (``ActionPlan.to_dict()``), or None: keep following.

    ``points``: the client's cluster-wide series for the plan's key; ``start``: when following
    began (the verification, or later if the engine started following later); ``now``: the engine's
    clock. Only the samples in ``rule.judged(start)`` count."""
    found = series_of(plan)
    if isinstance(found, Effect):
        return found
    key, _client, _metric = found
    params = plan["params"]
    q = float(params[key])
    r = float(params.get("cluster_rate", q))
    share = float(params.get("broker_share", 1.0))
    if now < start + rule.deadline_s:
        return None
    begin, end = rule.judged(start)
    window = sorted((p for p in points if begin < p.ts <= end), key=lambda p: p.ts)
    if not _whole(window, rule):
        return Effect("unmeasured", key, f"throttle to {_num(r)} not measured: {len(window)} cluster-wide "
                                         f"samples of the client in the window {begin - start:.0f}-"
                                         f"{end - start:.0f}s after the verification (silent, or its "
                                         "worker's view did not reach the engine)", r, q)
    measured, brokers = _mean(window)
    if measured <= rule.tolerance * r:
        return Effect("effective", key, f"throttle to {_num(r)} effective: client at {_num(measured)} "
                                        f"cluster-wide, brokers {_brokers_text(brokers)}",
                      r, q, measured, brokers, (window[0].ts, window[-1].ts))
    busiest = max(brokers.values(), default=0.0) / measured if measured > 0 else 1.0
    moved = busiest < share - _MOVED_BY
    line = (f"throttle to {_num(r)} not effective: client at {_num(measured)} cluster-wide, "
            f"brokers {_brokers_text(brokers)} (quota {_num(q)} per broker)")
    if moved:
        under = sorted(b for b, v in brokers.items() if v < q)
        line += (f"; its spread moved (busiest broker's share {busiest:.2f}, planned {share:.2f}): under the "
                 f"quota on brokers {', '.join(under)}, so no broker holds it to {_num(r)}")
    return Effect("not_effective", key, line, r, q, measured, brokers, (window[0].ts, window[-1].ts), moved)


class FollowedRates:
    """The cluster-wide rates of the clients the engine follows, fed by the detector stage.

    Reading is following: ``read(principal, client_id, metric)`` returns the points seen since the
    series was first read, and ``observe`` keeps points only for series read within the last
    ``follow_s`` (a handful of throttled clients, not every client), each for ``keep_s``. Called
    from the stream processor's thread (``observe``) and the engine's (``read``), hence the lock.

    >>> rates = FollowedRates(clock=lambda: 100.0)
    >>> rates.read("User:a", "x", "produce_byte_rate")
    []
    >>> rates.observe("User:a", "x", {"produce_byte_rate": 900.0}, 100.0, lambda m: {"1": 600.0, "2": 300.0})
    >>> rates.read("User:a", "x", "produce_byte_rate")[0].total
    900.0
    """

    def __init__(self, follow_s: float = 60.0, keep_s: float = 120.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.follow_s, self.keep_s, self.clock = follow_s, keep_s, clock
        self._lock = threading.Lock()
        self._read_at: dict[tuple[str, str, str], float] = {}
        self._points: dict[tuple[str, str, str], deque[RatePoint]] = {}

    def read(self, principal: str, client_id: str, metric: str) -> list[RatePoint]:
        key, now = (principal, client_id, metric), self.clock()
        with self._lock:
            for old in [k for k, t in self._read_at.items() if now - t > self.follow_s]:
                del self._read_at[old]   # followed no more (the series never spoke again)
                self._points.pop(old, None)
            self._read_at[key] = now
            return list(self._points.get(key, ()))

    def observe(self, principal: str | None, client_id: str | None, values: Mapping[str, float], ts: float,
                detail: Callable[[str], Mapping[str, float]]) -> None:
        """One cluster-wide sample of a client (``values``: metric -> value); ``detail(metric)`` gives its
        per-broker parts and is called only for a followed series."""
        if not self._read_at or principal is None or client_id is None:
            return
        now = self.clock()
        with self._lock:
            for metric, value in values.items():
                key = (principal, client_id, metric)
                read_at = self._read_at.get(key)
                if read_at is None:
                    continue
                if now - read_at > self.follow_s:   # nobody asks any more
                    del self._read_at[key]
                    self._points.pop(key, None)
                    continue
                points = self._points.setdefault(key, deque())
                points.append(RatePoint(ts, float(value), dict(detail(metric))))
                while points and points[-1].ts - points[0].ts > self.keep_s:
                    points.popleft()

    def follow(self, keys: Iterable[tuple[str, str, str]]) -> None:
        """Follow these (principal, client-id, metric) series as if just read: how a worker follows the
        series the engine reads in another process (``guardian.policy.view``)."""
        now = self.clock()
        with self._lock:
            for key in keys:
                self._read_at[key] = now

    def part(self) -> dict[tuple[str, str, str], list[RatePoint]]:
        """The points kept of every followed series (what a worker publishes)."""
        with self._lock:
            return {key: list(points) for key, points in self._points.items() if points}


def merge_points(parts: Iterable[Sequence[RatePoint]]) -> list[RatePoint]:
    """One series from several workers' points of it, in time order; a sample time in two parts (for a
    moment after a rebalance both workers have the client) is kept once.

    >>> merge_points([[RatePoint(2.0, 5.0)], [RatePoint(1.0, 4.0), RatePoint(2.0, 5.0)]])
    [RatePoint(ts=1.0, total=4.0, brokers={}), RatePoint(ts=2.0, total=5.0, brokers={})]
    """
    by_ts: dict[float, RatePoint] = {}
    for points in parts:
        for p in points:
            by_ts.setdefault(p.ts, p)
    return [by_ts[ts] for ts in sorted(by_ts)]
