"""The Prometheus sampler on exporter text: quota gauges, counter rates, restarts, resets."""

from __future__ import annotations

import pytest

from guardian.ingest.prometheus import PrometheusSampler, target_name
from guardian.model.samples import Metric
from tests.exporter_pages import ExporterPages

TEMPLATE = """\
# TYPE process_start_time_seconds gauge
process_start_time_seconds {start}
# TYPE kafka_server_quota_byte_rate untyped
kafka_server_quota_byte_rate{{client_id="writer",request="Produce",user="tenant-a"}} {produce}
kafka_server_quota_byte_rate{{client_id="reader",request="Fetch",user="tenant-a"}} 2000.0
kafka_server_quota_byte_rate{{client_id="",request="Produce",user="tenant-b"}} 10.0
kafka_server_quota_request_time{{client_id="writer",request="Request",user="tenant-a"}} 5.5
kafka_server_quota_throttle_time{{client_id="writer",request="Produce",user="tenant-a"}} NaN
kafka_server_quota_throttle_time{{client_id="reader",request="Fetch",user="tenant-a"}} 120.0
# TYPE kafka_server_brokertopicmetrics_bytesin_total counter
kafka_server_brokertopicmetrics_bytesin_total {bytesin}
kafka_server_brokertopicmetrics_bytesin_total{{topic="tenant-a.orders"}} {bytesin}
# TYPE kafka_server_brokertopicmetrics_failedproducerequests_total counter
kafka_server_brokertopicmetrics_failedproducerequests_total{{topic="tenant-a.orders"}} {failed}
# TYPE kafka_server_brokertopicmetrics_failedfetchrequests_total counter
kafka_server_brokertopicmetrics_failedfetchrequests_total{{topic="tenant-a.orders"}} {failed}
# TYPE kafka_network_requestmetrics_requests_total counter
kafka_network_requestmetrics_requests_total{{request="Produce",version="9"}} {produce_v9}
kafka_network_requestmetrics_requests_total{{request="Produce",version="11"}} {produce_v9}
# TYPE kafka_network_requestmetrics_errors_total counter
kafka_network_requestmetrics_errors_total{{request="Produce",error="NONE"}} 999999.0
kafka_network_requestmetrics_errors_total{{request="Produce",error="TOPIC_AUTHORIZATION_FAILED"}} {failed}
# TYPE kafka_server_socket_connection_creation_rate gauge
kafka_server_socket_connection_creation_rate{{listener="SASL_PLAINTEXT",network_processor="0"}} 1.5
kafka_server_socket_connection_creation_rate{{listener="SASL_PLAINTEXT",network_processor="1"}} 0.5
# TYPE kafka_server_group_coordinator_group_completed_rebalance_count gauge
kafka_server_group_coordinator_group_completed_rebalance_count {rebalances}
# TYPE kafka_controller_globaltopiccount gauge
kafka_controller_globaltopiccount {topics}
"""


def text(start=1000.0, produce=726186.0, bytesin=0.0, failed=0.0, produce_v9=0.0, rebalances=0.0, topics=10.0):
    return TEMPLATE.format(start=start, produce=produce, bytesin=bytesin, failed=failed,
                           produce_v9=produce_v9, rebalances=rebalances, topics=topics)


def by(samples, metric, **ident):
    out = [s for s in samples if s.metric is metric
           and all(getattr(s.workload, k) == v for k, v in ident.items())]
    return out


def test_quota_gauges_become_samples_keyed_by_user_and_client_id() -> None:
    out = PrometheusSampler(cluster="c1").samples_from_text(text(), 100.0, "b1:9404")
    writer = by(out, Metric.PRODUCE_BYTE_RATE, principal="User:tenant-a", client_id="writer")
    assert [s.value for s in writer] == [726186.0]
    assert writer[0].workload.key == "principal=User:tenant-a|client_id=writer"
    assert writer[0].workload.broker == "b1:9404" and writer[0].cluster == "c1" and writer[0].source == "prometheus"
    assert [s.value for s in by(out, Metric.FETCH_BYTE_RATE, client_id="reader")] == [2000.0]
    user_only = by(out, Metric.PRODUCE_BYTE_RATE, principal="User:tenant-b")
    assert user_only[0].workload.client_id is None
    assert [s.value for s in by(out, Metric.REQUEST_TIME_SHARE, client_id="writer")] == [5.5]
    # NaN throttle (empty broker window) is no sample; the reader's 120 ms is one, with its request type
    throttle = by(out, Metric.THROTTLE_TIME)
    assert [(s.workload.client_id, s.value, s.labels) for s in throttle] == [("reader", 120.0, {"request": "Fetch"})]


