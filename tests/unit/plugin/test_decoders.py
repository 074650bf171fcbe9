"""Pure decoding of the plugin's records: snapshots and OTLP pushes into samples."""

from __future__ import annotations

import orjson
import pytest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from guardian.errors import DecodeError
from guardian.ingest.broker_plugin import BrokerSnapshotDecoder, TelemetryDecoder
from guardian.model.samples import Metric


def _snapshot(ts_ms: int, bytes_in: float, topics: float = 3, quota: float | None = 1000.0) -> bytes:
    return orjson.dumps({
        "v": 1, "kind": "broker_metrics", "ts": ts_ms, "broker": "1",
        "metrics": [["Produce", "byte-rate", {"user": "tenant-a", "client-id": "w"}, quota],
                    ["Produce", "throttle-time", {"user": "tenant-a", "client-id": "w"}, None],
                    ["socket-server-metrics", "connection-creation-rate", {"listener": "SASL", "networkProcessor": "3"}, 0.5],
                    ["socket-server-metrics", "connection-creation-rate", {"listener": "SASL", "networkProcessor": "4"}, 0.25]],
        "yammer": [["BrokerTopicMetrics", "BytesInPerSec", {"topic": "tenant-a.t"}, bytes_in],
                   ["KafkaController", "GlobalTopicCount", {}, topics]],
        "plugin": {"send_errors": 0}})


def test_snapshot_quota_sensor_counter_rates_and_counts() -> None:
    d = BrokerSnapshotDecoder()
    first = d.decode(_snapshot(10_000, 1_000))
    quota = [s for s in first if s.metric is Metric.PRODUCE_BYTE_RATE and s.workload.client_id == "w"]
    assert [(s.workload.principal, s.value) for s in quota] == [("User:tenant-a", 1000.0)]
    assert not [s for s in first if s.metric is Metric.THROTTLE_TIME]  # null = no observation yet
    conns = [s for s in first if s.metric is Metric.CONNECTION_CREATION_RATE]
    assert [(s.labels["listener"], s.value) for s in conns] == [("SASL", 0.75)]
    second = d.decode(_snapshot(12_000, 5_000, topics=7))
    topic = [s for s in second if s.metric is Metric.PRODUCE_BYTE_RATE and s.workload.topic == "tenant-a.t"]
    assert [s.value for s in topic] == [2000.0]  # 4,000 bytes in 2 s
    created = [s for s in second if s.metric is Metric.TOPIC_CREATION_RATE]
    assert [s.value for s in created] == [2.0]
    # A broker restart resets the counter: no negative rate.
    third = d.decode(_snapshot(13_000, 100, topics=7))
    assert all(s.value >= 0 for s in third)



def _pressure_snapshot(ts_ms: int, idle_count: float, idle_mean: float = 1.99, queue_p99: float | None = 4.0) -> bytes:
    """The entries the plugin sends for the broker-pressure MBeans (GuardianMetricsReporter.addYammer)."""
    pool, rm = "KafkaRequestHandlerPool", "RequestMetrics"
    return orjson.dumps({
        "v": 1, "kind": "broker_metrics", "ts": ts_ms, "broker": "1", "metrics": [],
        "yammer": [[pool, "RequestHandlerAvgIdlePercent", {}, idle_count],
                   [pool, "RequestHandlerAvgIdlePercent", {"stat": "mean_rate"}, idle_mean],
                   ["SocketServer", "NetworkProcessorAvgIdlePercent", {}, 0.97],
                   [rm, "RequestQueueTimeMs", {"request": "Produce", "stat": "p99"}, queue_p99],
                   [rm, "RequestQueueTimeMs", {"request": "FetchConsumer", "stat": "p99"}, 0.0],
                   [rm, "TotalTimeMs", {"request": "Produce", "stat": "p99"}, 12.0],
                   [rm, "TotalTimeMs", {"request": "FetchConsumer", "stat": "p99"}, 501.0],
                   [rm, "RequestsPerSec", {"request": "Produce", "version": "11"}, 10.0],
                   ["DelayedOperationPurgatory", "PurgatorySize", {"delayedOperation": "Produce"}, 1],
                   ["DelayedOperationPurgatory", "PurgatorySize", {"delayedOperation": "Fetch"}, 3],
                   ["ReplicaManager", "UnderReplicatedPartitions", {}, 0]],
        "plugin": {}})


