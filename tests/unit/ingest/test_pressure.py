"""Broker pressure signals from the JMX exporter's text: names and shapes as the local 4.1.1 broker exports them."""

from __future__ import annotations

import math

import pytest

from guardian.ingest.pressure import clamp_ratio, handler_pools, idle_ratio
from guardian.ingest.prometheus import PrometheusSampler
from guardian.model.samples import PRESSURE_METRICS, Metric, Workload

# Lines copied from a scrape of the local broker (guardian/ingest/jmx_rules.yaml), values templated.
TEMPLATE = """\
# TYPE process_start_time_seconds gauge
process_start_time_seconds {start}
# HELP kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_total Attribute exposed for management kafka.server:name=RequestHandlerAvgIdlePercent,type=KafkaRequestHandlerPool,attribute=Count
# TYPE kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_total counter
kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_total {idle_count}
# TYPE kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_meanrate gauge
kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_meanrate {idle_mean}
# TYPE kafka_network_socketserver_networkprocessoravgidlepercent gauge
kafka_network_socketserver_networkprocessoravgidlepercent {network_idle}
# TYPE kafka_network_requestmetrics_requestqueuetimems gauge
kafka_network_requestmetrics_requestqueuetimems{{quantile="99thPercentile",request="FetchConsumer"}} 0.0
kafka_network_requestmetrics_requestqueuetimems{{quantile="99thPercentile",request="Produce"}} {queue_p99}
# TYPE kafka_network_requestmetrics_totaltimems gauge
kafka_network_requestmetrics_totaltimems{{quantile="50thPercentile",request="Produce"}} 1.0
kafka_network_requestmetrics_totaltimems{{quantile="99thPercentile",request="Fetch"}} 501.0
kafka_network_requestmetrics_totaltimems{{quantile="99thPercentile",request="FetchConsumer"}} 502.0
kafka_network_requestmetrics_totaltimems{{quantile="99thPercentile",request="FetchFollower"}} 500.0
kafka_network_requestmetrics_totaltimems{{quantile="99thPercentile",request="Produce"}} {total_p99}
kafka_network_requestmetrics_totaltimems{{quantile="Mean",request="Produce"}} 2.0
# TYPE kafka_server_delayedoperationpurgatory_purgatorysize gauge
kafka_server_delayedoperationpurgatory_purgatorysize{{delayedoperation="Fetch"}} 4.0
kafka_server_delayedoperationpurgatory_purgatorysize{{delayedoperation="Produce"}} {produce_purgatory}
kafka_server_delayedoperationpurgatory_purgatorysize{{delayedoperation="Rebalance"}} 9.0
# TYPE kafka_server_replicamanager_underreplicatedpartitions gauge
kafka_server_replicamanager_underreplicatedpartitions {urp}
# TYPE kafka_server_replicamanager_partitioncount gauge
kafka_server_replicamanager_partitioncount 12.0
"""


def text(start: float = 1000.0, idle_count: float = 0.0, idle_mean: float = 0.9, network_idle: float = 0.98,
         queue_p99: float = 3.0, total_p99: float = 7.5, produce_purgatory: float = 2.0, urp: float = 0.0) -> str:
    return TEMPLATE.format(start=start, idle_count=idle_count, idle_mean=idle_mean, network_idle=network_idle,
                           queue_p99=queue_p99, total_p99=total_p99, produce_purgatory=produce_purgatory, urp=urp)


def pressure(samples) -> dict[tuple[Metric, tuple], float]:
    return {(s.metric, tuple(sorted(s.labels.items()))): s.value for s in samples if s.metric in PRESSURE_METRICS}


def test_every_pressure_signal_is_a_broker_level_sample_with_its_label() -> None:
    sampler = PrometheusSampler(cluster="c1")
    sampler.samples_from_text(text(idle_count=10e9), 100.0, "b1:9404")
    out = sampler.samples_from_text(text(idle_count=10e9 + 0.25e9 * 2), 102.0, "b1:9404")
    mine = [s for s in out if s.metric in PRESSURE_METRICS]
    assert {s.workload for s in mine} == {Workload(broker="b1:9404")}
    assert all(s.source == "prometheus" and s.cluster == "c1" and s.ts == 102.0 for s in mine)
    assert pressure(out) == {
        (Metric.REQUEST_HANDLER_IDLE, ()): pytest.approx(0.25),   # 0.5e9 idle ns over 2 s
        (Metric.NETWORK_PROCESSOR_IDLE, ()): 0.98,
        (Metric.REQUEST_QUEUE_TIME_P99, (("request", "Produce"),)): 3.0,
        (Metric.REQUEST_QUEUE_TIME_P99, (("request", "Fetch"),)): 0.0,
        # FetchConsumer is the consumers' fetch, labelled Fetch; the all-fetches and follower types are not read
        (Metric.REQUEST_TOTAL_TIME_P99, (("request", "Produce"),)): 7.5,
        (Metric.REQUEST_TOTAL_TIME_P99, (("request", "Fetch"),)): 502.0,
        (Metric.PURGATORY_SIZE, (("operation", "Produce"),)): 2.0,
        (Metric.PURGATORY_SIZE, (("operation", "Fetch"),)): 4.0,
        (Metric.UNDER_REPLICATED_PARTITIONS, ()): 0.0,
    }
    assert {s.unit for s in mine if s.metric is Metric.REQUEST_HANDLER_IDLE} == {"ratio"}


