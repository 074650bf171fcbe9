"""`guardian-dev bench scale` at a tiny size: the report's shape and that every figure is a positive number.

No wall-clock thresholds: the figures are reported (docs/BENCHMARKS.md, "Scale"), never asserted on."""

from __future__ import annotations

import math

from bench.bench_scale import capacity, exporter_text, plugin_snapshot, run, view_state


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_the_synthetic_exporter_page_is_what_prometheus_client_reads_too() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from guardian.ingest.prometheus import text_samples

    text = exporter_text(40)
    theirs = [(s.name, s.labels, repr(float(s.value))) for f in text_string_to_metric_families(text) for s in f.samples]
    assert len(theirs) == 1 + 4 * 40   # process start time + 4 sensors per client
    assert [(n, lb, repr(float(v))) for n, lb, v in text_samples(text)] == theirs


def test_a_tiny_run_reports_every_figure() -> None:
    out = run([60], brokers=2, quarantines=0, view=False, say=lambda m: None)   # no Redis here
    fig = out["by_clients"]["60"]
    parse, worker, cap = fig["parse"], fig["worker"], fig["capacity"]
    # every client yields its byte rate and request time; 1 in 100 (client 0) is throttled on two sensors
    assert parse["scrape"]["samples"] == parse["plugin"]["samples"] == 2 * 60 + 2
    assert parse["scrape"]["lines"] > 4 * 60
    for key in ("bytes", "records", "record_bytes", "parse_s", "encode_s", "core_share_per_broker"):
        assert _positive(parse["scrape"][key]), key
    for key in ("bytes", "records", "decode_s", "encode_s", "core_share_per_broker"):
        assert _positive(parse["plugin"][key]), key
    assert worker["brokers"] == 2 and worker["series"] >= 2 * 60
    assert _positive(worker["chunked"]["samples_per_s"]) and _positive(worker["chunked"]["s_per_round"])
    for key in ("samples_per_s", "records_per_s", "s_per_round", "heap_bytes_per_client"):
        assert _positive(worker[key]), key
    assert _positive(worker["heap_bytes_per_client_by_part"]["pipeline"])
    assert _positive(worker["heap_bytes_per_client_by_part"]["cluster_series"])
    assert all(_positive(v) for v in cap.values())
    assert all(_positive(v) for v in worker["detectors_alone"].values())
    assert "ledger_api" not in out and "real_broker" not in out and "view" not in fig
    assert not any("view" in k for k in cap)


def test_the_plugin_snapshot_decodes_to_the_same_samples_as_the_page() -> None:
    from guardian.ingest.broker_plugin import BrokerSnapshotDecoder
    from guardian.ingest.prometheus import PrometheusSampler

    page = PrometheusSampler().samples_from_text(exporter_text(30), 1.0, "1")
    snap = BrokerSnapshotDecoder().decode(plugin_snapshot(30))
    key = lambda s: (s.workload.key, s.metric.value, round(s.value, 6))  # noqa: E731
    assert sorted(map(key, page)) == sorted(map(key, snap))


def test_the_view_workers_hold_the_whole_cluster_between_them() -> None:
    """What the shared view's figures are measured on (``view_cost``, against Redis in tests/integration):
    tenants split over the workers, the brokers' own samples on worker 0, the followed series full."""
    state = view_state(40, brokers=2, workers=2, followed=4)
    w0, w1 = state.workers
    # 40 clients of tenants 0..39, one each: the even tenants on worker 0, each client on both brokers
    assert [w.parts for w in state.workers] == [40, 40]
    assert w0.tenants == [f"User:tenant-{t}" for t in range(0, 40, 2)]
    parts = [w.pressure.part() for w in state.workers]
    assert [sum(len(b.clients) for b in p.values()) for p in parts] == [40, 40]
    assert set(parts[0]) == set(parts[1]) == {"1", "2"}
    assert {"request_handler_idle", "request_total_time_p99:Produce"} <= set(parts[0]["1"].signals)
    assert parts[1]["1"].signals == {} and parts[1]["1"].total.request_time > 0
    assert set(w0.traffic.part()) == {(b, m) for b in "12" for m in ("produce_byte_rate", "fetch_byte_rate")}
    assert w1.traffic.part() == {}
    # tenants 0..3's first clients are followed, each on its own tenant's worker, with keep_s of points
    assert [k[:2] for k in state.followed] == [(f"User:tenant-{i}", f"client-{i:06d}") for i in range(4)]
    for w, mine in ((w0, state.followed[0::2]), (w1, state.followed[1::2])):
        rates = w.rates.part()
        assert set(rates) == set(mine)
        assert all(len(points) == w.rates.keep_s and set(points[-1].brokers) == {"1", "2"}
                   for points in rates.values())
    assert all(not b.clients for b in w0.pressure.part([]).values())   # no tenant open: totals only


def test_capacity_counts_the_view_publication_per_part_the_worker_carries() -> None:
    parse = {"clients": 100, "scrape": {"core_share_per_broker": 0.01}, "plugin": {"core_share_per_broker": 0.005}}
    worker = {"brokers": 2, "s_per_round": 0.1, "chunked": {"s_per_round": 0.02}}
    view = {"interval_s": 1.0, "client_parts_by_worker": [100, 100],
            "publish": {"0": {"publish_s": 0.001}, "10": {"publish_s": 0.002}, "all": {"publish_s": 0.01}}}
    without, with_view = capacity(parse, worker), capacity(parse, worker, view)
    assert with_view.items() >= without.items()   # the figures without the view are unchanged
    # chunked worker 0.02 s / 200 parts = 1e-4 s a part; publishing with 10 tenants open 0.002 s / 100 parts
    assert math.isclose(with_view["view_share_of_chunked_worker"], 0.2)
    assert math.isclose(with_view["worker_chunked_with_view_parts_per_s"], 1 / 1.2e-4)
    assert math.isclose(with_view["scrape_and_chunked_worker_with_view_parts_per_s"], 1 / (1e-4 + 1.2e-4))


def test_the_scrape_cycle_is_timed_both_ways_on_the_same_pages() -> None:
    """Shape, not time: local pages in the exporter's format, both ways, every round."""
    from bench.bench_scale import exporter_text, scrape_cycle
    from tests.exporter_pages import ExporterPages

    pages = ExporterPages([exporter_text(20)] * 3)
    try:
        out = scrape_cycle(pages.urls, rounds=3, interval_s=0.0)
    finally:
        pages.close()
    assert out["brokers"] == 3 and out["rounds"] == 3
    for way in ("at_once", "one_after_another"):
        assert 0 < out[way]["p50_ms"] <= out[way]["p90_ms"] <= out[way]["max_ms"], way
