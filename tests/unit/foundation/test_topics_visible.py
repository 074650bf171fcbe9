"""ensure_topics returns only when the brokers serve what it created (guardian.clients.topics.wait_until_visible)."""

from __future__ import annotations

import pytest

from guardian.errors import TemporaryError
from guardian.clients.topics import wait_until_visible


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_it_waits_for_every_partition_to_have_a_leader() -> None:
    views = [{}, {"m": [1]}, {"m": [1, -1]}, {"m": [1, 1]}]   # missing, too few, leaderless, served
    calls = []

    def leaders() -> dict[str, list[int]]:
        calls.append(1)
        return views[min(len(calls) - 1, len(views) - 1)]

    clock = _Clock()
    wait_until_visible(leaders, {"m": 2}, 30.0, clock=clock, sleep=clock.sleep)
    assert len(calls) == 4 and clock.now == pytest.approx(1.5)


def test_a_metadata_error_is_retried_and_a_topic_never_served_is_a_temporary_error_naming_it() -> None:
    def leaders() -> dict[str, list[int]]:
        raise RuntimeError("broker transport failure")

    clock = _Clock()
    with pytest.raises(TemporaryError, match=r"not served by the brokers after 3s: a, b \(broker transport failure\)"):
        wait_until_visible(leaders, {"b": 1, "a": 1}, 3.0, clock=clock, sleep=clock.sleep)
    assert clock.now >= 3.0