def test_handler_idle_needs_two_scrapes_and_is_the_rate_of_the_count_not_the_lifetime_mean() -> None:
    sampler = PrometheusSampler()
    first = sampler.samples_from_text(text(idle_count=50e9, idle_mean=0.95), 100.0, "b1")
    assert not [s for s in first if s.metric is Metric.REQUEST_HANDLER_IDLE]
    # busy now (10 % idle) although idle over its lifetime: the sample follows the last interval
    out = sampler.samples_from_text(text(idle_count=50e9 + 0.1e9, idle_mean=0.95), 101.0, "b1")
    assert pressure(out)[(Metric.REQUEST_HANDLER_IDLE, ())] == pytest.approx(0.1)


def test_combined_mode_reads_the_broker_pool_with_the_controller_pool_taken_as_idle() -> None:
    # The local 4.1.1 combined broker+controller reads ~2 idle ns per ns when idle (KAFKA-19606).
    sampler = PrometheusSampler()
    sampler.samples_from_text(text(idle_count=300e9, idle_mean=1.99), 100.0, "b1")
    idle = sampler.samples_from_text(text(idle_count=300e9 + 1.98e9, idle_mean=1.99), 101.0, "b1")
    assert pressure(idle)[(Metric.REQUEST_HANDLER_IDLE, ())] == pytest.approx(0.98)
    # five seconds later the broker pool has been 20 % idle, the controller pool idle: 1.2 ns per ns
    busy = sampler.samples_from_text(text(idle_count=300e9 + 1.98e9 + 5 * 1.2e9, idle_mean=1.98), 106.0, "b1")
    assert pressure(busy)[(Metric.REQUEST_HANDLER_IDLE, ())] == pytest.approx(0.2)


def test_handler_idle_is_taken_over_the_last_five_seconds_to_smooth_the_meters_lumps() -> None:
    # handlers mark idle time when a wait (up to 300 ms) ends, so one second's growth is lumpy
    sampler = PrometheusSampler()
    count, got = 0.0, []
    for t, idle_ns in enumerate([0.0, 0.3e9, 0.7e9, 0.3e9, 0.7e9, 0.3e9, 0.7e9, 0.3e9]):
        count += idle_ns
        out = sampler.samples_from_text(text(idle_count=count, idle_mean=0.5), 100.0 + t, "b1")
        got += [s.value for s in out if s.metric is Metric.REQUEST_HANDLER_IDLE]
    assert got[0] == pytest.approx(0.3)              # two readings: the one interval there is
    assert got[-1] == pytest.approx(0.5, abs=0.05)   # then the last five seconds: 2.5e9 ns over 5 s


IO_WAIT = """\
# TYPE kafka_server_socket_io_wait_time_ns gauge
kafka_server_socket_io_wait_time_ns{{listener="CONTROLLER",network_processor="0",}} {controller}
kafka_server_socket_io_wait_time_ns{{listener="PLAINTEXT",network_processor="0",}} {plain}
kafka_server_socket_io_wait_time_ns{{listener="SASL_PLAINTEXT",network_processor="1",}} {sasl}
"""


def test_network_idle_is_the_busiest_data_plane_thread_from_its_io_wait_not_the_average_gauge() -> None:
    """Kafka's average gauge read 1.0 (combined mode: the controller's) while the broker's SASL thread was
    ~95 % busy; the per-thread io-wait counters say so within seconds (drill-rewind, 2026-12-06)."""
    sampler = PrometheusSampler()

    def scrape(t: float, controller: float, plain: float, sasl: float) -> float | None:
        body = text(network_idle=1.0) + IO_WAIT.format(controller=controller, plain=plain, sasl=sasl)
        return pressure(sampler.samples_from_text(body, t, "b1")).get((Metric.NETWORK_PROCESSOR_IDLE, ()))

    assert scrape(100.0, 0.0, 0.0, 0.0) is None                   # a rate needs two readings
    assert scrape(101.0, 1.0e9, 0.98e9, 0.92e9) == pytest.approx(0.92)
    # the SASL thread now waits in select 0.05 s a second; the controller's thread idles, and is not read
    assert scrape(106.0, 6.0e9, 5.88e9, 0.92e9 + 5 * 0.05e9) == pytest.approx(0.05)
    # without the per-thread counters (an exporter without that rule) the average gauge is what there is
    plain = PrometheusSampler().samples_from_text(text(network_idle=0.4), 100.0, "b2")
    assert pressure(plain)[(Metric.NETWORK_PROCESSOR_IDLE, ())] == 0.4


