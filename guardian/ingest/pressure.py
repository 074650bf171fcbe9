"""Broker pressure: what both metric sources read to say a broker is hurting, and how it becomes samples.

The JMX exporter (``guardian/ingest/jmx_rules.yaml``, read by ``prometheus.PrometheusSampler``) and the
broker plugin (``broker-plugin/``, read by ``broker_plugin.BrokerSnapshotDecoder``) read the same
broker MBeans and produce the same broker-level samples (``Workload(broker=...)``, nothing else set):

=====================================================================================  ==========================  =====
MBean (attribute)                                                                      sample (labels)             unit
=====================================================================================  ==========================  =====
``kafka.server:type=KafkaRequestHandlerPool,name=RequestHandlerAvgIdlePercent``        ``request_handler_idle``    ratio
(``Count``: rate over the interval / 1e9; ``MeanRate``: pools sharing the meter)
``kafka.server:type=socket-server-metrics,listener=L,networkProcessor=N``              ``network_processor_idle``  ratio
(``io-wait-time-ns-total``: the least idle data-plane network thread; ``NetworkIdle``)
``kafka.network:type=SocketServer,name=NetworkProcessorAvgIdlePercent`` (``Value``)    ``network_processor_idle``  ratio
(only where the per-thread counters are missing)
``kafka.network:type=RequestMetrics,name=RequestQueueTimeMs,request=R`` (p99)          ``request_queue_time_p99``  ms
``kafka.network:type=RequestMetrics,name=TotalTimeMs,request=R`` (p99)                 ``request_total_time_p99``  ms
``kafka.server:type=DelayedOperationPurgatory,name=PurgatorySize,delayedOperation=O``  ``purgatory_size``         count
``kafka.server:type=ReplicaManager,name=UnderReplicatedPartitions`` (``Value``)        ``under_replicated_...``    count
=====================================================================================  ==========================  =====

with R in ``Produce`` and ``FetchConsumer`` (labelled ``request=Produce|Fetch``; consumers' fetches
only, replication fetches excluded) and O in ``Produce`` and ``Fetch`` (``operation=...``).

The handler-idle meter is a Yammer Meter whose ``Count`` grows by idle nanoseconds divided by the
pool's thread count, so its growth per second, over 1e9, is the pool's idle share; its one-minute
rate lags by a minute, too slow for a guardian that acts within seconds. Two things seen on the
local 4.1.1 broker shape how ``HandlerIdle`` reads it:

* a handler marks its idle time only when a wait ends, and a wait lasts up to 300 ms, so over one
  1-second interval the count moves in lumps (a steadily loaded broker read 0.6, 1.0, 0.7, 1.0 ...
  second by second): the share is taken over the last few seconds instead;
* in KRaft combined mode before Kafka 4.2 the broker's and the controller's pools mark the same
  meter, each with its own share (KAFKA-19606): an idle node reads ~2. The meter's lifetime mean
  rate, which cannot exceed the number of pools marking it, says how many there are; the others
  are taken as idle (the controller's pool serves only controller requests and idles nearly always),
  so the share is that of the broker's own pool, the one tenants' requests wait for.

Network threads: ``NetworkProcessorAvgIdlePercent`` is the wrong figure twice over. In KRaft combined
mode the controller's SocketServer registers that gauge first and the broker's registration gets the
same one, so it is the controller listener's idle: it read 1.0 throughout a drill in which the broker's
only network thread was ~95 % busy sending a rewound topic from disk (its ``io-wait-time-ns`` grew 1.3 s
in 29 s) and benign produce waited 1.7 s. And each thread's ``io-wait-ratio`` is a 30-60 s average. So
``NetworkIdle`` takes each data-plane thread's cumulative ``io-wait-time-ns-total`` (time waiting in
select, per ``listener`` and ``networkProcessor``) over the last few seconds, leaves out the controller
listeners, and reports the lowest: every client of the busiest thread waits for it.

Pure code: no I/O.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Hashable

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
    """The broker pool's idle share from the meter's rate (idle ns per second), in 0..1.

    With ``pools`` marking the meter, the pools beyond the broker's own are taken as fully idle.

    >>> idle_ratio(0.4e9), idle_ratio(1.5e9, pools=2), idle_ratio(1.3e9), idle_ratio(float("nan"))
    (0.4, 0.5, 1.0, None)
    """
    return clamp_ratio(idle_ns_per_s / 1e9 - (max(1, pools) - 1))


def clamp_ratio(value: float) -> float | None:
    """A share in 0..1 (interval jitter can push a measured share past either end); None if not finite."""
    if not math.isfinite(value):
        return None
    return min(1.0, max(0.0, value))


class HandlerIdle:
    """The broker pool's idle share from successive readings of the handler-idle meter, per broker.

    ``observe`` keeps the readings of the last ``window_s`` seconds and returns the share over that
    span (over the whole history while it is shorter; ``None`` until there are two readings). A
    count that went down, or a known restart, starts the history again.

    >>> idle = HandlerIdle(window_s=5.0)
    >>> [idle.observe("b1", float(t), c, mean_rate=0.9) for t, c in [(0, 0.0), (1, 0.2e9), (6, 1.2e9)]]
    [None, 0.2, 0.2]
    """

    def __init__(self, window_s: float = 5.0, stale_after_s: float = 600.0) -> None:
        self.window_s = window_s
        self.stale_after_s = stale_after_s
        self._readings: dict[Hashable, deque[tuple[float, float]]] = {}
        # the most pools seen marking each broker's meter since it started: a node's pools do not change
        # while it runs, but the lifetime mean that reveals them sinks towards 1 on a broker kept busy
        self._pools: dict[Hashable, int] = {}

    def observe(self, key: Hashable, ts: float, count: float, mean_rate: float | None = None,
                restarted: bool = False) -> float | None:
        if not (math.isfinite(ts) and math.isfinite(count)):
            return None
        readings = self._readings.setdefault(key, deque())
        if readings and (restarted or count < readings[-1][1]):
            readings.clear()
            self._pools.pop(key, None)
        if readings and ts - readings[-1][0] < 1e-3:
            return None  # the same reading twice, or time went backwards
        readings.append((ts, count))
        # the base is the newest reading at least window_s old (or the oldest one there is)
        while len(readings) > 2 and ts - readings[1][0] >= self.window_s:
            readings.popleft()
        if len(readings) < 2:
            return None
        t0, c0 = readings[0]
        rate = (count - c0) / (ts - t0)
        # (not from ``rate``: scrape jitter can show a single pool more than a second idle per second)
        pools = max(self._pools.get(key, 1), handler_pools(mean_rate))
        self._pools[key] = pools
        return idle_ratio(rate, pools)

    def forget_stale(self, now: float) -> None:
        for key in [k for k, r in self._readings.items() if not r or now - r[-1][0] > self.stale_after_s]:
            del self._readings[key]
            self._pools.pop(key, None)


# Listeners that serve the KRaft controller, not clients (Kafka's usual ``controller.listener.names``).
CONTROLLER_LISTENERS: frozenset[str] = frozenset({"CONTROLLER"})


class NetworkIdle:
    """The least idle data-plane network thread's idle share, per broker, from each thread's io-wait time.

    ``observe`` takes one reading of every thread's cumulative ``io-wait-time-ns-total`` (keyed by
    ``(listener, processor)``) and returns the lowest idle share over the last ``window_s`` among the
    threads of listeners not in ``controller_listeners`` (``None`` until a thread has two readings).

    >>> net = NetworkIdle(window_s=5.0)
    >>> [net.observe("b1", float(t), {("SASL", "1"): ns1, ("PLAIN", "0"): ns0, ("CONTROLLER", "2"): 0.0})
    ...  for t, ns1, ns0 in [(0, 0.0, 0.0), (1, 0.9e9, 0.95e9), (6, 1.2e9, 5.9e9)]]
    [None, 0.9, 0.06]
    """

    def __init__(self, window_s: float = 5.0, stale_after_s: float = 600.0,
                 controller_listeners: frozenset[str] = CONTROLLER_LISTENERS) -> None:
        self._threads = HandlerIdle(window_s=window_s, stale_after_s=stale_after_s)   # one pool: one thread
        self.controller_listeners = controller_listeners

    def observe(self, broker: Hashable, ts: float, io_wait_ns: dict[tuple[str, str], float],
                restarted: bool = False) -> float | None:
        ratios = []
        for (listener, processor), ns in io_wait_ns.items():
            if listener in self.controller_listeners:
                continue
            ratio = self._threads.observe((broker, listener, processor), ts, ns, restarted=restarted)
            if ratio is not None:
                ratios.append(ratio)
        return min(ratios) if ratios else None

    def forget_stale(self, now: float) -> None:
        self._threads.forget_stale(now)
