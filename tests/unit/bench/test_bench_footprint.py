"""The footprint bench's CPU accounting from /proc: what a process spent, and nothing for one that is gone."""

from __future__ import annotations

import os
import sys

import pytest

from bench.bench_footprint import cpu_seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")


def test_cpu_seconds_grow_with_work_and_a_gone_process_counts_nothing() -> None:
    before = cpu_seconds([os.getpid()])
    x = 0
    while cpu_seconds([os.getpid()]) - before < 0.2:   # spin until /proc shows 0.2 s more
        x += 1
    assert cpu_seconds([os.getpid()]) >= before + 0.2 and x > 0
    assert cpu_seconds([2 ** 22 + 12345]) == 0.0        # above the kernel's pid limit: never a process
    assert cpu_seconds([os.getpid(), os.getpid()]) == pytest.approx(2 * cpu_seconds([os.getpid()]), rel=0.05)
