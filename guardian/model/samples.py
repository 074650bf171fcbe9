"""Samples: the one shape every metrics source produces and every detector reads.

A sample is one value of one catalogued metric for one workload at one time.
Sources batch samples per workload into one Kafka record keyed by
``Workload.key`` so a single stream-processor partition owns each workload.

Pure code: no I/O, no client libraries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator, Sequence


class Metric(str, Enum):
    """The metric catalog. Every sample names one of these; unit is fixed per metric."""

    PRODUCE_BYTE_RATE = "produce_byte_rate"            # bytes/s written by the workload
    FETCH_BYTE_RATE = "fetch_byte_rate"                # bytes/s read by the workload
    REQUEST_RATE = "request_rate"                      # requests/s of any type
    PRODUCE_REQUEST_RATE = "produce_request_rate"      # produce requests/s
    FETCH_REQUEST_RATE = "fetch_request_rate"          # fetch requests/s
    REQUEST_TIME_SHARE = "request_time_share"          # % of one broker thread's time (Kafka request_percentage)
    THROTTLE_TIME = "throttle_time"                    # ms of throttle per request (avg)
    ERROR_RATE = "error_rate"                          # failed requests/s
    RETRY_RATE = "retry_rate"                          # retried requests/s (client side)
    CONNECTION_CREATION_RATE = "connection_creation_rate"  # new connections/s
    CONSUMER_LAG = "consumer_lag"                      # messages behind the end offset
    CONSUMER_LAG_GROWTH = "consumer_lag_growth"        # messages/s of lag change
    OFFSET_REWINDS = "offset_rewinds"                  # committed-offset moves backwards per interval
    REWOUND_MESSAGES = "rewound_messages"              # messages re-read because of rewinds
    REBALANCE_RATE = "rebalance_rate"                  # group rebalances/s
    GENERATION_CHURN = "generation_churn"              # group generation increments per interval
    GROUP_MEMBERS = "group_members"                    # members in the group
    TOPIC_CREATION_RATE = "topic_creation_rate"        # topics created/s
    PARTITION_CREATION_RATE = "partition_creation_rate"  # partitions created/s
    PARTITION_COUNT = "partition_count"                # partitions owned by the workload's topics
    BYTES_PER_REQUEST = "bytes_per_request"            # derived: produce bytes / produce requests
    QUEUE_TIME = "queue_time"                          # ms a message waits in the client before send
    REQUEST_LATENCY = "request_latency"                # ms from request sent to response (client side)
    # Broker pressure: is the broker hurting? Broker-level samples (a workload with only ``broker``);
    # the per-client attribution of broker thread time is REQUEST_TIME_SHARE above. Sources, MBeans
    # and caveats: guardian/ingest/pressure.py and docs/broker-plugin.md.
    REQUEST_HANDLER_IDLE = "request_handler_idle"      # 0..1: share of the last ~5 s the broker's I/O threads idled
    NETWORK_PROCESSOR_IDLE = "network_processor_idle"  # 0..1: share of time the least idle network thread idles
    REQUEST_QUEUE_TIME_P99 = "request_queue_time_p99"  # ms a request waits for a handler (label request=Produce|Fetch)
    REQUEST_TOTAL_TIME_P99 = "request_total_time_p99"  # ms from request received to response sent (label request)
    PURGATORY_SIZE = "purgatory_size"                  # ops a purgatory watches (label operation=Produce|Fetch)
    UNDER_REPLICATED_PARTITIONS = "under_replicated_partitions"  # partitions led here with a lagging follower

    @property
    def unit(self) -> str:
        return _UNITS[self]


_UNITS: dict[Metric, str] = {
    Metric.PRODUCE_BYTE_RATE: "bytes/s",
    Metric.FETCH_BYTE_RATE: "bytes/s",
    Metric.REQUEST_RATE: "1/s",
    Metric.PRODUCE_REQUEST_RATE: "1/s",
    Metric.FETCH_REQUEST_RATE: "1/s",
    Metric.REQUEST_TIME_SHARE: "percent",
    Metric.THROTTLE_TIME: "ms",
    Metric.ERROR_RATE: "1/s",
    Metric.RETRY_RATE: "1/s",
    Metric.CONNECTION_CREATION_RATE: "1/s",
    Metric.CONSUMER_LAG: "messages",
    Metric.CONSUMER_LAG_GROWTH: "messages/s",
    Metric.OFFSET_REWINDS: "count",
    Metric.REWOUND_MESSAGES: "messages",
    Metric.REBALANCE_RATE: "1/s",
    Metric.GENERATION_CHURN: "count",
    Metric.GROUP_MEMBERS: "count",
    Metric.TOPIC_CREATION_RATE: "1/s",
    Metric.PARTITION_CREATION_RATE: "1/s",
    Metric.PARTITION_COUNT: "count",
    Metric.BYTES_PER_REQUEST: "bytes",
    Metric.QUEUE_TIME: "ms",
    Metric.REQUEST_LATENCY: "ms",
    Metric.REQUEST_HANDLER_IDLE: "ratio",
    Metric.NETWORK_PROCESSOR_IDLE: "ratio",
    Metric.REQUEST_QUEUE_TIME_P99: "ms",
    Metric.REQUEST_TOTAL_TIME_P99: "ms",
    Metric.PURGATORY_SIZE: "count",
    Metric.UNDER_REPLICATED_PARTITIONS: "count",
}

# The broker-pressure signals, for whoever asks "is the cluster hurting?" (the engine's harm test).
PRESSURE_METRICS: frozenset[Metric] = frozenset({
    Metric.REQUEST_HANDLER_IDLE, Metric.NETWORK_PROCESSOR_IDLE, Metric.REQUEST_QUEUE_TIME_P99,
    Metric.REQUEST_TOTAL_TIME_P99, Metric.PURGATORY_SIZE, Metric.UNDER_REPLICATED_PARTITIONS})

METRICS_BY_NAME: dict[str, Metric] = {m.value: m for m in Metric}


@dataclass(frozen=True, slots=True)
class Workload:
    """What an action can target. Carries all the identity a source knows.

    ``principal`` is the Kafka principal as the broker names it (``User:tenant-a``).
    The narrowest identity is (principal, client_id); group, topic and pod refine it.
    """

    principal: str | None = None
    client_id: str | None = None
    group: str | None = None
    topic: str | None = None
    broker: str | None = None
    pod: str | None = None

    @property
    def key(self) -> str:
        """Stable partitioning and state key: the narrowest identity the sample has."""
        parts = []
        for name in ("principal", "client_id", "group", "topic", "pod"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}")
        return "|".join(parts) or "cluster"

    @property
    def partition_key(self) -> str:
        """The metrics topic's record key: the principal (``principal=User:x``), or ``cluster`` without one.

        Keyed by tenant, not by the narrowest identity, so every series of a tenant reaches the same
        stream-processor worker and the detectors' tenant-level state (a new client's peers) is
        whole with any number of workers; a client's per-broker parts arrive together too. Samples
        without a principal (the brokers' own, groups and topics from the admin poller) share one
        partition, as they share one peer set in the detectors.

        >>> Workload(principal="User:a", client_id="x", broker="1").partition_key, Workload(broker="1").partition_key
        ('principal=User:a', 'cluster')
        """
        return f"principal={self.principal}" if self.principal is not None else "cluster"

    @property
    def tenant(self) -> str | None:
        """The tenant is the principal's name without the ``User:`` prefix."""
        if self.principal is None:
            return None
        return self.principal.split(":", 1)[1] if ":" in self.principal else self.principal

    def as_dict(self) -> dict[str, str]:
        return {k: v for k in ("principal", "client_id", "group", "topic", "broker", "pod")
                if (v := getattr(self, k)) is not None}


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one catalogued metric for one workload at time ``ts`` (unix seconds)."""

    ts: float
    workload: Workload
    metric: Metric
    value: float
    source: str = "unknown"
    cluster: str = "default"
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        return self.metric.unit

    def is_finite(self) -> bool:
        return math.isfinite(self.value) and math.isfinite(self.ts)


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """Samples of one workload from one source: parallel columns ``metrics``, ``ts``, ``values``."""

    workload: Workload
    metrics: tuple[Metric, ...]
    ts: tuple[float, ...]
    values: tuple[float, ...]
    source: str = "unknown"
    cluster: str = "default"
    labels: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Sample]:
        w, src, cl, lb = self.workload, self.source, self.cluster, self.labels
        for m, t, x in zip(self.metrics, self.ts, self.values):
            yield Sample(ts=t, workload=w, metric=m, value=x, source=src, cluster=cl, labels=lb)

    @property
    def key(self) -> str:
        return self.workload.key

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> "SampleBatch":
        """One batch from samples that share workload, source, cluster and labels."""
        if not samples:
            raise ValueError("a batch needs at least one sample")
        first = samples[0]
        return cls(workload=first.workload, metrics=tuple(s.metric for s in samples),
                   ts=tuple(float(s.ts) for s in samples), values=tuple(float(s.value) for s in samples),
                   source=first.source, cluster=first.cluster, labels=dict(first.labels))
