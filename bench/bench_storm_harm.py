"""Who does a partition storm or a rebalance storm hurt? Benign probes before, during and after one.

The drills' benign producers measure the produce path; these two storms load the controller and the
group coordinator instead. Against a running broker (the drill's own small one, or any), three benign
probes run throughout: a producer (1 KB records, acks=all: produce latency), a consumer group committing
an offset every 0.2 s (commit latency) and a deploy step once a second (create a one-partition topic,
ack its first record). After ``before_s`` a storm runs for ``during_s``:

* ``partitions``: topics of ``partitions`` partitions created one at a time, at most ``rate`` a second
  (``--rate 0``: as fast as the broker answers, a script's tight loop);
* ``rebalance``: a group of ``members`` consumers, one leaving and a new one joining every ``every_s``.

Printed: each probe's p50/p99 per phase and the during/before ratios. Every topic it made is deleted.

    python -m bench.bench_storm_harm --bootstrap 127.0.0.1:9092 --storm partitions --rate 10
    python -m bench.bench_storm_harm --bootstrap 127.0.0.1:9092 --storm rebalance --members 20 --every 0.2

The bootstrap is a listener without authentication (the local broker's plain one: `guardian-dev env`).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from typing import Any

import numpy as np

from guardian_dev.drill.load import first_record

PHASES = ("before", "during", "after")


class Probes:
    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka.admin import AdminClient

        self.bootstrap = bootstrap
        self.run = uuid.uuid4().hex[:6]
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.phase = "warmup"
        self.stop = threading.Event()
        self.lat: dict[str, list[tuple[str, float]]] = {"produce": [], "commit": [], "deploy_step": []}
        self.topics: list[str] = []
        self.storm_ops = 0

    def _create(self, name: str, partitions: int, wait: bool = True) -> None:
        from confluent_kafka.admin import NewTopic

        self.topics.append(name)
        fut = self.admin.create_topics([NewTopic(name, partitions, 1)])[name]
        if wait:
            fut.result(60)

    def _record(self, probe: str, phase: str, seconds: float) -> None:
        self.lat[probe].append((phase, seconds))

    def deploy_steps(self) -> None:
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 0})
        i = 0
        while not self.stop.is_set():
            phase, began = self.phase, time.time()
            name = f"probe-{self.run}-{i}"
            i += 1
            self._create(name, 1)
            first_record(p, name, began + 60)
            self._record("deploy_step", phase, time.time() - began)
            self.stop.wait(max(0.0, 1.0 - (time.time() - began)))

    def commits(self, topic: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"benign-{self.run}",
                      "enable.auto.commit": False})
        offset = 0
        try:
            while not self.stop.is_set():
                phase, began = self.phase, time.time()
                offset += 1
                c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
                self._record("commit", phase, time.time() - began)
                self.stop.wait(0.2)
        finally:
            c.close()

    def produce(self, topic: str) -> None:
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 5})
        while not self.stop.is_set():
            phase = self.phase
            p.produce(topic, b"y" * 1000,
                      on_delivery=lambda err, msg, ph=phase: None if err else self._record("produce", ph, msg.latency()))
            p.poll(0.005)
        p.flush(10)

    def partition_storm(self, partitions: int, rate: float) -> None:
        while not self.stop.is_set():
            if self.phase != "during":
                time.sleep(0.05)
                continue
            began = time.time()
            self._create(f"storm-{self.run}-{self.storm_ops}", partitions)
            self.storm_ops += 1
            if rate > 0:
                time.sleep(max(0.0, 1.0 / rate - (time.time() - began)))

    def rebalance_storm(self, topic: str, members: int, every_s: float) -> None:
        from confluent_kafka import Consumer

        conf = {"bootstrap.servers": self.bootstrap, "group.id": f"storm-{self.run}", "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000}
        group = []
        for _ in range(members):
            c = Consumer(conf)
            c.subscribe([topic])
            group.append(c)
        last = time.time()
        try:
            while not self.stop.is_set():
                for c in group:
                    c.consume(10, timeout=0.01)
                if self.phase == "during" and time.time() - last >= every_s:
                    group.pop(0).close()
                    c = Consumer(conf)
                    c.subscribe([topic])
                    group.append(c)
                    last = time.time()
                    self.storm_ops += 1
        finally:
            for c in group:
                c.close()

    def cleanup(self, wait_s: float = 120.0) -> None:
        """Delete every topic this run made, and wait (up to ``wait_s``) until metadata lists none."""
        for i in range(0, len(self.topics), 200):
            for fut in self.admin.delete_topics(self.topics[i:i + 200], operation_timeout=60).values():
                try:
                    fut.result(120)
                except Exception:  # noqa: BLE001 - best effort; the report says how many were made
                    pass
        deadline, mine = time.monotonic() + wait_s, set(self.topics)
        while time.monotonic() < deadline and mine & set(self.admin.list_topics(timeout=30).topics):
            time.sleep(0.5)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for probe, xs in self.lat.items():
            per = {}
            for ph in PHASES:
                v = [s * 1000.0 for p, s in xs if p == ph]
                per[ph] = {"n": len(v), "p50_ms": round(float(np.percentile(v, 50)), 1) if v else None,
                           "p99_ms": round(float(np.percentile(v, 99)), 1) if v else None}
            b, d = per["before"], per["during"]
            for q in ("p50", "p99"):
                if b[f"{q}_ms"] and d[f"{q}_ms"] is not None:
                    per[f"{q}_ratio_during_vs_before"] = round(d[f"{q}_ms"] / b[f"{q}_ms"], 2)
            out[probe] = per
        return out


def run(bootstrap: str, storm: str, before_s: float = 25.0, during_s: float = 30.0, after_s: float = 10.0,
        partitions: int = 20, rate: float = 10.0, members: int = 20, every_s: float = 0.2) -> dict[str, Any]:
    pr = Probes(bootstrap)
    topic = f"bt-{pr.run}"
    pr._create(topic, 1)
    storm_topic = f"st-{pr.run}"
    pr._create(storm_topic, 3)
    threads = [threading.Thread(target=pr.deploy_steps, daemon=True),
               threading.Thread(target=pr.commits, args=(topic,), daemon=True),
               threading.Thread(target=pr.produce, args=(topic,), daemon=True)]
    if storm == "partitions":
        threads.append(threading.Thread(target=pr.partition_storm, args=(partitions, rate), daemon=True))
    else:
        threads.append(threading.Thread(target=pr.rebalance_storm, args=(storm_topic, members, every_s), daemon=True))
    for t in threads:
        t.start()
    try:
        time.sleep(5.0)   # connections and the group settle outside the baseline
        for phase, secs in (("before", before_s), ("during", during_s), ("after", after_s)):
            pr.phase = phase
            time.sleep(secs)
        pr.phase = "done"
    finally:
        pr.stop.set()
        for t in threads:
            t.join(timeout=60)
        made = len(pr.topics)
        pr.cleanup()
    return {"run": pr.run, "storm": storm, "partitions": partitions if storm == "partitions" else None,
            "rate": rate if storm == "partitions" else None, "members": members if storm == "rebalance" else None,
            "every_s": every_s if storm == "rebalance" else None, "storm_ops": pr.storm_ops,
            "storm_ops_per_s": round(pr.storm_ops / during_s, 2), "topics_made": made, "probes": pr.summary()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--storm", choices=("partitions", "rebalance"), required=True)
    ap.add_argument("--partitions", type=int, default=20)
    ap.add_argument("--rate", type=float, default=10.0, help="topics/s (0: as fast as the broker answers)")
    ap.add_argument("--members", type=int, default=20)
    ap.add_argument("--every", type=float, default=0.2, help="seconds between one member leaving and one joining")
    ap.add_argument("--before", type=float, default=25.0)
    ap.add_argument("--during", type=float, default=30.0)
    ap.add_argument("--after", type=float, default=10.0)
    a = ap.parse_args()
    print(json.dumps(run(a.bootstrap, a.storm, a.before, a.during, a.after, a.partitions, a.rate, a.members,
                         a.every), indent=2))


if __name__ == "__main__":
    main()
