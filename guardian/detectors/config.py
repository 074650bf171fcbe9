"""The one fixed detector configuration: per-metric fast-tier thresholds and signature settings.

Defaults live here; ``configs/detectors.yaml`` may override them. Unknown keys
are rejected. Pure: parsing a dict, no file I/O (the caller reads the YAML).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from guardian.detectors.fast import TierParams
from guardian.errors import ConfigError
from guardian.model.samples import METRICS_BY_NAME, PRESSURE_METRICS, Metric

MB = 1_000_000.0

# Units are the metric's own (guardian.model.samples). Thresholds say what "material" means for a
# shared cluster: a 3x rise of a 2 KB/s producer is not a runaway, a 3x rise of 50 MB/s is.
DEFAULT_TIERS: dict[Metric, TierParams] = {
    Metric.PRODUCE_BYTE_RATE: TierParams(floor=10_000, min_excess=100_000, abs_limit=200 * MB),
    Metric.FETCH_BYTE_RATE: TierParams(floor=10_000, min_excess=200_000, abs_limit=500 * MB),
    Metric.REQUEST_RATE: TierParams(floor=5, min_excess=50, abs_limit=20_000),
    Metric.PRODUCE_REQUEST_RATE: TierParams(floor=5, min_excess=50, abs_limit=20_000),
    Metric.FETCH_REQUEST_RATE: TierParams(floor=5, min_excess=50, abs_limit=20_000),
    Metric.ERROR_RATE: TierParams(floor=1, min_excess=10, abs_limit=1_000),
    Metric.RETRY_RATE: TierParams(floor=1, min_excess=10, abs_limit=1_000),
    Metric.CONNECTION_CREATION_RATE: TierParams(floor=1, min_excess=5, abs_limit=100),
    Metric.CONSUMER_LAG: TierParams(floor=1_000, min_excess=100_000, strong_ratio=3.0, hold_s=30,
                                    abs_limit=50_000_000),
    Metric.CONSUMER_LAG_GROWTH: TierParams(floor=100, min_excess=1_000, hold_s=30, recover_ratio=1.5),
    Metric.OFFSET_REWINDS: TierParams(floor=1, min_excess=1, abs_limit=5, hold_s=2),
    Metric.REWOUND_MESSAGES: TierParams(floor=1_000, min_excess=100_000, hold_s=2),
    # rebalances of the last 20 s per second (guardian.ingest.admin_poller): a storm is 4 or more
    # above normal; one member restarting (a leave and a join, 2-3 changes) stays under it. The
    # window is the smoothing and most of the evidence, so a short average and hold on top
    Metric.REBALANCE_RATE: TierParams(floor=0.01, min_excess=0.18, abs_limit=0.2, hold_s=2, tau_fast_s=1.0),
    Metric.GENERATION_CHURN: TierParams(floor=1, min_excess=3, hold_s=20),
    # one series per principal (no peers to start from) whose normal is ~0: learning it takes a
    # few polls, not the 120 samples of a client's byte rate (a young series learns from what it
    # sees, so a storm in the first minutes after a restart would become its own baseline).
    # Counts per Admin-API poll: the poll is the smoothing, so the fast average follows each poll
    # (tau 0.5 s). A longer one carried a finished burst (a Streams app's internal topics, one
    # Terraform apply) into the next poll, where the hold counted it a second time: one deploy
    # of 10 topics was a storm. The hold (3 s) is more than one poll at the default 2 s interval (a
    # deploy seen by one poll is no detection) and less than two, so a storm fires at its second poll
    # although polls run a little early or late: two polls 2.5 and 1.5 s apart missed a 4 s hold by
    # 0.05 s on three brokers, and the storm went on for a third poll. A poll that overran (3 s or
    # more) makes a deploy it saw a detection, which the budgets' bursts then judge (a watch).
    Metric.TOPIC_CREATION_RATE: TierParams(floor=0.1, min_excess=1, abs_limit=5, warm_n=5, tau_fast_s=0.5,
                                           hold_s=3.0),
    Metric.PARTITION_CREATION_RATE: TierParams(floor=1, min_excess=20, abs_limit=100, warm_n=5, tau_fast_s=0.5,
                                               hold_s=3.0),
    # tracked for context and the retry-storm test, never a detection on their own
    Metric.BYTES_PER_REQUEST: TierParams(floor=100, min_excess=float("inf")),
    Metric.REQUEST_TIME_SHARE: TierParams(floor=1, min_excess=float("inf")),
    Metric.THROTTLE_TIME: TierParams(floor=1, min_excess=float("inf")),
    Metric.QUEUE_TIME: TierParams(floor=1, min_excess=float("inf")),
    Metric.GROUP_MEMBERS: TierParams(floor=1, min_excess=float("inf")),
    # a count only grows: once doubled it would stay in alarm and hide every later storm of its owner
    Metric.PARTITION_COUNT: TierParams(floor=10, min_excess=float("inf")),
    # Broker pressure (PRESSURE_METRICS) has no tier and cannot be given one: broker-level context
    # that the action engine reads from the samples stream; a busy broker is not a runaway workload.
}


@dataclass(frozen=True)
class SignatureSettings:
    tenant_share: float = 0.5          # share of a producer's excess that must show in its tenant's total
    # a tenant's workload that stopped (level ~0, or unseen) this long before a rise began is not
    # where that rise's traffic came from: failovers hand over within seconds to a consumer session
    # timeout (45 s by default), a stopped client's frozen baseline would otherwise count for ~1 h
    failover_window_s: float = 60.0
    retry_bpr_drop: float = 0.7        # bytes per request below this share of normal = smaller requests
    retry_request_rise: float = 1.5
    retry_error_rise: float = 2.0
    emit_anomaly: bool = False         # also emit generic ANOMALY detections for unsigned metrics


@dataclass(frozen=True)
class DetectorConfig:
    tiers: dict[Metric, TierParams] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    signatures: SignatureSettings = field(default_factory=SignatureSettings)
    idle_evict_s: float = 6 * 3600.0   # series unseen this long are forgotten (bounded memory)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "DetectorConfig":
        data = dict(data or {})
        unknown = set(data) - {"tiers", "signatures", "idle_evict_s"}
        if unknown:
            raise ConfigError(f"unknown detector config keys: {sorted(unknown)}")
        tiers = dict(DEFAULT_TIERS)
        tier_keys = {f.name for f in fields(TierParams)}
        for name, overrides in (data.get("tiers") or {}).items():
            metric = METRICS_BY_NAME.get(name)
            if metric is None:
                raise ConfigError(f"unknown metric in detector config: {name}")
            if metric in PRESSURE_METRICS:
                raise ConfigError(f"{name} is a broker pressure signal, read by the engine's harm test; "
                                  "the detectors do not score it")
            bad = set(overrides or {}) - tier_keys
            if bad:
                raise ConfigError(f"unknown keys for {name}: {sorted(bad)}")
            tiers[metric] = replace(tiers.get(metric, TierParams()), **(overrides or {}))
        sig_keys = {f.name for f in fields(SignatureSettings)}
        sig = data.get("signatures") or {}
        bad = set(sig) - sig_keys
        if bad:
            raise ConfigError(f"unknown signature settings: {sorted(bad)}")
        return cls(tiers=tiers, signatures=SignatureSettings(**sig),
                   idle_evict_s=float(data.get("idle_evict_s", 6 * 3600.0)))
