"""`guardian-dev bench scale`'s ledger and API part against the real Redis, at a tiny size: shape, not time."""

from __future__ import annotations

import math

from bench.bench_scale import ledger_api


def test_ledger_and_api_figures_with_a_few_quarantines(redis_url: str) -> None:
    out = ledger_api(12, repeats=1, redis_url=redis_url, say=lambda m: None)
    for group in ("ledger", "api", "engine"):
        for name, fig in out[group].items():
            assert fig["n"] > 0 and math.isfinite(fig["p50_ms"]) and fig["p99_ms"] >= fig["p50_ms"] > 0, name
    assert out["api"]["list_sre_limit_50"]["items"] == 12          # an SRE sees every quarantine
    assert out["api"]["list_tenant_limit_50"]["items"] == 1   # tenant-1 sees only its own: client 1
