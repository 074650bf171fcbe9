"""`guardian-dev bench scale` at a tiny size: the report's shape and that every figure is a positive number.

No wall-clock thresholds: the figures are reported (docs/BENCHMARKS.md, "Scale"), never asserted on."""

from __future__ import annotations

import math

from bench.bench_scale import exporter_text, plugin_snapshot, run


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
    out = run([60], brokers=2, quarantines=0, say=lambda m: None)
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
    assert "ledger_api" not in out and "real_broker" not in out


def test_the_plugin_snapshot_decodes_to_the_same_samples_as_the_page() -> None:
    from guardian.ingest.broker_plugin import BrokerSnapshotDecoder
    from guardian.ingest.prometheus import PrometheusSampler

    page = PrometheusSampler().samples_from_text(exporter_text(30), 1.0, "1")
    snap = BrokerSnapshotDecoder().decode(plugin_snapshot(30))
    key = lambda s: (s.workload.key, s.metric.value, round(s.value, 6))  # noqa: E731
    assert sorted(map(key, page)) == sorted(map(key, snap))