def test_snapshot_pressure_entries_become_the_same_broker_samples_as_the_exporter_gives() -> None:
    from guardian.model.samples import PRESSURE_METRICS, Workload

    d = BrokerSnapshotDecoder(cluster="c1")
    first = d.decode(_pressure_snapshot(10_000, idle_count=100e9))
    assert not [s for s in first if s.metric is Metric.REQUEST_HANDLER_IDLE]  # a rate needs two snapshots
    # combined mode (mean rate ~2: two pools mark the meter): 1.2e9 idle ns in 1 s, the controller's 1e9 of it
    out = d.decode(_pressure_snapshot(11_000, idle_count=101.2e9))
    mine = [s for s in out if s.metric in PRESSURE_METRICS]
    assert {s.workload for s in mine} == {Workload(broker="1")}
    assert all(s.source == "broker-plugin" and s.ts == 11.0 for s in mine)
    got = {(s.metric, tuple(sorted(s.labels.items()))): s.value for s in mine}
    assert got == {
        (Metric.REQUEST_HANDLER_IDLE, ()): pytest.approx(0.2),
        (Metric.NETWORK_PROCESSOR_IDLE, ()): 0.97,
        (Metric.REQUEST_QUEUE_TIME_P99, (("request", "Produce"),)): 4.0,
        (Metric.REQUEST_QUEUE_TIME_P99, (("request", "Fetch"),)): 0.0,
        (Metric.REQUEST_TOTAL_TIME_P99, (("request", "Produce"),)): 12.0,
        (Metric.REQUEST_TOTAL_TIME_P99, (("request", "Fetch"),)): 501.0,
        (Metric.PURGATORY_SIZE, (("operation", "Produce"),)): 1.0,
        (Metric.PURGATORY_SIZE, (("operation", "Fetch"),)): 3.0,
        (Metric.UNDER_REPLICATED_PARTITIONS, ()): 0.0,
    }


def test_snapshot_network_idle_comes_from_the_busiest_data_plane_threads_io_wait() -> None:
    def snap(ts_ms: int, sasl_ns: float) -> bytes:
        d = orjson.loads(_pressure_snapshot(ts_ms, idle_count=100e9))
        d["metrics"] = [["socket-server-metrics", "io-wait-time-ns-total",
                         {"listener": "CONTROLLER", "networkProcessor": "0"}, ts_ms * 1e6],
                        ["socket-server-metrics", "io-wait-time-ns-total",
                         {"listener": "SASL_PLAINTEXT", "networkProcessor": "1"}, sasl_ns]]
        return orjson.dumps(d)

    d = BrokerSnapshotDecoder()
    first = d.decode(snap(10_000, 5e9))
    assert not [s for s in first if s.metric is Metric.NETWORK_PROCESSOR_IDLE]   # not the 0.97 gauge
    out = d.decode(snap(12_000, 5e9 + 0.2e9))                                    # 0.1 s of select per s
    assert [s.value for s in out if s.metric is Metric.NETWORK_PROCESSOR_IDLE] == [pytest.approx(0.1)]


