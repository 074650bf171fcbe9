"""The drill's changing producers in a process of their own, on the real broker: what they send is
recorded here as if they ran here, their rate follows the change, and the drill's stop reaches them."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from guardian_dev.drill.load import ChangedRate, ChildProducers, ProducerClient, Recorder
from guardian_dev.drill.runner import create_topics, delete_topics


def _producer(tenant_conf: Callable[..., dict], topic: str, rate: ChangedRate, start: float, end: float,
              stop: threading.Event) -> ProducerClient:
    rec = Recorder(f"child-{uuid.uuid4().hex[:6]}", "tenant-a", "runaway", "producer")
    return ProducerClient(rec, tenant_conf("tenant-a"), topic, rate, 1000, stop, start, end, drain_s=5.0)


@pytest.fixture
def topic(bootstrap: str) -> Iterator[str]:
    name = f"tenant-a.child-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {name: 1})
    yield name
    delete_topics(bootstrap, [name])


def test_a_child_process_sends_at_the_changing_rate_and_its_acks_land_in_the_drills_recorder(
        topic: str, tenant_conf: Callable[..., dict], tmp_path: Path) -> None:
    stop = threading.Event()
    now = time.time()
    onset = now + 4.0   # the child's start (Python, confluent-kafka) takes a second or two
    producers = [_producer(tenant_conf, topic, ChangedRate(base=20, onset=onset, pattern="step", factor=5),
                           now + 1.0, now + 7.0, stop),
                 _producer(tenant_conf, topic, ChangedRate(base=10, onset=onset, pattern="ramp", factor=3,
                                                           ramp_s=2.0), now + 1.0, now + 7.0, stop)]
    child = ChildProducers(producers, stop, tmp_path / "child.log")
    child.start()
    child.join(timeout=60)
    assert not child.is_alive() and child.returncode == 0, (tmp_path / "child.log").read_text()
    for p in producers:
        rec = p.rec
        assert rec.errors == 0, rec.last_error
        assert rec.started_at is not None and rec.stopped_at is not None and rec.started_at < rec.stopped_at
        assert all(n == 1000 and lat > 0 for _, n, lat in rec.acks)
        before = sum(1 for t, _, _ in rec.acks if rec.started_at + 1 <= t < onset) / (onset - rec.started_at - 1)
        after = sum(1 for t, _, _ in rec.acks if onset + 1 <= t < now + 7.0) / (now + 6.0 - onset)
        assert before > 0 and after > 2 * before, (before, after)


def test_the_drills_stop_ends_the_child_long_before_its_producers_end(
        topic: str, tenant_conf: Callable[..., dict], tmp_path: Path) -> None:
    stop = threading.Event()
    now = time.time()
    p = _producer(tenant_conf, topic, ChangedRate(base=50, onset=now, pattern="step", factor=1),
                  now + 0.5, now + 300.0, stop)
    child = ChildProducers([p], stop, tmp_path / "child.log")
    child.start()
    deadline = time.time() + 30
    while not p.rec.acks and time.time() < deadline:
        time.sleep(0.2)
    assert p.rec.acks, "the child sent nothing in 30 s: " + (tmp_path / "child.log").read_text()
    stop.set()
    child.join(timeout=30)
    assert not child.is_alive() and child.returncode == 0
    assert p.rec.stopped_at is not None and p.rec.stopped_at < now + 60
