"""`guardian-dev bench scale`'s ledger and API part against the real Redis, at a tiny size: shape, not time."""

from __future__ import annotations

import math

from bench.bench_scale import ledger_api, view_cost


def test_ledger_and_api_figures_with_a_few_quarantines(redis_url: str) -> None:
    out = ledger_api(12, repeats=1, redis_url=redis_url, say=lambda m: None)
    for group in ("ledger", "api", "engine"):
        for name, fig in out[group].items():
            assert fig["n"] > 0 and math.isfinite(fig["p50_ms"]) and fig["p99_ms"] >= fig["p50_ms"] > 0, name
    assert out["api"]["list_sre_limit_50"]["items"] == 12          # an SRE sees every quarantine
    assert out["api"]["list_tenant_limit_50"]["items"] == 1   # tenant-1 sees only its own: client 1


def test_shared_view_figures_of_two_workers(redis_url: str, redis_client) -> None:
    out = view_cost(40, brokers=2, open_tenants=(0, 2), followed=4, repeats=1, redis_url=redis_url,
                    say=lambda m: None)
    pub, eng = out["publish"], out["engine"]
    assert list(pub) == list(eng) == ["0", "2", "all"]
    # worker 0 carries the even tenants (one client each, on 2 brokers): tenant-0 of the 2 open, all 20
    assert [(pub[k]["principals"], pub[k]["client_entries"]) for k in pub] == [(0, 0), (1, 2), (20, 40)]
    assert pub["0"]["bytes"] < pub["2"]["bytes"] < pub["all"]["bytes"]
    for fig in pub.values():
        assert all(math.isfinite(fig[k]) and fig[k] > 0 for k in ("build_s", "serialize_s", "publish_s",
                                                                    "publish_cpu_s", "core_ms_per_s"))
    # the engine sees both workers' parts: the open tenants' clients, the traffic, the followed points
    assert [eng[k]["client_entries"] for k in eng] == [0, 4, 80]
    for fig in eng.values():
        assert fig["traffic_known"] and fig["rate_points"] == 120 and fig["bytes_read"] > 0
        for name in ("cluster_pressure", "cluster_traffic", "client_rates"):
            assert fig[name]["s"] > 0 and fig["cached_s"][name] > 0, name
    assert not list(redis_client.scan_iter(match="bench-scale-view-*"))   # cleaned up


def test_one_worker_with_its_detectors_takes_every_packed_scrape_through_the_broker(bootstrap: str, redis_url: str,
                                                                                   redis_client) -> None:
    from bench.bench_scale import worker_through_kafka

    out = worker_through_kafka(40, brokers=3, rounds=3, say=lambda m: None, bootstrap=bootstrap, redis_url=redis_url)
    # as `guardian run`'s worker: its state saved in Redis (here only at shutdown: 3 s of sample time),
    # its view published, and both deleted afterwards
    assert out["shared"] and out["state_saves"] >= 1 and out["state_snapshot_bytes"] > 0
    assert not list(redis_client.scan_iter(match="bench-scale-e2e-*"))
    # 40 clients x 3 brokers x 3 scrapes, a byte rate and a request-time share each at least: every
    # sample produced reached the detectors
    assert out["samples"] == out["produced_samples"] >= 40 * 3 * 3 * 2 and out["dead_letters"] == 0
    assert out["detections"] == 0          # steady synthetic clients: nothing ran away
    assert out["samples_per_s"] > 0 and out["client_broker_parts_per_s"] > 0
