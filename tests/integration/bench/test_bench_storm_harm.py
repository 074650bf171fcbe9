"""`bench/bench_storm_harm.py` against the real broker, seconds long: every probe measured in every phase,
the storm ran, and every topic it made is gone. Shape, not time."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from bench.bench_storm_harm import run


def test_a_short_partition_storm_is_measured_by_every_probe_and_cleaned_up(bootstrap: str) -> None:
    out = run(bootstrap, "partitions", before_s=3.0, during_s=3.0, after_s=2.0, partitions=2, rate=2.0)
    assert out["storm_ops"] >= 2 and out["topics_made"] >= out["storm_ops"] + 2
    for probe in ("produce", "commit", "deploy_step"):
        phases = out["probes"][probe]
        assert all(phases[ph]["n"] > 0 and phases[ph]["p99_ms"] >= phases[ph]["p50_ms"] > 0
                   for ph in ("before", "during")), (probe, phases)
        assert phases["p99_ratio_during_vs_before"] > 0
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30).topics
    assert not [t for t in topics if out["run"] in t]


def test_a_short_rebalance_storm_churns_its_group(bootstrap: str) -> None:
    # a member's close() waits for its leave to be answered, which can take a second or more under load
    out = run(bootstrap, "rebalance", before_s=3.0, during_s=5.0, after_s=1.0, members=3, every_s=0.5)
    assert out["storm_ops"] >= 3 and out["probes"]["commit"]["during"]["n"] > 0
