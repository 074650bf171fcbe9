"""The shared cluster view: what each worker publishes for the engine, and how the parts merge. Pure.

The action engine runs in whichever ``guardian run`` process holds the lease, but its inputs are
built by the detector stages from the metrics topic, whose records are keyed by principal: the
brokers' own samples (one key, ``cluster``) reach one worker, each principal's clients the worker
owning its partition. So with several workers no process sees the whole cluster. Each worker
therefore publishes a ``WorkerView`` (``guardian.ingest.view`` writes it to Redis every second of
sample time, and at once when an episode opens), and the engine merges every live worker's:

* ``pressure``: per broker, the worker's ``BrokerPart`` (``guardian.policy.pressure``): the
  signals and normals it owns, the total of the client loads it sees, and the loads of the
  clients of principals with an open episode in its stage (the only loads the harm test asks for:
  a detection's principal is on the worker that found it), not every client;
* ``traffic``: per (broker, byte-rate metric), its newest sample time and windowed mean
  (``guardian.ingest.stage.ClusterTraffic``);
* ``rates``: the points of the client series the engine follows after a verified throttle
  (``guardian.policy.effect.FollowedRates``; the engine names them in Redis, workers follow them).

Merged (``merge_pressure``, ``merge_traffic``, ``merge_points``), the parts give what one worker
seeing everything would (tests/integration/ingest/test_shared_view.py). A worker whose view is
missing is unknown, not calm: its brokers' signals are absent and the policy's ``on_unknown_*``
keys decide. A worker forgets the loads of a partition it gives up (``DetectorStage.forget``, with
``GUARDIAN_STATE__ENABLED``); until the new owner has published, or when a worker dies holding
them (until its view expires), a moved tenant's clients may be counted twice or not at all for a
few seconds: totals off, shares a little low or high for that moment.

    >>> from guardian.policy.pressure import BrokerPart, ClientLoad
    >>> a = WorkerView("a", 10.0, {"b1": BrokerPart(9.5, {"request_handler_idle": (9.5, 0.1)}, {},
    ...                                              ClientLoad(20.0), {})}, {("b1", "produce_byte_rate"): (9.5, 100.0)})
    >>> b = WorkerView("b", 10.0, {"b1": BrokerPart(float("-inf"), {}, {}, ClientLoad(80.0),
    ...                                              {("User:x", "c"): ClientLoad(70.0)})})
    >>> views = [WorkerView.from_dict(v.to_dict()) for v in (a, b)]
    >>> p = merge_views(views, now=10.0, stale_after_s=30.0).brokers["b1"]
    >>> p.signals, p.total.request_time, p.load_of("User:x", ["c"]).request_time
    ({'request_handler_idle': 0.1}, 100.0, 70.0)
    >>> merge_traffic([v.traffic for v in views], now=10.0, stale_after_s=60.0)
    100.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from guardian.policy.effect import RatePoint
from guardian.policy.pressure import BrokerPart, ClientLoad, ClientLoads, Pressure, merge_pressure

TrafficPart = Mapping[tuple[str, str], tuple[float, float]]   # (broker, metric) -> (newest ts, mean bytes/s)


@dataclass(frozen=True)
class WorkerView:
    """One worker's part of the cluster view, as published (``to_dict``: JSON-able)."""

    worker: str
    ts: float                                               # when published (the worker's clock)
    pressure: dict[str, BrokerPart] = field(default_factory=dict)
    traffic: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    rates: dict[tuple[str, str, str], list[RatePoint]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker, "ts": self.ts,
            "pressure": {b: {"ts": _num(p.ts), "signals": {n: list(tv) for n, tv in p.signals.items()},
                             "normals": p.normals, "total": _load(p.total),
                             "clients": ClientLoads.of(p.clients).rows()}
                         for b, p in self.pressure.items()},
            "traffic": [[b, m, ts, v] for (b, m), (ts, v) in self.traffic.items()],
            "rates": [[pr, c, m, [[p.ts, p.total, dict(p.brokers)] for p in points]]
                      for (pr, c, m), points in self.rates.items()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WorkerView":
        """The inverse of ``to_dict``; ``KeyError``/``TypeError``/``ValueError`` when ``d`` is not one."""
        pressure = {str(b): BrokerPart(ts=float("-inf") if p["ts"] is None else float(p["ts"]),
                                       signals={str(n): (float(t), float(v)) for n, (t, v) in p["signals"].items()},
                                       normals={str(n): float(v) for n, v in p["normals"].items()},
                                       total=ClientLoad(*map(float, p["total"])),
                                       clients=_client_loads(p["clients"]))
                    for b, p in d["pressure"].items()}
        traffic = {(str(b), str(m)): (float(ts), float(v)) for b, m, ts, v in d["traffic"]}
        rates = {(str(pr), str(c), str(m)): [RatePoint(float(ts), float(total), {str(k): float(x) for k, x in br.items()})
                                             for ts, total, br in points]
                 for pr, c, m, points in d["rates"]}
        return cls(str(d["worker"]), float(d["ts"]), pressure, traffic, rates)


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _client_loads(raw: Any) -> ClientLoads:
    """The view's client loads: principal -> rows, read when the engine asks for a principal; or, as
    written before the loads were grouped (a worker not yet upgraded), a list of
    ``[principal, client_id, request_time, bytes_in, bytes_out]``."""
    if isinstance(raw, list):
        return ClientLoads.of({(str(pr), str(c)): ClientLoad(float(rt), float(bi), float(bo))
                               for pr, c, rt, bi, bo in raw})
    if not isinstance(raw, dict):
        raise TypeError(f"client loads: expected an object, got {type(raw).__name__}")
    return ClientLoads.from_rows(raw)


def _load(load: ClientLoad) -> list[float]:
    return [load.request_time, load.bytes_in, load.bytes_out]


def merge_views(views: Iterable[WorkerView], now: float, stale_after_s: float) -> Pressure:
    """The cluster's ``Pressure`` from every live worker's view (``merge_pressure``)."""
    return merge_pressure((v.pressure for v in views), now, stale_after_s)


def merge_traffic(parts: Iterable[TrafficPart], now: float, stale_after_s: float) -> float | None:
    """Bytes/s through the cluster from several workers' traffic parts: per (broker, metric) the freshest
    part's mean, summed over those heard from within ``stale_after_s``; None when none was (unknown)."""
    newest: dict[tuple[str, str], tuple[float, float]] = {}
    for part in parts:
        for key, (ts, value) in part.items():
            if key not in newest or ts > newest[key][0]:
                newest[key] = (ts, value)
    fresh = [v for ts, v in newest.values() if now - ts <= stale_after_s]
    return math.fsum(fresh) if fresh else None
