"""Source 4: the broker plugin's records, decoded into samples.

Two record kinds arrive from ``broker-plugin/`` (see its README):

* broker-metrics snapshots on ``guardian.broker-metrics``: versioned JSON with
  the broker's own Kafka metrics (``[group, name, {tags}, value]``: quota
  sensors per (user, client-id), socket and group-coordinator metrics) and
  Yammer metrics (per-topic and per-request counters, controller counts, and
  the broker-pressure MBeans of ``guardian.ingest.pressure``: the handler-idle
  meter's count and, tagged ``stat=mean_rate``, its lifetime mean; gauges'
  values; request-time histograms' 99th percentile tagged ``stat=p99``);
* KIP-714 client telemetry on ``guardian.telemetry``: the OTLP ``MetricsData``
  a client pushed, as is, with the client's principal, client-id and instance
  id in record headers. The metric names are the KIP-714 standard ones
  (``org.apache.kafka.producer.*`` / ``org.apache.kafka.consumer.*``).

Both decoders are pure (bytes and headers in, samples out) and stateful only
for counters turned into rates. Anything that does not decode raises
``DecodeError`` so the record goes to the dead-letter topic.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import orjson

from guardian.errors import DecodeError
from guardian.ingest.pressure import PURGATORIES, REQUEST_LABELS, HandlerIdle, NetworkIdle, clamp_ratio
from guardian.ingest.prometheus import TOPIC_METERS
from guardian.ingest.rates import CounterRates
from guardian.model.samples import Metric, Sample, Workload

SOURCE_BROKER = "broker-plugin"
SOURCE_TELEMETRY = "kip714"
SNAPSHOT_VERSION = 1

_QUOTA: dict[tuple[str, str], Metric] = {
    ("Produce", "byte-rate"): Metric.PRODUCE_BYTE_RATE,
    ("Fetch", "byte-rate"): Metric.FETCH_BYTE_RATE,
    ("Request", "request-time"): Metric.REQUEST_TIME_SHARE,
    ("Produce", "throttle-time"): Metric.THROTTLE_TIME,
    ("Fetch", "throttle-time"): Metric.THROTTLE_TIME,
    ("Request", "throttle-time"): Metric.THROTTLE_TIME,
}
_COUNTS: dict[str, Metric] = {"GlobalTopicCount": Metric.TOPIC_CREATION_RATE,
                              "GlobalPartitionCount": Metric.PARTITION_CREATION_RATE}
_P99: dict[str, Metric] = {"RequestQueueTimeMs": Metric.REQUEST_QUEUE_TIME_P99,
                           "TotalTimeMs": Metric.REQUEST_TOTAL_TIME_P99}

# KIP-714 metric name (after the producer/consumer prefix) -> catalog metric, extra labels.
_OTLP: dict[str, tuple[Metric, dict[str, str]]] = {
    "connection.creation.rate": (Metric.CONNECTION_CREATION_RATE, {}),
    "produce.throttle.time.avg": (Metric.THROTTLE_TIME, {"request": "Produce"}),
    "record.queue.time.avg": (Metric.QUEUE_TIME, {}),
    "request.latency.avg": (Metric.REQUEST_LATENCY, {}),
    "fetch.manager.fetch.latency.avg": (Metric.REQUEST_LATENCY, {"request": "Fetch"}),
    "record.send.rate": (Metric.PRODUCE_REQUEST_RATE, {}),
    "record.retry.rate": (Metric.RETRY_RATE, {}),
    "record.error.rate": (Metric.ERROR_RATE, {}),
}
# Cumulative sums worth a rate when no gauge of the same thing was pushed.
_OTLP_SUMS: dict[str, Metric] = {"coordinator.rebalance.latency.total": Metric.REBALANCE_RATE}
_PREFIXES = ("org.apache.kafka.producer.", "org.apache.kafka.consumer.")


class BrokerSnapshotDecoder:
    """Broker-metrics snapshots -> samples. Keeps counter state per broker."""

    def __init__(self, cluster: str = "default") -> None:
        self.cluster = cluster
        self.rates = CounterRates()
        self.handler_idle = HandlerIdle()
        self.network_idle = NetworkIdle()
        self._counts: dict[tuple[str, str], tuple[float, float]] = {}

    def decode(self, value: bytes) -> list[Sample]:
        try:
            snap = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"json: {exc}") from exc
        if not isinstance(snap, dict) or snap.get("v") != SNAPSHOT_VERSION or snap.get("kind") != "broker_metrics":
            raise DecodeError("version: not a version-1 broker_metrics snapshot")
        try:
            ts = float(snap["ts"]) / 1000.0
            broker = str(snap["broker"])
            metrics, yammer = list(snap["metrics"]), list(snap["yammer"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"shape: {exc}") from exc
        out: list[Sample] = []
        connections: dict[str, float] = {}
        io_wait: dict[tuple[str, str], float] = {}
        network_avg: float | None = None
        for entry in metrics:
            group, name, tags, v = _entry(entry)
            if v is None:
                continue  # the broker's window holds no observation yet
            metric = _QUOTA.get((group, name))
            if metric is not None:
                user, cid = tags.get("user", ""), tags.get("client-id", "")
                w = Workload(principal=f"User:{user}" if user else None, client_id=cid or None, broker=broker)
                labels = {"request": group} if metric is Metric.THROTTLE_TIME else {}
                out.append(self._sample(ts, w, metric, v, labels))
            elif group == "socket-server-metrics" and name == "connection-creation-rate" and "listener" in tags:
                connections[tags["listener"]] = connections.get(tags["listener"], 0.0) + v
            elif group == "socket-server-metrics" and name == "io-wait-time-ns-total" and "listener" in tags:
                io_wait[(tags["listener"], tags.get("networkProcessor", ""))] = v
            elif group == "group-coordinator-metrics" and name == "group-completed-rebalance-count":
                self._rate(out, (broker, "rebalances"), ts, v, Workload(broker=broker), Metric.REBALANCE_RATE, {})
        for listener, v in connections.items():
            out.append(self._sample(ts, Workload(broker=broker), Metric.CONNECTION_CREATION_RATE, v,
                                    {"listener": listener}))
        topic_totals: dict[tuple[Metric, str | None], float] = {}
        idle_count: float | None = None
        idle_mean: float | None = None
        for entry in yammer:
            kind, name, tags, v = _entry(entry)
            if v is None:
                continue
            if kind == "BrokerTopicMetrics" and name in TOPIC_METERS:
                key = (TOPIC_METERS[name], tags.get("topic"))
                topic_totals[key] = topic_totals.get(key, 0.0) + v
            elif kind == "RequestMetrics" and name == "RequestsPerSec":
                req = tags.get("request", "")
                key2 = (broker, "requests", req, tags.get("version", ""))
                self._rate(out, key2, ts, v, Workload(broker=broker), Metric.REQUEST_RATE, {"request": req})
            elif kind == "KafkaController" and name in _COUNTS:
                rate = self._growth(broker, name, ts, v)
                if rate is not None:
                    out.append(self._sample(ts, Workload(broker=broker), _COUNTS[name], rate, {}))
            elif kind == "KafkaRequestHandlerPool" and name == "RequestHandlerAvgIdlePercent":
                if tags.get("stat") == "mean_rate":
                    idle_mean = v
                elif "stat" not in tags:
                    idle_count = v
            elif kind == "SocketServer" and name == "NetworkProcessorAvgIdlePercent":
                network_avg = clamp_ratio(v)   # used only without the per-thread io-wait counters
            elif kind == "RequestMetrics" and name in _P99 and tags.get("stat") == "p99":
                request = REQUEST_LABELS.get(tags.get("request", ""))
                if request:
                    out.append(self._sample(ts, Workload(broker=broker), _P99[name], v, {"request": request}))
            elif kind == "DelayedOperationPurgatory" and name == "PurgatorySize":
                operation = tags.get("delayedOperation", "")
                if operation in PURGATORIES:
                    out.append(self._sample(ts, Workload(broker=broker), Metric.PURGATORY_SIZE, v,
                                            {"operation": operation}))
            elif kind == "ReplicaManager" and name == "UnderReplicatedPartitions":
                out.append(self._sample(ts, Workload(broker=broker), Metric.UNDER_REPLICATED_PARTITIONS, v, {}))
        if idle_count is not None:
            ratio = self.handler_idle.observe(broker, ts, idle_count, idle_mean)
            if ratio is not None:
                out.append(self._sample(ts, Workload(broker=broker), Metric.REQUEST_HANDLER_IDLE, ratio, {}))
        network = self.network_idle.observe(broker, ts, io_wait) if io_wait else network_avg
        if network is not None:
            out.append(self._sample(ts, Workload(broker=broker), Metric.NETWORK_PROCESSOR_IDLE, network, {}))
        for (metric, topic), total in topic_totals.items():
            w = Workload(topic=topic, broker=broker) if topic else Workload(broker=broker)
            self._rate(out, (broker, metric, topic), ts, total, w, metric, {})
        self.rates.forget_stale(ts)
        self.handler_idle.forget_stale(ts)
        self.network_idle.forget_stale(ts)
        return out

    def _rate(self, out: list[Sample], key: tuple, ts: float, total: float, w: Workload, metric: Metric,
              labels: dict[str, str]) -> None:
        rate = self.rates.observe(key, ts, total)
        if rate is not None:
            out.append(self._sample(ts, w, metric, rate, labels))

    def _growth(self, broker: str, name: str, ts: float, value: float) -> float | None:
        prev = self._counts.get((broker, name))
        self._counts[(broker, name)] = (ts, value)
        if prev is None or ts <= prev[0]:
            return None
        return max(0.0, value - prev[1]) / (ts - prev[0])

    def _sample(self, ts: float, w: Workload, metric: Metric, v: float, labels: dict[str, str]) -> Sample:
        return Sample(ts=ts, workload=w, metric=metric, value=float(v), source=SOURCE_BROKER,
                      cluster=self.cluster, labels=labels)


def _entry(entry: Any) -> tuple[str, str, Mapping[str, str], float | None]:
    if not (isinstance(entry, list) and len(entry) == 4 and isinstance(entry[2], dict)):
        raise DecodeError(f"shape: metric entry {str(entry)[:80]!r} is not [group, name, tags, value]")
    group, name, tags, v = entry
    if v is not None and not isinstance(v, (int, float)):
        raise DecodeError(f"type: value of {group}/{name} is {type(v).__name__}")
    if v is not None and not math.isfinite(v):
        v = None
    return str(group), str(name), tags, v


class TelemetryDecoder:
    """KIP-714 OTLP payloads (as forwarded by the plugin) -> client-side samples."""

    def __init__(self, cluster: str = "default") -> None:
        self.cluster = cluster
        self.rates = CounterRates()

    def decode(self, value: bytes, headers: Mapping[str, str]) -> list[Sample]:
        from google.protobuf.message import DecodeError as ProtoDecodeError
        from opentelemetry.proto.metrics.v1 import metrics_pb2

        principal = headers.get("principal") or None
        client_id = headers.get("client_id") or None
        instance = headers.get("client_instance_id", "")
        if not client_id and not principal:
            raise DecodeError("identity: telemetry record without principal or client_id headers")
        data = metrics_pb2.MetricsData()
        try:
            data.ParseFromString(value)
        except ProtoDecodeError as exc:
            raise DecodeError(f"otlp: {exc}") from exc
        w = Workload(principal=principal, client_id=client_id, broker=headers.get("broker") or None)
        out: list[Sample] = []
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    short = next((m.name[len(p):] for p in _PREFIXES if m.name.startswith(p)), None)
                    if short is None:
                        continue
                    kind = m.WhichOneof("data")
                    if kind == "gauge" and short in _OTLP:
                        metric, labels = _OTLP[short]
                        for ts, v in _points(m.gauge.data_points):
                            out.append(self._sample(ts, w, metric, v, labels))
                    elif kind == "sum" and short in _OTLP_SUMS:
                        for ts, v in _points(m.sum.data_points):
                            rate = self.rates.observe((instance, m.name), ts, v)
                            if rate is not None:
                                out.append(self._sample(ts, w, _OTLP_SUMS[short], rate, {}))
        return out

    def _sample(self, ts: float, w: Workload, metric: Metric, v: float, labels: dict[str, str]) -> Sample:
        return Sample(ts=ts, workload=w, metric=metric, value=v, source=SOURCE_TELEMETRY, cluster=self.cluster,
                      labels=dict(labels))


def _points(points: Any) -> list[tuple[float, float]]:
    """Per time stamp, the mean over the points' attributes (e.g. request latency per broker node: the mean)."""
    acc: dict[float, list[float]] = {}
    for p in points:
        v = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
        if math.isfinite(v):
            acc.setdefault(p.time_unix_nano / 1e9, []).append(v)
    return [(ts, sum(vs) / len(vs)) for ts, vs in sorted(acc.items())]
