"""The detector stage: the detectors behind the ingest ``SampleStage`` interface.

``DetectorStage`` hands each workload's batch to the detectors package's
``DetectorPipeline``. The pipeline reports a runaway once, at its onset; the
policy wants evidence that lasts (``evidence_s``). The stage therefore
re-emits an ongoing episode (same detection id, growing ``duration_s``) every
few seconds while the pipeline still has it in alarm, so the engine acts once
the evidence suffices and climbs the ladder if the runaway continues.

The stage also feeds ``ClusterTraffic`` (bytes/s in and out of every broker,
from the broker-level samples it sees), for the engine's share-of-traffic cap,
``ClusterPressure`` (broker pressure signals and each client's load), for the
harm test, and ``FollowedRates`` (``guardian.policy.effect``): the
cluster-wide rate of each client the engine follows after a throttle is
verified, with its per-broker parts, which is how the engine judges the
throttle's effect without scraping anything itself.

Each worker sees only part of these (records are keyed by principal: the
brokers' own samples reach one worker, each principal's clients another), so
the stage hands them to its ``view`` (``guardian.ingest.view.ViewPublisher``),
which publishes this worker's part to Redis every second of sample time and at
once when an episode opens; the engine, in whichever process holds the lease,
merges every worker's part (``guardian.policy.view``). Without a view (one
process, or ``GUARDIAN_VIEW__ENABLED=false``) the engine reads these objects
directly, which is the whole cluster only with one worker.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from guardian.ingest.cluster_series import ClusterSeries
from guardian.ingest.processor import SampleStage
from guardian.policy.view import merge_traffic
from guardian.settings import GuardianSettings

log = logging.getLogger(__name__)

_BYTE_RATES = ("produce_byte_rate", "fetch_byte_rate")
# a re-emission is due once this share of its period has passed (samples 1 s apart arrive 0.9-1.1 s apart)
JITTER = 0.8
# an ongoing episode whose ratio has grown this much since it was last emitted is re-emitted at once, whatever
# its period: a runaway on top of a standing alarm (a young client alarmed against its peers since its start,
# in the slow phase) was otherwise judged only at the next 30 s re-emission (3-broker retry-storm drill: 16 s)
SURGE = 2.0


class ClusterTraffic:
    """Bytes/s through the cluster: produce + fetch of every broker, averaged over ``window_s``.

    Fed with broker-level samples (a workload with only ``broker`` set). The
    average keeps a bursty moment (a rewinding consumer reads in bursts) from
    making the cluster look idle next to the detection's smoothed rate. A
    broker not heard from for ``stale_after_s`` no longer counts. Called with
    no argument it is the engine's ``cluster_traffic`` provider (``None`` =
    unknown).
    """

    def __init__(self, stale_after_s: float = 60.0, window_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.stale_after_s = stale_after_s
        self.window_s = window_s
        self.clock = clock
        self._series: dict[tuple[str, str], list[tuple[float, float]]] = {}

    def observe(self, batch: Any) -> None:
        w = batch.workload
        if w.broker is None or any(getattr(w, k) is not None for k in ("principal", "client_id", "group",
                                                                        "topic", "pod")):
            return
        for metric, ts, value in zip(batch.metrics, batch.ts, batch.values):
            if metric.value in _BYTE_RATES:
                series = self._series.setdefault((w.broker, metric.value), [])
                series.append((ts, value))
                newest = max(t for t, _ in series)
                self._series[(w.broker, metric.value)] = [(t, v) for t, v in series if newest - t <= self.window_s]

    def part(self) -> dict[tuple[str, str], tuple[float, float]]:
        """(broker, metric) -> (newest sample time, mean over the window): what a worker publishes."""
        out = {}
        for key, series in list(self._series.items()):
            points = list(series)
            if points:
                out[key] = (max(t for t, _ in points), sum(v for _, v in points) / len(points))
        return out

    def __call__(self) -> float | None:
        return merge_traffic([self.part()], self.clock(), self.stale_after_s)


@dataclass
class _Episode:
    first: Any            # the Detection the pipeline emitted at onset
    onset: float          # when the evidence started
    last_emit: float      # sample time of the last (re-)emission
    emitted_ratio: float | None = None   # the ratio last (re-)emitted; None: the onset's


@dataclass
class DetectorStage:
    """``DetectorPipeline`` as the processors' ``SampleStage``, with re-emission of ongoing episodes.

    ``reemit_s``: how often an ongoing episode is re-emitted during its first
    ``fast_phase_s`` (while the policy may still be waiting for evidence, or watching for harm:
    the engine re-judges a watched runaway only when it is re-emitted, so this is how soon after
    a broker starts to hurt the throttle can come); ``slow_reemit_s`` after that (enough for the
    ladder's cool-downs). A sample that comes a little early (scrape jitter) still counts: the gap
    needs ``JITTER`` of the period, so 1 s samples re-emit every second, not every other one. An
    episode whose ratio grew ``SURGE`` times since its last emission is re-emitted at once.
    """

    pipeline: Any
    traffic: ClusterTraffic | None = None
    metrics: Any | None = None
    pressure: Any | None = None      # guardian.policy.pressure.ClusterPressure
    rates: Any | None = None         # guardian.policy.effect.FollowedRates
    view: Any | None = None          # guardian.ingest.view.ViewPublisher: the three above, shared with the engine
    reemit_s: float = 1.0
    fast_phase_s: float = 60.0
    slow_reemit_s: float = 30.0
    evict_every_s: float = 60.0      # how often (sample time) series unseen for idle_evict_s are forgotten
    cluster_series: ClusterSeries = field(default_factory=ClusterSeries)
    _episodes: dict[tuple[Any, str], _Episode] = field(default_factory=dict)
    _batches: int = 0
    _last_evict: float | None = None
    _opened: bool = False            # an episode opened since the view was last offered
    evicted: int = 0                 # series forgotten so far (bounded memory: every client-id ever seen is not kept)

    def process(self, batch: Any) -> list[Any]:
        return self.process_many([batch])[0]

    def process_many(self, batches: list[Any]) -> list[list[Any]]:
        """``process`` for several records at once; per input batch, the detections to emit with it.

        The detectors are vectorised across workloads and cost ~0.3 ms a call whatever its size, so
        one call per record held a worker core to a few thousand samples/s; here the cluster-wide
        batches of every record go to the detectors in one call (docs/BENCHMARKS.md, "Scale").
        A workload's detections go with the last of its records in ``batches``."""
        wholes: list[tuple[int, Any]] = []
        for i, batch in enumerate(batches):
            # per-broker batches feed the pressure and traffic views as they are (harm is per broker) ...
            if self.traffic is not None:
                self.traffic.observe(batch)
            if self.pressure is not None:
                self.pressure.observe(batch)
            # ... and reach the detectors as cluster-wide series (guardian.ingest.cluster_series)
            for whole in self.cluster_series.combine(batch):
                if self.rates is not None:
                    self._follow(whole)
                wholes.append((i, whole))
        found: dict[Any, list[Any]] = {}
        for d in self.pipeline.process_batches([whole for _, whole in wholes]):
            found.setdefault(_workload(d.workload), []).append(d)
        last: dict[Any, tuple[int, float]] = {}   # workload -> (its last record's index, newest sample time)
        for i, whole in wholes:
            newest = max(whole.ts) if len(whole) else time.time()
            last[whole.workload] = (i, max(newest, last.get(whole.workload, (i, newest))[1]))
        out: list[list[Any]] = [[] for _ in batches]
        for workload, (i, newest) in last.items():
            out[i].extend(self._episodes_of(workload, found.get(workload, []), newest))
        before, self._batches = self._batches, self._batches + len(batches)
        newest = max((max(b.ts) for b in batches if len(b)), default=time.time())
        self._evict(newest)
        if self.view is not None:
            # at once when an episode opened: its principal's loads reach Redis before its detection
            self.view.observed(newest, self.open_principals, force=self._opened)
            self._opened = False
        # samples and detections are counted by the processor (guardian.ingest.processor)
        if self.metrics is not None and before // 200 != self._batches // 200:
            self.metrics.set_tracked_workloads(self.pipeline.tracked_series())
        return out

    def _episodes_of(self, workload: Any, detections: list[Any], newest: float) -> list[Any]:
        """The pipeline's new detections of ``workload`` open episodes; ongoing ones are re-emitted."""
        fresh = set()
        for d in detections:
            key = (workload, d.signature.value)
            self._episodes[key] = _Episode(first=d, onset=d.ts - d.duration_s, last_emit=d.ts)
            fresh.add(key)
            self._opened = True
        return [self._with_brokers(d, workload) for d in detections + self._continuing(workload, newest, fresh)]

    def open_principals(self) -> set[str]:
        """The principals with an ongoing episode here: whose client loads the shared view carries."""
        return {w.principal for w, _sig in self._episodes if w.principal is not None}

    def _follow(self, whole: Any) -> None:
        """Hand a cluster-wide sample to the engine's followed rates (each scrape in the batch)."""
        w = whole.workload
        detail = lambda metric: self.cluster_series.detail(w, _metric(metric))  # noqa: E731
        for ts in sorted(set(whole.ts)):
            values = {m.value: v for m, t, v in zip(whole.metrics, whole.ts, whole.values) if t == ts}
            self.rates.observe(w.principal, w.client_id, values, ts, detail)

    def _with_brokers(self, d: Any, workload: Any) -> Any:
        """The detection with its metric's per-broker values (``extra["brokers"]``), when it has parts on brokers."""
        try:
            detail = self.cluster_series.detail(workload, _metric(d.metric))
        except ValueError:
            return d
        if not detail:
            return d
        return dataclasses.replace(d, extra={**d.extra, "brokers": {b: round(v, 3) for b, v in sorted(detail.items())}})

    def _evict(self, now: float) -> None:
        """Every ``evict_every_s``: the pipeline forgets series unseen for its ``idle_evict_s``, and an
        episode whose workload went silent (it never recovers in the pipeline) is forgotten as well."""
        if self._last_evict is None:
            self._last_evict = now
        if now - self._last_evict < self.evict_every_s:
            return
        self._last_evict = now
        self.evicted += self.pipeline.evict_idle(now)
        idle_s = self.pipeline.config.idle_evict_s
        self.cluster_series.forget_idle(now, idle_s)
        for key in [k for k, ep in self._episodes.items() if now - ep.last_emit > idle_s]:
            del self._episodes[key]

    # -- state (saved and restored per stream partition by guardian.ingest.state) -------
    def snapshot(self, select: Callable[[Any], bool]) -> dict[str, Any]:
        """Everything this stage knows about the workloads ``select`` accepts, as plain data: the
        pipeline's series, the open cluster-wide rounds and the episodes being re-emitted."""
        episodes = [[w.as_dict(), sig, ep.first.to_dict(), ep.onset, ep.last_emit]
                    for (w, sig), ep in self._episodes.items() if select(w)]
        return {"pipeline": self.pipeline.snapshot_workloads(select),
                "cluster_series": self.cluster_series.snapshot(select), "episodes": episodes}

    def restore(self, state: dict[str, Any]) -> None:
        """Put back what ``snapshot`` saved. ``SnapshotError`` if it does not fit; the caller then
        ``forget``s the partition, so a half-restored one starts cold rather than inconsistent."""
        from guardian.model.detection import Detection
        from guardian.errors import SnapshotError
        from guardian.model.samples import Workload

        try:
            episodes = {(Workload(**wd), str(sig)): _Episode(first=Detection.from_dict(first), onset=float(onset),
                                                              last_emit=float(last))
                        for wd, sig, first, onset, last in state["episodes"]}
            rounds = state["cluster_series"]
            pipeline = state["pipeline"]
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"malformed stage state: {type(exc).__name__}: {exc}") from exc
        self.pipeline.restore_workloads(pipeline)
        try:
            self.cluster_series.restore(rounds)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SnapshotError(f"malformed cluster-wide rounds: {type(exc).__name__}: {exc}") from exc
        self._episodes.update(episodes)

    def forget(self, select: Callable[[Any], bool]) -> int:
        """Drop the workloads ``select`` accepts (their partition moved away); returns the series dropped."""
        dropped = self.pipeline.forget_workloads(select)
        self.cluster_series.forget(select)
        if self.pressure is not None:
            self.pressure.forget(select)   # the shared view's totals count a moved tenant once
        for key in [k for k in self._episodes if select(k[0])]:
            del self._episodes[key]
        return dropped

    def _continuing(self, workload: Any, now: float, fresh: set) -> list[Any]:
        mine = [k for k in self._episodes if k[0] == workload and k not in fresh]
        if not mine:
            return []
        snap = self.pipeline.snapshot_workload(workload)
        out = []
        for key in mine:
            ep = self._episodes[key]
            if key[1] not in snap.get("active", {}):
                del self._episodes[key]        # recovered: the next onset is a new episode
                continue
            age = now - ep.onset
            d = ep.first
            series = snap.get("series", {}).get(d.metric, {})
            fast, base = series.get("fast"), series.get("base")
            ratio = None
            if isinstance(fast, (int, float)) and isinstance(base, (int, float)) and base == base and fast == fast:
                floor = self.pipeline.config.tiers[_metric(d.metric)].floor
                ratio = (float(fast) + floor) / (max(float(base), 0.0) + floor)
            every = self.reemit_s if age < self.fast_phase_s else self.slow_reemit_s
            last = ep.emitted_ratio if ep.emitted_ratio is not None else float(d.ratio)
            surged = ratio is not None and last > 0 and ratio >= SURGE * last
            if now - ep.last_emit < every * JITTER and not surged:
                continue
            ep.last_emit = now
            changes: dict[str, Any] = {"ts": now, "duration_s": max(0.0, now - ep.onset)}
            if age >= self.fast_phase_s:
                # a fresh id per slow period: if an SRE released the workload and it still runs
                # away, the engine may open a new quarantine (the old id is taken)
                changes["id"] = f"{d.id}.{int(age // self.slow_reemit_s)}"
            if ratio is not None:
                from guardian.detectors.pipeline import severity_of

                ep.emitted_ratio = ratio
                # a runaway found early (the broker's windowed rate still climbing) grows more severe
                severity = max(d.severity, severity_of(ratio), key=lambda s: s.rank)
                changes.update(observed=float(fast), baseline=float(base), ratio=ratio, severity=severity)
            if "rates" in d.extra:   # the signature's rates since the onset, as of now (guardian.policy.harm)
                rates = self.pipeline.signature_rates(workload, d.signature, _metric(d.metric), ep.onset)
                changes["extra"] = {**d.extra, "rates": {**d.extra["rates"], **rates}}
            out.append(dataclasses.replace(d, **changes))
        return out


