"""guardian run when the action engine thread dies: the process stops, non-zero, instead of
ingesting on with nobody acting (Kubernetes then restarts it). No Kafka: fakes at the seams."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import pytest

from guardian.app import run as run_mod


class FakeSource:
    def __init__(self) -> None:
        self.closed = False

    def poll(self, timeout_s: float) -> list:
        return []

    def close(self) -> None:
        self.closed = True


class DyingEngine:
    """``run_forever`` fails with an error that is not a GuardianError (a bug, a dead dependency)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def run_forever(self, source: Any, stop: threading.Event, poll_s: float, tick_s: float) -> None:
        raise self.exc


class StoppingEngine:
    def run_forever(self, source: Any, stop: threading.Event, poll_s: float, tick_s: float) -> None:
        stop.wait(5)


def test_a_dying_engine_calls_on_death_and_sets_stop():
    from guardian.app.run import run_engine

    died: list[BaseException] = []
    stop, source, exc = threading.Event(), FakeSource(), RuntimeError("redis client bug")
    run_engine(DyingEngine(exc), source, stop, died.append)
    assert died == [exc]
    assert stop.is_set(), "the collectors and the API must stop with the engine"
    assert source.closed


def test_an_engine_stopped_on_purpose_is_no_death():
    from guardian.app.run import run_engine

    died: list[BaseException] = []
    stop, source = threading.Event(), FakeSource()
    stop.set()
    run_engine(StoppingEngine(), source, stop, died.append)
    assert died == [] and source.closed


def test_guardian_run_exits_non_zero_when_the_engine_dies(monkeypatch, caplog):
    """``run()`` end to end with fakes: the engine dies, the (fake) faust worker gets SIGTERM as it
    would from Kubernetes, and ``run()`` exits 1 after one clear log line."""
    import guardian.engine.source
    import guardian.ingest.collect
    import guardian.ingest.worker
    import guardian.clients.topics

    exc = TypeError("'NoneType' object is not subscriptable")
    monkeypatch.setattr(guardian.clients.topics, "ensure_topics", lambda conf, topics: [])
    monkeypatch.setattr(guardian.ingest.collect, "start_collectors", lambda settings, stop, names: [])
    monkeypatch.setattr(run_mod, "build_engine", lambda *a, **kw: (DyingEngine(exc), []))
    monkeypatch.setenv("GUARDIAN_VIEW__ENABLED", "false")   # no Redis here for the shared cluster view
    monkeypatch.setattr(guardian.engine.source, "KafkaDetectionSource", lambda *a, **kw: FakeSource())
    monkeypatch.setattr(guardian.ingest.worker, "create_app", lambda *a, **kw: (None, None))
    terminated = threading.Event()

    def fake_worker(app: Any, loglevel: str) -> None:
        # what faust does: SIGTERM stops the worker and run_worker returns (here at the latest after 10 s)
        for _ in range(200):
            if terminated.wait(0.05):
                break

    monkeypatch.setattr(guardian.ingest.worker, "run_worker", fake_worker)
    caplog.set_level(logging.CRITICAL, logger="guardian.app.run")
    # the handler is in place before run() starts the engine thread: a thread that dies at once must
    # not reach the default SIGTERM action, which would end the test process itself
    previous = signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    try:
        with pytest.raises(SystemExit) as exited:
            run_mod.run(collectors=[], stage_factory=lambda *a: None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert terminated.is_set(), "the worker was never told to stop"
    assert exited.value.code == 1
    (line,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert "action engine died" in line.getMessage() and "TypeError" in line.getMessage()