def test_ratios_are_clamped_and_non_finite_values_dropped() -> None:
    sampler = PrometheusSampler()
    sampler.samples_from_text(text(idle_count=0.0, network_idle=1.2), 100.0, "b1")
    # an interval measured short by scrape jitter gives more idle ns than ns: still at most 1
    out = sampler.samples_from_text(text(idle_count=1.4e9, network_idle=float("nan"), total_p99=float("inf"),
                                         produce_purgatory=float("nan"), urp=float("nan")), 101.0, "b1")
    got = pressure(out)
    assert got[(Metric.REQUEST_HANDLER_IDLE, ())] == 1.0
    assert (Metric.NETWORK_PROCESSOR_IDLE, ()) not in got
    assert (Metric.REQUEST_TOTAL_TIME_P99, (("request", "Produce"),)) not in got
    assert (Metric.PURGATORY_SIZE, (("operation", "Produce"),)) not in got
    assert (Metric.UNDER_REPLICATED_PARTITIONS, ()) not in got
    assert all(math.isfinite(v) for v in got.values())
    over = PrometheusSampler().samples_from_text(text(network_idle=1.2), 100.0, "b1")
    assert pressure(over)[(Metric.NETWORK_PROCESSOR_IDLE, ())] == 1.0


def test_a_broker_restart_restarts_the_idle_history_instead_of_going_negative() -> None:
    sampler = PrometheusSampler()
    sampler.samples_from_text(text(idle_count=900e9), 100.0, "b1")
    sampler.samples_from_text(text(idle_count=901e9), 101.0, "b1")
    restarted = sampler.samples_from_text(text(start=2000.0, idle_count=0.5e9), 110.0, "b1")
    assert (Metric.REQUEST_HANDLER_IDLE, ()) not in pressure(restarted)   # a new base, no rate yet
    after = sampler.samples_from_text(text(start=2000.0, idle_count=1.4e9), 111.0, "b1")
    assert pressure(after)[(Metric.REQUEST_HANDLER_IDLE, ())] == pytest.approx(0.9)
    # a count that went down without a restart signal is a reset too
    sampler.samples_from_text(text(start=2000.0, idle_count=0.1e9), 112.0, "b1")
    again = sampler.samples_from_text(text(start=2000.0, idle_count=0.4e9), 113.0, "b1")
    assert pressure(again)[(Metric.REQUEST_HANDLER_IDLE, ())] == pytest.approx(0.3)


@pytest.mark.parametrize(("mean", "pools"), [(None, 1), (float("nan"), 1), (0.0, 1), (1.0, 1), (1.04, 1),
                                             (1.3, 2), (1.999, 2), (2.6, 3)])
def test_pools_sharing_the_idle_meter_follow_from_its_lifetime_mean(mean, pools) -> None:
    assert handler_pools(mean) == pools


def test_a_combined_node_kept_busy_still_counts_its_second_pool() -> None:
    """The lifetime mean that reveals the controller's pool sinks towards 1 on a broker kept busy (a drill's
    broker after a few runaways); read as one pool, a saturated broker pool showed 96 % idle."""
    from guardian.ingest.pressure import HandlerIdle

    idle = HandlerIdle(window_s=5.0)
    idle.observe("b1", 0.0, 0.0, mean_rate=1.9)             # fresh: both pools idle, two pools seen
    idle.observe("b1", 5.0, 9.5e9, mean_rate=1.9)
    # much later the lifetime mean reads ~1.0, and the broker pool is saturated: only the controller idles
    assert idle.observe("b1", 10.0, 14.5e9, mean_rate=1.02) == pytest.approx(0.0)
    # a restart forgets what was seen: a new node may have other pools
    assert idle.observe("b1", 11.0, 0.2e9, mean_rate=1.02, restarted=True) is None
    assert idle.observe("b1", 12.0, 0.9e9, mean_rate=1.02) == pytest.approx(0.7)


def test_idle_ratio_and_clamp_edges() -> None:
    assert idle_ratio(-5.0) == 0.0
    assert idle_ratio(2e9, pools=0) == 1.0   # a nonsensical pool count counts as one
    assert idle_ratio(0.5e9, pools=2) == 0.0  # the broker pool cannot be less than fully busy
    assert clamp_ratio(float("-inf")) is None


def test_the_modules_examples_hold() -> None:
    import doctest

    import guardian.ingest.pressure as module

    result = doctest.testmod(module)
    assert result.attempted >= 2 and result.failed == 0