def _metric(name: str) -> Any:
    from guardian.model.samples import Metric

    return Metric(name)


def _workload(identity: dict[str, str]) -> Any:
    from guardian.model.samples import Workload

    return Workload(**identity)


def detector_config(settings: GuardianSettings) -> Any:
    from guardian.detectors.config import DetectorConfig

    if settings.detector_file is None:
        return DetectorConfig()
    import yaml

    from guardian.errors import ConfigError

    try:
        data = yaml.safe_load(settings.detector_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{settings.detector_file}: {exc}") from exc
    return DetectorConfig.from_dict(data)


def stage_providers(settings: GuardianSettings) -> tuple[ClusterTraffic, Any, Any]:
    """What a worker's stage feeds and the engine reads: cluster traffic, broker pressure and the
    followed clients' rates, stale after 6 scrapes (at least 30 s)."""
    from guardian.policy.effect import FollowedRates
    from guardian.policy.pressure import ClusterPressure

    stale = max(30.0, 6 * settings.ingest.scrape_interval_s)
    return ClusterTraffic(stale_after_s=stale), ClusterPressure(stale_after_s=stale), FollowedRates()


def build_stage(settings: GuardianSettings, traffic: ClusterTraffic | None = None,
                metrics: Any | None = None, pressure: Any | None = None, rates: Any | None = None,
                view: Any | None = None) -> SampleStage:
    """The detector stage the processors hand each workload's batch to."""
    from guardian.detectors.pipeline import DetectorPipeline

    return DetectorStage(DetectorPipeline(detector_config(settings)), traffic=traffic, metrics=metrics,
                         pressure=pressure, rates=rates, view=view)
