"""The entry point the stream processor calls: samples in, runaway detections out.

``DetectorPipeline(config, clock).process(samples)`` routes each sample to
its metric's vectorised fast tier (one slot per workload and metric), keeps
per-tenant sums of level and baseline so a workload is compared with its
tenant's peers, and turns series alarms into named signatures
(``guardian.model.detection.Signature``). A detection is emitted when a signature
starts for a workload and again only after it has recovered.

State can be snapshotted and restored per workload (the stream processor
moves it with the partition that owns the workload).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import replace
from typing import Any, Callable, Iterable

import numpy as np

from guardian.detectors.config import DetectorConfig
from guardian.model.detection import Detection, Severity, Signature
from guardian.detectors.fast import FastTierDetector, TierStep
from guardian.model.samples import PRESSURE_METRICS, Metric, Sample, SampleBatch, Workload

SIGNATURE_OF: dict[Metric, Signature] = {
    Metric.PRODUCE_BYTE_RATE: Signature.RUNAWAY_PRODUCER,
    Metric.PRODUCE_REQUEST_RATE: Signature.RUNAWAY_PRODUCER,
    Metric.REQUEST_RATE: Signature.RUNAWAY_PRODUCER,
    Metric.ERROR_RATE: Signature.RETRY_STORM,
    Metric.RETRY_RATE: Signature.RETRY_STORM,
    Metric.FETCH_BYTE_RATE: Signature.RUNAWAY_CONSUMER,
    Metric.FETCH_REQUEST_RATE: Signature.RUNAWAY_CONSUMER,
    Metric.OFFSET_REWINDS: Signature.RUNAWAY_CONSUMER,
    Metric.REWOUND_MESSAGES: Signature.RUNAWAY_CONSUMER,
    Metric.CONSUMER_LAG: Signature.LAG_EXPLOSION,
    Metric.CONSUMER_LAG_GROWTH: Signature.LAG_EXPLOSION,
    Metric.REBALANCE_RATE: Signature.REBALANCE_STORM,
    Metric.GENERATION_CHURN: Signature.REBALANCE_STORM,
    Metric.TOPIC_CREATION_RATE: Signature.PARTITION_STORM,
    Metric.PARTITION_CREATION_RATE: Signature.PARTITION_STORM,
    Metric.CONNECTION_CREATION_RATE: Signature.CONNECTION_STORM,
}
# the metrics whose alarms each signature names: a detection carries each one's average since its onset
METRICS_OF: dict[Signature, tuple[Metric, ...]] = {
    sig: tuple(m for m, s in SIGNATURE_OF.items() if s is sig) for sig in set(SIGNATURE_OF.values())}
_PRODUCER_METRICS = (Metric.PRODUCE_BYTE_RATE, Metric.PRODUCE_REQUEST_RATE, Metric.REQUEST_RATE)
_REQUEST_METRICS = (Metric.PRODUCE_REQUEST_RATE, Metric.REQUEST_RATE)
_ERROR_METRICS = (Metric.ERROR_RATE, Metric.RETRY_RATE)


def severity_of(ratio: float) -> Severity:
    if ratio >= 10:
        return Severity.CRITICAL
    if ratio >= 5:
        return Severity.HIGH
    if ratio >= 3:
        return Severity.MEDIUM
    return Severity.LOW


class _MetricTable:
    """Slots of one metric: which workload owns each, its tenant, and per-tenant sums."""

    def __init__(self, detector: FastTierDetector) -> None:
        self.detector = detector
        self.slot_of: dict[Workload, int] = {}
        self.workloads: list[Workload | None] = []
        self.tenant = np.zeros(1024, dtype=np.int64)
        self.free: list[int] = []
        self.tenant_fast = np.zeros(64)
        self.tenant_base = np.zeros(64)
        self.tenant_count = np.zeros(64)

    def slot(self, workload: Workload, tenant_index: int) -> int:
        slot = self.slot_of.get(workload)
        if slot is None:
            if self.free:
                slot = self.free.pop()
                self.workloads[slot] = workload
            else:
                slot = len(self.workloads)
                self.workloads.append(workload)
            if slot >= len(self.tenant):
                self.tenant = np.concatenate([self.tenant, np.zeros(len(self.tenant), dtype=np.int64)])
            self.tenant[slot] = tenant_index
            self.slot_of[workload] = slot
        return slot

    def grow_tenants(self, n: int) -> None:
        if n > len(self.tenant_fast):
            size = max(n, 2 * len(self.tenant_fast))
            for name in ("tenant_fast", "tenant_base", "tenant_count"):
                arr = getattr(self, name)
                grown = np.zeros(size)
                grown[: len(arr)] = arr
                setattr(self, name, grown)


class DetectorPipeline:
    """Per-workload online detection over the whole metric catalog.

    ``clock`` returns unix seconds; it is used only to evict idle series.
    """

    def __init__(self, config: DetectorConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or DetectorConfig()
        self.clock = clock
        # Broker pressure samples pass through unscored (no table): context for the engine, never a detection.
        self._tables: dict[Metric, _MetricTable] = {
            m: _MetricTable(FastTierDetector(params)) for m, params in self.config.tiers.items()
            if m not in PRESSURE_METRICS}
        self._tenants: dict[str | None, int] = {}
        self._rows: dict[Workload, dict[str, int]] = {}   # workload -> metric value -> slot
        # (workload, signature) -> metrics currently in alarm for it; emitted once per episode
        self._active: dict[tuple[Workload, Signature], set[Metric]] = {}

    def slot(self, workload: Workload, metric: Metric) -> int:
        """The slot of a workload's series of ``metric`` (allocated on first use), for ``process_arrays``."""
        tenant = workload.tenant
        ti = self._tenants.get(tenant)
        if ti is None:
            ti = self._tenants[tenant] = len(self._tenants)
        slot = self._tables[metric].slot(workload, ti)
        self._rows.setdefault(workload, {})[metric.value] = slot
        return slot

    # -- the hot path ---------------------------------------------------------------
    def process(self, samples: Iterable[Sample]) -> list[Detection]:
        """Score and learn a batch of samples; returns the detections that start in it.

        Samples of one workload usually arrive together (one record per workload), so the
        workload's slot row is looked up once per run of its samples, not once per sample.
        """
        groups: dict[str, tuple[list[int], list[float], list[float]]] = {}
        rows = self._rows
        last_w: Workload | None = None
        row: dict[str, int] = {}
        for s in samples:
            w = s.workload
            if w is not last_w:
                row = rows.get(w)  # type: ignore[assignment]
                if row is None:
                    row = rows[w] = {}
                last_w = w
            mv = s.metric._value_
            slot = row.get(mv)
            if slot is None:
                if s.metric not in self._tables:
                    continue
                slot = self.slot(w, s.metric)
            g = groups.get(mv)
            if g is None:
                g = groups[mv] = ([], [], [])
            g[0].append(slot)
            g[1].append(s.ts)
            g[2].append(s.value)
        return self._run(groups)

    def process_batches(self, batches: Iterable[SampleBatch]) -> list[Detection]:
        """Like ``process`` for columnar per-workload batches, without building one ``Sample`` per value."""
        groups: dict[str, tuple[list[int], list[float], list[float]]] = {}
        rows = self._rows
        for b in batches:
            w = b.workload
            row = rows.get(w)
            if row is None:
                row = rows[w] = {}
            for m, t, x in zip(b.metrics, b.ts, b.values):
                mv = m._value_
                slot = row.get(mv)
                if slot is None:
                    if m not in self._tables:
                        continue
                    slot = self.slot(w, m)
                g = groups.get(mv)
                if g is None:
                    g = groups[mv] = ([], [], [])
                g[0].append(slot)
                g[1].append(t)
                g[2].append(x)
        return self._run(groups)

    def _run(self, groups: dict[str, tuple[list[int], list[float], list[float]]]) -> list[Detection]:
        """Each metric's samples through its tier; then the new detections' signature rates again, with
        every metric of the batch in (the series that fired was a sample ahead of those after it)."""
        out: list[Detection] = []
        for mv, (slots, ts, values) in groups.items():
            out.extend(self.process_arrays(Metric(mv), np.array(slots, dtype=np.int64),
                                           np.array(ts, dtype=np.float64), np.array(values, dtype=np.float64)))
        if len(groups) > 1:
            out = [self._with_rates(d) for d in out]
        return out

    def _with_rates(self, d: Detection) -> Detection:
        if "rates" not in d.extra:
            return d
        rates = self.signature_rates(Workload(**d.workload), d.signature, Metric(d.metric), d.ts - d.duration_s)
        return replace(d, extra={**d.extra, "rates": rates})

    def process_arrays(self, metric: Metric, slots: np.ndarray, ts: np.ndarray,
                       values: np.ndarray) -> list[Detection]:
        """One metric's batch as arrays (slots from this pipeline); several samples per slot allowed."""
        if len(slots) == 0:
            return []
        # one sample per slot per vectorised step: split repeated slots into rounds, in time order
        if len(np.unique(slots)) == len(slots):
            return self._step(metric, slots, ts, values)
        order = np.lexsort((ts, slots))
        ss = slots[order]
        first = np.concatenate([[True], ss[1:] != ss[:-1]])
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(ss)), 0))
        rank = np.arange(len(ss)) - group_start
        out: list[Detection] = []
        for r in range(int(rank.max()) + 1):
            idx = order[rank == r]
            out.extend(self._step(metric, slots[idx], ts[idx], values[idx]))
        return out

    def _step(self, metric: Metric, slots: np.ndarray, ts: np.ndarray, values: np.ndarray) -> list[Detection]:
        table = self._tables[metric]
        det = table.detector
        det._ensure(int(slots.max()))
        table.grow_tenants(len(self._tenants))
        cols = det.state.cols
        tix = table.tenant[slots]
        new = cols["n"][slots] == 0
        old_fast = np.where(new, 0.0, cols["fast"][slots])
        old_base = np.where(new, 0.0, cols["base"][slots])
        step = det.step(slots, ts, values, prior=self._peer_prior(table, tix, new) if new.any() else None)
        # keep the tenant sums of level and baseline current (a series counts from its first sample)
        seen = cols["n"][slots] > 0
        d_fast = np.where(seen, cols["fast"][slots], 0.0) - old_fast
        d_base = np.where(seen, cols["base"][slots], 0.0) - old_base
        if len(self._tenants) == 1:
            table.tenant_fast[0] += d_fast.sum()
            table.tenant_base[0] += d_base.sum()
            table.tenant_count[0] += (new & seen).sum()
        else:
            table.tenant_fast += np.bincount(tix, d_fast, minlength=len(table.tenant_fast))
            table.tenant_base += np.bincount(tix, d_base, minlength=len(table.tenant_base))
            table.tenant_count += np.bincount(tix, (new & seen), minlength=len(table.tenant_count))

        out: list[Detection] = []
        if metric not in SIGNATURE_OF and not self.config.signatures.emit_anomaly:
            return out
        for i in np.nonzero(step.recovered)[0]:
            self._recover(metric, int(slots[i]))
        for i in np.nonzero(step.onset)[0]:
            d = self._signature(metric, int(slots[i]), float(ts[i]), step, int(i))
            if d is not None:
                out.append(d)
        return out

    def _peer_prior(self, table: _MetricTable, tix: np.ndarray, new: np.ndarray) -> np.ndarray:
        """The prior of each new series (NaN for the others): the mean baseline of its tenant's
        established series, those with ``warm_n`` samples or more, NaN when it has none.

        A peer first seen moments before is no normal: counting it made the prior, and so whether a
        new client fired, depend on how the records were cut (one record at a time, a peer from the
        same scrape came first and its first value was the normal; in one chunk, no peer was there).
        """
        c = table.detector.state.cols
        size = len(table.workloads)
        warm = c["n"][:size] >= table.detector.params.warm_n
        owners = table.tenant[:size][warm]
        sums = np.bincount(owners, np.nan_to_num(c["base"][:size][warm]), minlength=len(self._tenants))
        counts = np.bincount(owners, minlength=len(self._tenants))
        prior = np.full(len(tix), np.nan)
        t = tix[new]
        prior[new] = np.where(counts[t] > 0, sums[t] / np.maximum(counts[t], 1), np.nan)
        return prior

    # -- signatures -----------------------------------------------------------------
    def _view(self, metric: Metric, workload: Workload) -> tuple[float, float, float, bool] | None:
        """(fast, base, ratio, in_alarm) of a workload's other metric, if tracked."""
        table = self._tables.get(metric)
        slot = table.slot_of.get(workload) if table else None
        if slot is None:
            return None
        c = table.detector.state.cols
        fast, base = float(c["fast"][slot]), float(c["base"][slot])
        floor = table.detector.params.floor
        ratio = (fast + floor) / (max(base, 0.0) + floor)
        return fast, base, ratio, bool(c["alarm"][slot])

    def _signature(self, metric: Metric, slot: int, ts: float, step: TierStep, i: int) -> Detection | None:
        table = self._tables[metric]
        workload = table.workloads[slot]
        assert workload is not None
        cfg = self.config.signatures
        fast, base, ratio = float(step.fast[i]), float(step.base[i]), float(step.ratio[i])
        signature = SIGNATURE_OF.get(metric, Signature.ANOMALY)
        confidence = 1.0 - math.exp(-max(ratio - 1.0, 0.0) / 2.0)
        extra: dict[str, Any] = {"young": bool(step.young[i])}

        if metric in _PRODUCER_METRICS or metric in _ERROR_METRICS:
            errs = [v for m in _ERROR_METRICS if (v := self._view(m, workload))]
            reqs = [v for m in _REQUEST_METRICS if (v := self._view(m, workload))]
            err_up = any(v[3] or v[2] >= cfg.retry_error_rise for v in errs)
            req_up = any(v[2] >= cfg.retry_request_rise for v in reqs)
            bpr = self._bytes_per_request_ratio(workload)
            bpr_down = bpr is not None and bpr <= cfg.retry_bpr_drop
            extra.update(errors_up=err_up, requests_up=req_up, bytes_per_request_ratio=bpr)
            if metric in _ERROR_METRICS or (metric in _REQUEST_METRICS and (err_up or bpr_down)):
                signature = Signature.RETRY_STORM
                confidence = min(0.99, 0.4 + 0.2 * err_up + 0.2 * req_up + 0.2 * bpr_down)
        if signature is Signature.RUNAWAY_PRODUCER:
            # a failover moves traffic between a tenant's workloads; a runaway adds to the tenant's total
            t = table.tenant[slot]
            rise = np.fmin(table.detector.state.cols["rise_ts"][slot], ts - float(step.duration_s[i]))
            tenant_excess = float(table.tenant_fast[t] - table.tenant_base[t]) - self._gone_excess(
                table, t, float(rise) - cfg.failover_window_s)
            share = tenant_excess / max(fast - base, 1e-9)
            extra["tenant_excess_share"] = round(share, 3)
            if share < cfg.tenant_share and not step.young[i] and fast < table.detector.params.abs_limit:
                # the tenant's total did not rise with it: traffic moved, it did not run away
                table.detector.accept(slot)
                return None
            confidence = min(0.99, confidence * min(1.0, share))
        key = (workload, signature)
        active = self._active.setdefault(key, set())
        fresh = not active
        active.add(metric)
        if not fresh:
            return None
        duration = float(step.duration_s[i])
        onset = ts - duration
        rates = self.signature_rates(workload, signature, metric, onset)
        if rates:
            extra["rates"] = rates
        ident = hashlib.sha1(f"{workload.key}|{signature.value}|{onset:.3f}".encode()).hexdigest()[:16]
        return Detection(
            id=ident, ts=ts, signature=signature, severity=severity_of(ratio),
            confidence=round(float(confidence), 3), workload=workload.as_dict(), metric=metric.value,
            baseline=base, observed=fast, ratio=ratio, duration_s=duration,
            evidence=table.detector.evidence(slot), detector=table.detector.name, extra=extra)

    def signature_rates(self, workload: Workload, signature: Signature, metric: Metric,
                        onset: float) -> dict[str, float]:
        """Each rate of the signature (``metric``'s alone if it has none) on average since ``onset``, from
        the workload's evidence samples (a partition storm's topics and partitions per second): the harm
        test judges each against its budget and burst, whichever series fired."""
        rates = {}
        for m in METRICS_OF.get(signature, (metric,)):
            table = self._tables.get(m)
            at = table.slot_of.get(workload) if table else None
            if at is not None and (mean := table.detector.mean_since(at, onset)) is not None:
                rates[m.value] = round(mean, 6)
        return rates

    @staticmethod
    def _gone_excess(table: _MetricTable, tenant: int, before: float) -> float:
        """The part of a tenant's excess owed to its workloads that stopped before ``before``.

        A stopped workload keeps its baseline for about ``tau_base_s`` while its level is ~0, so
        without this every later rise in its tenant would look like traffic that moved to it
        (a failover). Traffic moves at about the same time it stops; one that went quiet, or
        was last seen, before ``before`` did not move to this rise. Scans the tenant's slots:
        it runs only at a producer onset.
        """
        c = table.detector.state.cols
        n = len(table.workloads)
        mine = (table.tenant[:n] == tenant) & (c["n"][:n] > 0)
        gone = mine & ((c["quiet_ts"][:n] < before) | (c["last_ts"][:n] < before))
        if not gone.any():
            return 0.0
        return float(np.nansum(c["fast"][:n][gone]) - np.nansum(c["base"][:n][gone]))

    def _bytes_per_request_ratio(self, workload: Workload) -> float | None:
        direct = self._view(Metric.BYTES_PER_REQUEST, workload)
        if direct is not None:
            return direct[2]
        b = self._view(Metric.PRODUCE_BYTE_RATE, workload)
        r = self._view(Metric.PRODUCE_REQUEST_RATE, workload) or self._view(Metric.REQUEST_RATE, workload)
        if b is None or r is None or r[0] <= 0 or r[1] <= 0 or b[1] <= 0:
            return None
        return (b[0] / r[0]) / (b[1] / r[1])

    def _recover(self, metric: Metric, slot: int) -> None:
        table = self._tables[metric]
        workload = table.workloads[slot]
        for sig in {SIGNATURE_OF.get(metric, Signature.ANOMALY), Signature.RETRY_STORM}:
            active = self._active.get((workload, sig))
            if active is not None:
                active.discard(metric)
                if not active:
                    del self._active[(workload, sig)]

    # -- state ----------------------------------------------------------------------
    def snapshot_workload(self, workload: Workload) -> dict[str, Any]:
        """Everything the pipeline knows about one workload, as plain data."""
        series = {}
        for metric, table in self._tables.items():
            slot = table.slot_of.get(workload)
            if slot is not None:
                series[metric.value] = table.detector.snapshot(slot)
        active = {sig.value: sorted(m.value for m in ms) for (w, sig), ms in self._active.items() if w == workload}
        return {"workload": workload.as_dict(), "series": series, "active": active}

    def restore_workload(self, state: dict[str, Any]) -> Workload:
        workload = Workload(**state["workload"])
        for name, snap in state["series"].items():
            self._restore_series(workload, Metric(name), snap)
        for sig, metrics in state.get("active", {}).items():
            self._active[(workload, Signature(sig))] = {Metric(m) for m in metrics}
        return workload

    def _restore_series(self, workload: Workload, metric: Metric, snap: dict[str, Any]) -> None:
        table = self._tables[metric]
        ti = self._tenants.setdefault(workload.tenant, len(self._tenants))
        slot = self.slot(workload, metric)
        table.grow_tenants(len(self._tenants))
        c = table.detector.state.cols
        table.detector._ensure(slot)
        old_f, old_b, had = c["fast"][slot], c["base"][slot], c["n"][slot] > 0
        table.detector.restore(slot, snap)
        has = c["n"][slot] > 0
        table.tenant_fast[ti] += np.nan_to_num(c["fast"][slot]) - (np.nan_to_num(old_f) if had else 0.0)
        table.tenant_base[ti] += np.nan_to_num(c["base"][slot]) - (np.nan_to_num(old_b) if had else 0.0)
        table.tenant_count[ti] += float(has) - float(had)

    def workloads(self) -> list[Workload]:
        """Every workload with at least one tracked series."""
        seen: dict[Workload, None] = {}
        for table in self._tables.values():
            seen.update(dict.fromkeys(table.slot_of))
        return list(seen)

    def snapshot_workloads(self, select: Callable[[Workload], bool]) -> dict[str, Any]:
        """The state of every tracked series whose workload ``select`` accepts, as plain data.

        This is how the stream processor saves a partition (``select`` = the partition's workloads):
        per metric, the series in slot order, the episodes in alarm, and the tenant sums of the
        tenants involved, so that ``restore_workloads`` into a pipeline without those tenants scores
        the next samples exactly as this one. Evicted series are not tracked, so not saved: the size
        is bounded by the live series (``DetectorConfig.idle_evict_s``).
        """
        tables: dict[str, list[list[Any]]] = {}
        tenants: dict[str, list[list[Any]]] = {}
        index = {ti: tenant for tenant, ti in self._tenants.items()}
        for metric, table in self._tables.items():
            rows: list[list[Any]] = []
            mine: dict[int, int] = {}      # tenant index -> series of it selected (that have a sample)
            n = table.detector.state.cols["n"]
            for slot, w in enumerate(table.workloads):
                if w is not None and select(w):
                    rows.append([w.as_dict(), table.detector.snapshot(slot)])
                    ti = int(table.tenant[slot])
                    mine[ti] = mine.get(ti, 0) + int(n[slot] > 0)
            if rows:
                tables[metric.value] = rows
                table.grow_tenants(len(self._tenants))
                # only a tenant saved whole: sums of a tenant split over partitions are rebuilt on restore
                tenants[metric.value] = [[index[ti], float(table.tenant_fast[ti]), float(table.tenant_base[ti]),
                                          float(table.tenant_count[ti])]
                                         for ti, k in sorted(mine.items()) if k == table.tenant_count[ti]]
        active = [[w.as_dict(), sig.value, sorted(m.value for m in ms)]
                  for (w, sig), ms in self._active.items() if select(w)]
        return {"tables": tables, "tenants": tenants, "active": active}

    def restore_workloads(self, state: dict[str, Any]) -> list[Workload]:
        """Put back what ``snapshot_workloads`` saved; returns the workloads restored.

        Checked whole before anything changes: a snapshot that does not fit this pipeline (an
        unknown metric, another evidence length, a malformed row) raises ``SnapshotError`` and
        leaves the pipeline as it was. A tenant this pipeline does not know yet gets its saved
        sums back exactly; one it already knows (it was split over partitions) has the restored
        series added to its sums.
        """
        plan = self._check_snapshot(state)
        fresh: dict[tuple[Metric, str | None], bool] = {}
        for metric, rows in plan:
            table = self._tables[metric]
            for w, _ in rows:
                ti = self._tenants.get(w.tenant)
                key = (metric, w.tenant)
                if key not in fresh:
                    fresh[key] = ti is None or ti >= len(table.tenant_count) or table.tenant_count[ti] == 0
        restored: dict[Workload, None] = {}
        for metric, rows in plan:
            for w, snap in rows:
                self._restore_series(w, metric, snap)
                restored[w] = None
        for name, sums in state.get("tenants", {}).items():
            metric = Metric(name)
            table = self._tables[metric]
            for tenant, fast, base, count in sums:
                if fresh.get((metric, tenant)):
                    ti = self._tenants[tenant]
                    table.tenant_fast[ti], table.tenant_base[ti], table.tenant_count[ti] = fast, base, count
        for wd, sig, metrics in state.get("active", []):
            self._active[(Workload(**wd), Signature(sig))] = {Metric(m) for m in metrics}
        return list(restored)

    def _check_snapshot(self, state: dict[str, Any]) -> list[tuple[Metric, list[tuple[Workload, dict[str, Any]]]]]:
        from guardian.errors import SnapshotError

        try:
            plan = []
            for name, rows in state["tables"].items():
                metric = Metric(name)
                if metric not in self._tables:
                    raise SnapshotError(f"metric {name!r} has no fast tier in this detector configuration")
                params = self._tables[metric].detector.params
                checked = []
                for wd, snap in rows:
                    for key in ("ev_ts", "ev_val"):
                        if key in snap and len(snap[key]) != params.evidence:
                            raise SnapshotError(f"{name}: {len(snap[key])} evidence samples saved, "
                                                f"this configuration keeps {params.evidence}")
                    if not all(isinstance(v, (int, float)) for k, v in snap.items()
                               if k not in ("ev_ts", "ev_val", "seasonal")):
                        raise SnapshotError(f"{name}: a series column is not a number")
                    checked.append((Workload(**wd), snap))
                plan.append((metric, checked))
            for name, sums in state.get("tenants", {}).items():
                for tenant, fast, base, count in sums:
                    float(fast), float(base), float(count)
                    if Metric(name) not in self._tables:
                        raise SnapshotError(f"tenant sums of unknown metric {name!r}")
            for wd, sig, metrics in state.get("active", []):
                Workload(**wd), Signature(sig), [Metric(m) for m in metrics]
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SnapshotError(f"malformed detector state: {type(exc).__name__}: {exc}") from exc
        return plan

    def forget_workloads(self, select: Callable[[Workload], bool]) -> int:
        """Drop every series (and episode) of the workloads ``select`` accepts; returns how many series.

        The stream processor calls it for a partition that moved to another worker."""
        dropped = 0
        for metric, table in self._tables.items():
            slots = np.array(sorted(s for w, s in table.slot_of.items() if select(w)), dtype=np.int64)
            if len(slots):
                self._drop(metric, table, slots)
                dropped += len(slots)
        for key in [k for k in self._active if select(k[0])]:
            del self._active[key]
        for w in [w for w in self._rows if select(w)]:
            del self._rows[w]
        return dropped

    def evict_idle(self, now: float | None = None) -> int:
        """Forget series not seen for ``idle_evict_s`` before ``now`` (the sample time the caller is
        at; default the clock); returns how many were dropped. A caller replaying old samples passes
        their time, or every series would look idle by the wall clock."""
        now = self.clock() if now is None else now
        dropped = 0
        for metric, table in self._tables.items():
            c = table.detector.state.cols
            n = len(table.workloads)
            stale = np.nonzero((c["n"][:n] > 0) & (now - c["last_ts"][:n] > self.config.idle_evict_s))[0]
            if not len(stale):
                continue
            self._drop(metric, table, stale)
            dropped += len(stale)
        return dropped

    def _drop(self, metric: Metric, table: _MetricTable, slots: np.ndarray) -> None:
        """Forget the series in ``slots`` of ``table``: out of the tenant sums, episodes closed, slots freed."""
        c = table.detector.state.cols
        seen = slots[c["n"][slots] > 0]
        tix = table.tenant[seen]
        np.add.at(table.tenant_fast, tix, -np.nan_to_num(c["fast"][seen]))
        np.add.at(table.tenant_base, tix, -np.nan_to_num(c["base"][seen]))
        np.add.at(table.tenant_count, tix, -1.0)
        for slot in slots.tolist():
            w = table.workloads[slot]
            self._recover(metric, slot)
            del table.slot_of[w]
            row = self._rows.get(w)
            if row is not None:
                row.pop(metric.value, None)
                if not row:
                    del self._rows[w]
            table.workloads[slot] = None
            table.free.append(slot)
        table.detector.reset(slots)

    def tracked_series(self) -> int:
        return sum(len(t.slot_of) for t in self._tables.values())
