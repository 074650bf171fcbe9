"""Cluster-wide client series: one series per workload, whatever the number of brokers.

Kafka keeps a client's quota sensors (byte rate, request time, throttle time) on each broker it
talks to, so the scraper and the broker plugin report a client on N brokers as N per-broker
samples (``Workload(principal, client_id, broker=b)``), each a part of its traffic. Detectors,
baselines and the policy's ``multiple_of_baseline`` want the client's cluster-wide figures, so the
detector stage passes every batch through ``ClusterSeries`` first: per-broker batches of one
workload become one batch of the same workload without ``broker``.

The rule, per metric: rates, counts and shares are **summed** over brokers (bytes/s, requests/s,
percent of a broker thread); times (``throttle_time``, ``queue_time``, ``request_latency``) take
the **largest** broker's value (a client throttled on one broker is throttled). Each broker's
latest value counts until it is ``stale_after_s`` older than the newest one (a broker that
stopped reporting drops out of the sum instead of freezing it).

When is a combined sample emitted? Brokers are scraped once per interval each, as separate
batches, in no fixed order. ``ClusterSeries`` collects one *round*: it emits the combination as
soon as every broker that reports the workload has reported since the last emission, or, when
one broker reports again first (another is late or gone), just before taking that broker's new
value. The first round of a new workload lasts until some broker reports it a second time (so its
first sample is not a part posing as the whole); after that, a broker that reports it for the
first time joins the last round at once. So a workload seen on one broker is passed through
unchanged apart from ``broker`` (its first sample one scrape late), and on N brokers the
detectors see one sample per scrape interval, as on one broker.

``detail(workload, metric)`` gives the per-broker values behind the latest combination; the
detector stage puts it on detections (``extra["brokers"]``), where the quota translation
(``guardian.policy.decide.per_broker_quota``) reads the client's distribution over brokers.

Only the stage's partition sees a workload's batches (records are keyed by ``Workload.key``,
which never includes the broker), so the combination is exact with any number of workers.

Example (one client on two brokers)::

    >>> from guardian.model.samples import SampleBatch
    >>> from guardian.model.samples import Metric, Workload
    >>> cs = ClusterSeries()
    >>> def batch(broker, ts, rate):
    ...     w = Workload(principal="User:a", client_id="x", broker=broker)
    ...     return SampleBatch(w, (Metric.PRODUCE_BYTE_RATE,), (ts,), (rate,))
    >>> [b.values for b in cs.combine(batch("1", 10.0, 300.0)) + cs.combine(batch("2", 10.1, 100.0))]
    []
    >>> out = cs.combine(batch("1", 11.0, 330.0))  # broker 1 again: the first round is whole
    >>> out[0].workload.broker, out[0].values, out[0].ts
    (None, (400.0,), (10.1,))
    >>> [b.values for b in cs.combine(batch("2", 11.1, 90.0))]   # every broker reported: the sum
    [(420.0,)]
    >>> cs.detail(Workload(principal="User:a", client_id="x"), Metric.PRODUCE_BYTE_RATE)
    {'1': 330.0, '2': 90.0}
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from guardian.model.samples import SampleBatch
from guardian.model.samples import Metric, Workload

# Metrics where the cluster-wide figure is the worst broker's, not the sum.
MAX_METRICS: frozenset[Metric] = frozenset({Metric.THROTTLE_TIME, Metric.QUEUE_TIME, Metric.REQUEST_LATENCY})
_IDENTITY = ("principal", "client_id", "group", "topic", "pod")


def is_per_broker(w: Workload) -> bool:
    """A workload's part on one broker (a client, group or topic seen by broker ``w.broker``).

    Broker-level samples (only ``broker`` set: the broker's own pressure and traffic) are not parts."""
    return w.broker is not None and any(getattr(w, k) is not None for k in _IDENTITY)


def combine_values(metric: Metric, values: Iterable[float]) -> float:
    """The cluster-wide value of ``metric`` from its per-broker values (sum, or max for times).

    >>> combine_values(Metric.FETCH_BYTE_RATE, [1.0, 2.0]), combine_values(Metric.THROTTLE_TIME, [5.0, 40.0])
    (3.0, 40.0)
    """
    vals = list(values)
    return max(vals) if metric in MAX_METRICS else math.fsum(vals)


@dataclass
class _Series:
    """One combined workload (with one source, cluster and label set): each broker's latest values."""

    template: SampleBatch                                   # source, cluster, labels for the output
    latest: dict[str, dict[Metric, tuple[float, float]]] = field(default_factory=dict)  # broker -> metric -> (ts, v)
    heard: dict[str, float] = field(default_factory=dict)   # broker -> newest ts it reported
    pending: set[str] = field(default_factory=set)          # brokers that reported since the last emission
    started: bool = False                                   # a whole round was seen (some broker reported twice)
    last: dict[Metric, dict[str, float]] = field(default_factory=dict)  # metric -> broker -> value, last emitted


class ClusterSeries:
    """Per-broker parts of a workload in, cluster-wide batches out. See the module docstring.

    ``stale_after_s``: a broker whose newest report is this much older than the workload's newest
    is left out of the combination (and of the round the others wait for).
    """

    def __init__(self, stale_after_s: float = 10.0) -> None:
        self.stale_after_s = stale_after_s
        self._series: dict[tuple, _Series] = {}

    def combine(self, batch: SampleBatch) -> list[SampleBatch]:
        """The batches the detectors should see for ``batch``: itself when it is not a per-broker part,
        else zero or one cluster-wide batch (and at most one more when the batch holds several scrapes)."""
        w = batch.workload
        if not is_per_broker(w) or not len(batch):
            return [batch]
        whole = dataclasses.replace(w, broker=None)
        key = (whole, batch.source, batch.cluster, tuple(sorted(batch.labels.items())))
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(template=batch)
        out: list[SampleBatch] = []
        for ts, values in _scrapes(batch):
            broker = str(w.broker)
            if broker in series.pending:            # it reported again first: close the round without it
                out.extend(self._emit(series, whole))
                series.started = True
            joined = broker not in series.heard
            slot = series.latest.setdefault(broker, {})
            for metric, value in values.items():
                slot[metric] = (ts, value)
            series.heard[broker] = max(ts, series.heard.get(broker, ts))
            series.pending.add(broker)
            if series.started and (joined or series.pending >= self._live(series)):
                out.extend(self._emit(series, whole))
        return out

    def detail(self, workload: Workload, metric: Metric) -> dict[str, float]:
        """Per-broker values behind the last emitted ``metric`` of ``workload`` (any source and labels)."""
        whole = dataclasses.replace(workload, broker=None)
        out: dict[str, float] = {}
        for (w, *_), series in self._series.items():
            if w == whole:
                out.update(series.last.get(metric, {}))
        return out

    def forget_idle(self, now: float, idle_s: float) -> int:
        """Forget workloads none of whose brokers reported for ``idle_s`` (bounded memory). Returns how many."""
        gone = [k for k, s in self._series.items() if not s.heard or now - max(s.heard.values()) > idle_s]
        for k in gone:
            del self._series[k]
        return len(gone)

    def __len__(self) -> int:
        return len(self._series)

    # -- state (moves with the stream partition; guardian.ingest.state) -------------------
    def snapshot(self, select: Callable[[Workload], bool]) -> list[dict[str, Any]]:
        """The open rounds of the workloads ``select`` accepts, as plain data."""
        out = []
        for (whole, source, cluster, labels), s in self._series.items():
            if not select(whole):
                continue
            out.append({"workload": whole.as_dict(), "source": source, "cluster": cluster, "labels": dict(labels),
                        "broker": s.template.workload.broker,
                        "latest": {b: {m.value: list(p) for m, p in ms.items()} for b, ms in s.latest.items()},
                        "heard": dict(s.heard), "pending": sorted(s.pending), "started": s.started,
                        "last": {m.value: dict(bv) for m, bv in s.last.items()}})
        return out

    def restore(self, state: list[dict[str, Any]]) -> None:
        """Put back what ``snapshot`` saved (raises ``KeyError``/``TypeError``/``ValueError`` if malformed,
        before anything changes)."""
        restored = []
        for d in state:
            whole = Workload(**d["workload"])
            labels = {str(k): str(v) for k, v in d["labels"].items()}
            template = SampleBatch(dataclasses.replace(whole, broker=d.get("broker")), (), (), (),
                                   source=str(d["source"]), cluster=str(d["cluster"]), labels=labels)
            series = _Series(template=template,
                             latest={str(b): {Metric(m): (float(p[0]), float(p[1])) for m, p in ms.items()}
                                     for b, ms in d["latest"].items()},
                             heard={str(b): float(t) for b, t in d["heard"].items()},
                             pending={str(b) for b in d["pending"]}, started=bool(d["started"]),
                             last={Metric(m): {str(b): float(v) for b, v in bv.items()} for m, bv in d["last"].items()})
            restored.append(((whole, template.source, template.cluster, tuple(sorted(labels.items()))), series))
        self._series.update(restored)

    def forget(self, select: Callable[[Workload], bool]) -> int:
        """Drop the workloads ``select`` accepts (their partition moved to another worker)."""
        gone = [k for k in self._series if select(k[0])]
        for k in gone:
            del self._series[k]
        return len(gone)

    def _live(self, series: _Series) -> set[str]:
        newest = max(series.heard.values())
        return {b for b, ts in series.heard.items() if newest - ts <= self.stale_after_s}

    def _emit(self, series: _Series, whole: Workload) -> list[SampleBatch]:
        series.pending.clear()
        live = self._live(series)
        per_metric: dict[Metric, dict[str, tuple[float, float]]] = {}
        for broker in sorted(live):
            for metric, point in series.latest.get(broker, {}).items():
                per_metric.setdefault(metric, {})[broker] = point
        if not per_metric:
            return []
        metrics, ts, values = [], [], []
        series.last = {}
        for metric, points in per_metric.items():
            metrics.append(metric)
            ts.append(max(t for t, _ in points.values()))
            values.append(combine_values(metric, [v for _, v in points.values()]))
            series.last[metric] = {b: v for b, (_, v) in points.items()}
        t = series.template
        return [SampleBatch(whole, tuple(metrics), tuple(ts), tuple(values), source=t.source, cluster=t.cluster,
                            labels=dict(t.labels))]


def _scrapes(batch: SampleBatch) -> list[tuple[float, dict[Metric, float]]]:
    """A batch's samples as scrapes: (ts, {metric: value}) in time order (usually one; several when a
    source batched several scrapes of one workload)."""
    by_ts: dict[float, dict[Metric, float]] = {}
    for metric, ts, value in zip(batch.metrics, batch.ts, batch.values):
        if math.isfinite(ts) and math.isfinite(value):
            by_ts.setdefault(ts, {})[metric] = value
    return sorted(by_ts.items())
