"""Broker pressure: what both metric sources read to say a broker is hurting, and how it becomes samples.

The JMX exporter (``guardian/dev/jmx_rules.yaml``, read by ``prometheus.PrometheusSampler``) and the
broker plugin (``broker-plugin/``, read by ``broker_plugin.BrokerSnapshotDecoder``) read the same
broker MBeans and produce the same broker-level samples (``Workload(broker=...)``, nothing else set):

=====================================================================================  ==========================  =====
MBean (attribute)                                                                      sample (labels)             unit
=====================================================================================  ==========================  =====
``kafka.server:type=KafkaRequestHandlerPool,name=RequestHandlerAvgIdlePercent``        ``request_handler_idle``    ratio
(``Count``: rate over the interval / 1e9; ``MeanRate``: pools sharing the meter)
``kafka.network:type=SocketServer,name=NetworkProcessorAvgIdlePercent`` (``Value``)    ``network_processor_idle``  ratio
``kafka.network:type=RequestMetrics,name=RequestQueueTimeMs,request=R`` (p99)          ``request_queue_time_p99``  ms
``kafka.network:type=RequestMetrics,name=TotalTimeMs,request=R`` (p99)                 ``request_total_time_p99``  ms
``kafka.server:type=DelayedOperationPurgatory,name=PurgatorySize,delayedOperation=O``  ``purgatory_size``         count
``kafka.server:type=ReplicaManager,name=UnderReplicatedPartitions`` (``Value``)        ``under_replicated_...``    count
=====================================================================================  ==========================  =====

with R in ``Produce`` and ``FetchConsumer`` (labelled ``request=Produce|Fetch``; consumers' fetches
only, replication fetches excluded) and O in ``Produce`` and ``Fetch`` (``operation=...``).

The handler-idle meter is a Yammer Meter whose ``Count`` grows by idle nanoseconds divided by the
pool's thread count, so its rate over one interval, over 1e9, is the pool's idle share now; its
one-minute rate lags by a minute, too slow for a guardian that acts within seconds. In KRaft
combined mode before Kafka 4.2 the broker's and the controller's pools mark the same meter, each
with its own share (KAFKA-19606, seen on the local 4.1.1 broker: ~2.0 when idle); the meter's
lifetime mean rate, which cannot exceed the number of pools marking it, tells how many there are.

Pure code: no I/O.
"""

from __future__ import annotations

import math

# RequestMetrics request type -> the sample's ``request`` label.
REQUEST_LABELS: dict[str, str] = {"Produce": "Produce", "FetchConsumer": "Fetch"}
# Purgatories (``delayedOperation``) worth watching: produce waiting on acks, fetch on min bytes.
PURGATORIES: frozenset[str] = frozenset({"Produce", "Fetch"})

# A single pool's lifetime mean stays at or below 1 by construction; the margin keeps float noise out.
_POOL_MARGIN = 0.05


def handler_pools(mean_rate: float | None) -> int:
    """How many handler pools mark the idle meter, from its lifetime mean rate (``MeanRate``).

    >>> handler_pools(0.93), handler_pools(1.99), handler_pools(None)
    (1, 2, 1)

    A combined-mode node whose broker pool has been busy for nearly all its life reads as one
    pool, so its idle share reads high (pressure is missed, never invented).
    """
    if mean_rate is None or not math.isfinite(mean_rate) or mean_rate <= 1.0 + _POOL_MARGIN:
        return 1
    return math.ceil(mean_rate - _POOL_MARGIN)


def idle_ratio(idle_ns_per_s: float, pools: int = 1) -> float | None:
    """The handler threads' idle share from the meter's rate (idle ns per second), in 0..1.

    >>> idle_ratio(0.4e9), idle_ratio(1.9e9, pools=2), idle_ratio(1.3e9), idle_ratio(float("nan"))
    (0.4, 0.95, 1.0, None)
    """
    return clamp_ratio(idle_ns_per_s / 1e9 / max(1, pools))


def clamp_ratio(value: float) -> float | None:
    """A share in 0..1 (interval jitter can push a measured share past either end); None if not finite."""
    if not math.isfinite(value):
        return None
    return min(1.0, max(0.0, value))
