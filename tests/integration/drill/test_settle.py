"""The drill's settle step between its off and on runs, on the real broker: a probe that measures, and a
broker at its normal that needs no wait."""

from __future__ import annotations

from guardian_dev.drill.runner import probe_latency, settle_broker


def test_an_idle_broker_is_settled_at_once_and_a_slower_normal_is_never_waited_for(bootstrap: str) -> None:
    normal = probe_latency(bootstrap, messages=30)
    assert 0 < normal < 5.0
    said: list[str] = []
    assert settle_broker(bootstrap, normal, max_wait_s=60, say=said.append) < 30 and said == []


def test_a_broker_slower_than_the_normal_is_waited_for_until_the_limit(bootstrap: str) -> None:
    said: list[str] = []
    # a "normal" no broker reaches: the probe never gets within 2x of it (or 5 ms more) in the time given
    waited = settle_broker(bootstrap, -1.0, max_wait_s=0.0, say=said.append)
    assert waited >= 0 and said and "still slow" in said[-1]