def test_counters_need_two_scrapes_then_give_rates() -> None:
    sampler = PrometheusSampler()
    first = sampler.samples_from_text(text(bytesin=1000.0, failed=4.0, produce_v9=10.0), 100.0, "b1")
    assert not by(first, Metric.ERROR_RATE) and not by(first, Metric.REQUEST_RATE)
    out = sampler.samples_from_text(text(bytesin=21000.0, failed=9.0, produce_v9=30.0), 110.0, "b1")
    topic = by(out, Metric.PRODUCE_BYTE_RATE, topic="tenant-a.orders")
    assert [s.value for s in topic] == [pytest.approx(2000.0)]
    # failed produce + failed fetch are summed into one error rate per topic
    assert [s.value for s in by(out, Metric.ERROR_RATE, topic="tenant-a.orders")] == [pytest.approx(1.0)]
    # the NONE error code is not an error; versions are summed per request type
    broker_errors = [s for s in by(out, Metric.ERROR_RATE) if s.workload.topic is None]
    assert [(s.value, s.labels) for s in broker_errors] == [(pytest.approx(0.5), {"request": "Produce"})]
    req = by(out, Metric.REQUEST_RATE)
    assert [(s.value, s.labels) for s in req] == [(pytest.approx(4.0), {"request": "Produce"})]
    conns = by(out, Metric.CONNECTION_CREATION_RATE)
    assert [(s.value, s.labels) for s in conns] == [(2.0, {"listener": "SASL_PLAINTEXT"})]


def test_counter_reset_and_restart_never_give_negative_rates() -> None:
    sampler = PrometheusSampler()
    sampler.samples_from_text(text(bytesin=1_000_000.0), 100.0, "b1")
    # the broker restarted: start time moved, counters small again
    out = sampler.samples_from_text(text(start=2000.0, bytesin=500.0), 110.0, "b1")
    rates = [s.value for s in by(out, Metric.PRODUCE_BYTE_RATE, topic="tenant-a.orders")]
    assert rates == [pytest.approx(50.0)]
    # a counter that went down without a restart signal is a reset too
    out = sampler.samples_from_text(text(start=2000.0, bytesin=100.0), 120.0, "b1")
    assert [s.value for s in by(out, Metric.PRODUCE_BYTE_RATE, topic="tenant-a.orders")] == [pytest.approx(10.0)]
    assert all(s.value >= 0 for s in out)


def test_targets_keep_separate_counter_state() -> None:
    sampler = PrometheusSampler()
    sampler.samples_from_text(text(bytesin=0.0), 100.0, "b1")
    sampler.samples_from_text(text(bytesin=5000.0), 100.0, "b2")
    out = sampler.samples_from_text(text(bytesin=1000.0), 110.0, "b1")
    assert [s.value for s in by(out, Metric.PRODUCE_BYTE_RATE, topic="tenant-a.orders")] == [pytest.approx(100.0)]


def test_rebalances_and_topic_growth_give_rates() -> None:
    sampler = PrometheusSampler()
    sampler.samples_from_text(text(rebalances=3.0, topics=10.0), 100.0, "b1")
    out = sampler.samples_from_text(text(rebalances=8.0, topics=30.0), 110.0, "b1")
    assert [s.value for s in by(out, Metric.REBALANCE_RATE)] == [pytest.approx(0.5)]
    assert [s.value for s in by(out, Metric.TOPIC_CREATION_RATE)] == [pytest.approx(2.0)]
    out = sampler.samples_from_text(text(rebalances=8.0, topics=5.0), 120.0, "b1")
    assert [s.value for s in by(out, Metric.TOPIC_CREATION_RATE)] == [0.0]  # deletions are not creations


def test_target_name_is_host_port() -> None:
    assert target_name("http://10.0.0.5:9404/metrics") == "10.0.0.5:9404"


