"""Real confluent-kafka producers at a paced rate, for measuring what a throttle does.

Each producer runs in its own thread, offers ``rate_bps`` bytes/s of
``msg_size``-byte records (to the partitions of ``partition_cycle`` in turn, so
a test sets the client's spread over partition leaders; else the partitioner
chooses) and records every delivery (monotonic time, bytes)
and every throttle time the broker reports (librdkafka ``throttle_cb``, plus
``brokers.*.throttle`` from the statistics JSON).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class ThrottleSeen:
    events: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, throttle ms) from throttle_cb
    stats_max_ms: int = 0                                          # max brokers.*.throttle.max in stats


class PacedProducer:
    def __init__(self, conf: dict[str, Any], topic: str, rate_bps: float, msg_size: int = 4096,
                 max_queued_bytes: int = 64 << 20, partition_cycle: tuple[int, ...] = ()) -> None:
        self.topic, self.rate_bps, self.msg_size = topic, rate_bps, msg_size
        self.partition_cycle = partition_cycle
        self.max_queued_bytes = max_queued_bytes
        self.deliveries: list[tuple[float, int]] = []
        self.errors: list[str] = []
        self.throttle = ThrottleSeen()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._queued = 0
        self._conf = dict(conf)
        self._conf.update({"linger.ms": 5, "acks": 1, "statistics.interval.ms": 1000,
                           "throttle_cb": self._on_throttle, "stats_cb": self._on_stats,
                           "error_cb": lambda err: self.errors.append(str(err))})
        self._thread = threading.Thread(target=self._run, name=f"producer-{topic}", daemon=True)

    def _on_throttle(self, ev: Any) -> None:
        if ev.throttle_time > 0:
            self.throttle.events.append((time.monotonic(), int(ev.throttle_time * 1000)))

    def _on_stats(self, raw: str) -> None:
        for b in json.loads(raw).get("brokers", {}).values():
            self.throttle.stats_max_ms = max(self.throttle.stats_max_ms, int(b.get("throttle", {}).get("max", 0)))

    def _on_delivery(self, err: Any, msg: Any) -> None:
        size = len(msg.value() or b"")
        with self._lock:
            self._queued -= size
            if err is None:
                self.deliveries.append((time.monotonic(), size))
            elif not self._stop.is_set():  # purge at stop fails the backlog on purpose
                self.errors.append(str(err))

    def start(self) -> "PacedProducer":
        self._thread.start()
        return self

    def _run(self) -> None:
        from confluent_kafka import Producer

        producer = Producer(self._conf)
        payload = b"x" * self.msg_size
        started = time.monotonic()
        offered = 0
        sent = 0
        cycle = self.partition_cycle
        try:
            while not self._stop.is_set():
                due = self.rate_bps * (time.monotonic() - started)
                while offered + self.msg_size <= due and self._queued < self.max_queued_bytes:
                    kw = {"partition": cycle[sent % len(cycle)]} if cycle else {}
                    try:
                        producer.produce(self.topic, payload, on_delivery=self._on_delivery, **kw)
                    except BufferError:
                        break
                    sent += 1
                    with self._lock:
                        self._queued += self.msg_size
                    offered += self.msg_size
                producer.poll(0.005)
        finally:
            producer.purge()  # a throttled backlog would take long to drain; it is not what we measure
            producer.flush(10)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def rate(self, t0: float, t1: float) -> float:
        """Delivered payload bytes/s between monotonic times ``t0`` and ``t1``."""
        with self._lock:
            total = sum(n for t, n in self.deliveries if t0 <= t < t1)
        return total / (t1 - t0)

    def per_second(self, t0: float, t1: float) -> list[int]:
        """Delivered payload bytes in each whole second from ``t0`` (for failure messages)."""
        with self._lock:
            ds = list(self.deliveries)
        return [sum(n for t, n in ds if t0 + i <= t < t0 + i + 1) for i in range(int(t1 - t0))]

    def throttle_events(self, t0: float = 0.0) -> list[tuple[float, int]]:
        return [e for e in self.throttle.events if e[0] >= t0]


def at_speed(ready: Callable[[float], bool], limit_s: float, why_not: Callable[[float, float], str]) -> float:
    """Poll every 0.25 s until ``ready(now)``; the monotonic time it first held. Start-up (SASL,
    metadata) is slow on a busy machine, so a test acts once its clients run at speed, not at a fixed
    time; past ``limit_s`` it fails with ``why_not(t0, now)``."""
    t0 = time.monotonic()
    while True:
        time.sleep(0.25)
        now = time.monotonic()
        if ready(now):
            return now
        assert now - t0 < limit_s, why_not(t0, now)


def throttle_for(actuator: Any, plan: Any, seconds: float) -> tuple[float, float]:
    """Apply ``plan``, check the broker serves it, hold it ``seconds``: (applied at, ended at), monotonic."""
    applied = time.monotonic()
    actuator.apply(plan)
    assert actuator.verify(plan)
    time.sleep(seconds)
    return applied, time.monotonic()