def test_snapshot_pressure_idle_is_clamped_and_missing_values_are_no_samples() -> None:
    d = BrokerSnapshotDecoder()
    d.decode(_pressure_snapshot(10_000, idle_count=0.0, idle_mean=0.5))
    out = d.decode(_pressure_snapshot(11_000, idle_count=1.3e9, idle_mean=0.5, queue_p99=None))
    idle = [s.value for s in out if s.metric is Metric.REQUEST_HANDLER_IDLE]
    assert idle == [1.0]  # one pool, more idle ns than ns (timing jitter): at most all idle
    queue = [s.labels["request"] for s in out if s.metric is Metric.REQUEST_QUEUE_TIME_P99]
    assert queue == ["Fetch"]  # null (NaN on the broker) is no sample
    # a broker restart resets the meter: a new base instead of a negative idle, then rates again
    restarted = d.decode(_pressure_snapshot(12_000, idle_count=0.2e9, idle_mean=0.5))
    assert not [s for s in restarted if s.metric is Metric.REQUEST_HANDLER_IDLE]
    after = d.decode(_pressure_snapshot(13_000, idle_count=0.9e9, idle_mean=0.5))
    assert [s.value for s in after if s.metric is Metric.REQUEST_HANDLER_IDLE] == [pytest.approx(0.7)]

@pytest.mark.parametrize("bad", [b"not json", b"[]", orjson.dumps({"v": 2, "kind": "broker_metrics"}),
                                 orjson.dumps({"v": 1, "kind": "broker_metrics", "ts": 1, "broker": "1",
                                               "metrics": [["Produce", "byte-rate", {}, "fast"]], "yammer": []}),
                                 orjson.dumps({"v": 1, "kind": "broker_metrics", "ts": 1, "broker": "1",
                                               "metrics": [["only-three", {}, 1]], "yammer": []})])
def test_bad_snapshots_raise_decode_errors(bad: bytes) -> None:
    with pytest.raises(DecodeError):
        BrokerSnapshotDecoder().decode(bad)


def _otlp(points: dict[str, float], ts_s: float = 100.0, sums: dict[str, float] | None = None) -> bytes:
    data = metrics_pb2.MetricsData()
    sm = data.resource_metrics.add().scope_metrics.add()
    for name, v in points.items():
        m = sm.metrics.add(name=name)
        p = m.gauge.data_points.add(time_unix_nano=int(ts_s * 1e9), as_double=v)
        p.attributes.append(common_pb2.KeyValue(key="node.id", value=common_pb2.AnyValue(string_value="1")))
    for name, v in (sums or {}).items():
        m = sm.metrics.add(name=name)
        m.sum.data_points.add(time_unix_nano=int(ts_s * 1e9), as_int=int(v))
    return data.SerializeToString()


def test_otlp_push_becomes_client_samples_keyed_by_principal_and_client_id() -> None:
    d = TelemetryDecoder()
    headers = {"principal": "User:tenant-a", "client_id": "orders", "client_instance_id": "abc"}
    out = d.decode(_otlp({"org.apache.kafka.producer.record.queue.time.avg": 3.5,
                          "org.apache.kafka.producer.request.latency.avg": 12.0,
                          "org.apache.kafka.producer.unknown.thing": 1.0,
                          "com.example.other": 9.0}), headers)
    got = {(s.metric, s.value) for s in out}
    assert got == {(Metric.QUEUE_TIME, 3.5), (Metric.REQUEST_LATENCY, 12.0)}
    assert {s.workload.key for s in out} == {"principal=User:tenant-a|client_id=orders"}
    assert {s.source for s in out} == {"kip714"}


def test_otlp_cumulative_sums_become_rates() -> None:
    d = TelemetryDecoder()
    h = {"principal": "User:a", "client_id": "c", "client_instance_id": "i"}
    name = "org.apache.kafka.consumer.coordinator.rebalance.latency.total"
    assert d.decode(_otlp({}, 100.0, {name: 10}), h) == []
    [s] = d.decode(_otlp({}, 110.0, {name: 30}), h)
    assert s.metric is Metric.REBALANCE_RATE and s.value == 2.0


def test_otlp_garbage_and_missing_identity_are_decode_errors() -> None:
    with pytest.raises(DecodeError):
        TelemetryDecoder().decode(b"\xff\xff\xff\xff garbage", {"client_id": "c"})
    with pytest.raises(DecodeError):
        TelemetryDecoder().decode(_otlp({}), {})