TRICKY = r"""# HELP kafka_server_quota_byte_rate Tracking byte-rate per user/client-id kafka.server:name=null,type=Produce
# TYPE kafka_server_quota_byte_rate gauge
kafka_server_quota_byte_rate{client_id="a,b=c}d",request="Produce",user="tenant-a"} 1.5E3
kafka_server_quota_byte_rate{client_id="q\"uote\\back\nline",request="Fetch",user="tenant-b",} NaN
kafka_server_quota_byte_rate{ client_id = "spaced" , request="Produce",user="t"} +Inf 1795000000000
kafka_server_quota_throttle_time{client_id="",request="Request",user="u"} -Inf
# TYPE kafka_network_requestmetrics_requests_total counter
kafka_network_requestmetrics_requests_total{request="Produce",version="9"} 42.0
kafka_network_requestmetrics_requests_total{} 7
process_start_time_seconds 1.795E9
"""


def _same(a: list, b: list) -> bool:
    return [(n, l, repr(float(v))) for n, l, v in a] == [(n, l, repr(float(v))) for n, l, v in b]


def test_the_scrape_parser_reads_what_prometheus_client_reads() -> None:
    """The scrape path's own text parser (issue 16: prometheus_client's cost 1.7 s a scrape at 10,000
    clients) gives the same names, labels and values on escapes, odd spacing, NaN/Inf and timestamps."""
    from prometheus_client.parser import text_string_to_metric_families

    from guardian.ingest.prometheus import text_samples

    theirs = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(TRICKY) for s in f.samples]
    assert len(theirs) == 7
    assert _same(list(text_samples(TRICKY)), theirs)


def test_an_unreadable_line_is_skipped_not_the_whole_scrape() -> None:
    from guardian.ingest.prometheus import text_samples

    page = 'ok{a="1"} 1\nbroken{a="1" 2\nalso_ok 3\n'
    assert [(n, v) for n, _, v in text_samples(page)] == [("ok", 1.0), ("also_ok", 3.0)]


def test_every_brokers_page_is_fetched_at_once_and_parsed_per_broker() -> None:
    from guardian.ingest.prometheus import PrometheusScraper

    pages = [text(produce=1000.0 * (i + 1)) for i in range(3)]
    exporters = ExporterPages(pages, together=True)
    scraper = PrometheusScraper(exporters.urls, cluster="c")
    try:
        samples = scraper.scrape()
    finally:
        scraper.close()
        exporters.close()
    got = {s.workload.broker: s.value for s in by(samples, Metric.PRODUCE_BYTE_RATE, client_id="writer")}
    assert got == {target_name(u): 1000.0 * (i + 1) for i, u in enumerate(exporters.urls)}


def test_a_broken_exporter_costs_its_own_samples_and_a_verification_read_fails_whole() -> None:
    from guardian.errors import TemporaryError
    from guardian.ingest.prometheus import ClientRates, PrometheusScraper

    exporters = ExporterPages([text(produce=10.0), None, text(produce=30.0)], together=True)
    scraper, rates = PrometheusScraper(exporters.urls), ClientRates(exporters.urls)
    try:
        samples = scraper.scrape()
        with pytest.raises(TemporaryError, match="unreadable"):
            rates("tenant-a", "writer", "producer_byte_rate")   # a broker left out would look throttled
    finally:
        scraper.close()
        rates.close()
        exporters.close()
    got = {s.workload.broker: s.value for s in by(samples, Metric.PRODUCE_BYTE_RATE, client_id="writer")}
    assert got == {target_name(exporters.urls[0]): 10.0, target_name(exporters.urls[2]): 30.0}


def test_a_verification_read_sums_nothing_but_each_brokers_own_sensor() -> None:
    from guardian.ingest.prometheus import ClientRates

    exporters = ExporterPages([text(produce=100.0), text(produce=200.0)], together=True)
    rates = ClientRates(exporters.urls)
    try:
        got = rates("tenant-a", "writer", "producer_byte_rate")
    finally:
        rates.close()
        exporters.close()
    assert got == {target_name(exporters.urls[0]): 100.0, target_name(exporters.urls[1]): 200.0}
