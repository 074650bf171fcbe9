"""Counters into rates: first point, steady rate, resets, restarts, duplicates, staleness."""

from __future__ import annotations

import pytest

from guardian.ingest.rates import CounterRates


def test_first_observation_is_only_a_baseline_then_rate() -> None:
    r = CounterRates()
    assert r.observe("k", 100.0, 5_000.0) is None
    assert r.observe("k", 110.0, 6_000.0) == pytest.approx(100.0)
    assert r.observe("k", 115.0, 6_000.0) == 0.0


def test_counter_reset_counts_the_new_value_as_the_increase() -> None:
    r = CounterRates()
    r.observe("k", 0.0, 1_000_000.0)
    # the process restarted and has counted 300 since: rate = 300 / 10 s, not negative
    assert r.observe("k", 10.0, 300.0) == pytest.approx(30.0)
    assert r.resets == 1
    assert r.observe("k", 20.0, 800.0) == pytest.approx(50.0)


def test_known_restart_counts_from_zero_even_if_the_value_grew() -> None:
    r = CounterRates()
    r.observe("k", 0.0, 100.0)
    assert r.observe("k", 10.0, 400.0, restarted=True) == pytest.approx(40.0)


def test_repeated_or_backwards_timestamp_keeps_the_older_baseline() -> None:
    r = CounterRates()
    r.observe("k", 10.0, 100.0)
    assert r.observe("k", 10.0, 150.0) is None
    assert r.observe("k", 9.0, 150.0) is None
    assert r.observe("k", 20.0, 200.0) == pytest.approx(10.0)


def test_series_are_independent_and_stale_ones_are_forgotten() -> None:
    r = CounterRates(stale_after_s=60)
    r.observe("a", 0.0, 0.0)
    r.observe("b", 50.0, 0.0)
    assert r.forget_stale(100.0) == 1
    assert len(r) == 1
    assert r.observe("a", 110.0, 10.0) is None  # forgotten: a new baseline
    assert r.observe("b", 100.0, 500.0) == pytest.approx(10.0)
