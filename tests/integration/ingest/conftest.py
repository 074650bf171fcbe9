"""Helpers for the ingestion tests: unique guardian topics per test and stream-processor workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from guardian.settings import GuardianSettings, TopicSettings


@dataclass
class IngestEnv:
    bootstrap: str
    settings: GuardianSettings
    env: dict[str, str]
    tmp: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def topics(self) -> TopicSettings:
        return self.settings.topics

    def start_worker(self, worker_id: str, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"{worker_id}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "guardian.ingest.worker", "--worker-id", worker_id,
                                 "--session-timeout", "6", "--commit-interval", "0.5", *args],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def wait_assigned(self, workers: int, timeout: float = 90.0) -> None:
        """Wait until ``workers`` processors share the metrics partitions in a stable group."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        group, topic = self.settings.ingest.app_id, self.topics.metrics

        def assigned() -> bool:
            try:
                desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
            except Exception:  # noqa: BLE001 - the group does not exist yet
                return False
            owners = [m for m in desc.members if m.assignment
                      and any(tp.topic == topic for tp in m.assignment.topic_partitions)]
            return desc.state.name == "STABLE" and len(owners) == workers

        wait_for(assigned, timeout, f"{workers} worker(s) assigned the metrics partitions")

    def log_of(self, worker_id: str) -> str:
        path = self.tmp / f"{worker_id}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def consume(self, topic: str, want: int, timeout: float = 30.0,
                settle: float = 0.0) -> list:
        """Committed records of ``topic`` from the start until ``want`` arrived (then ``settle`` s more)."""
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"t-{uuid.uuid4().hex[:8]}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "isolation.level": "read_committed"})
        c.subscribe([topic])
        out: list = []
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        try:
            while time.monotonic() < deadline:
                if settle_until is None and len(out) >= want:
                    settle_until = time.monotonic() + settle
                if settle_until is not None and time.monotonic() >= settle_until:
                    break
                for m in c.consume(500, timeout=0.5):
                    if not m.error():
                        out.append(m)
        finally:
            c.close()
        return out


@pytest.fixture
def ingest_env(bootstrap: str, tmp_path: Path) -> Iterator[IngestEnv]:
    from confluent_kafka.admin import AdminClient

    from guardian.clients.topics import ensure_topics

    u = uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "GUARDIAN_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "GUARDIAN_TOPICS__METRICS": f"t-{u}.metrics",
        "GUARDIAN_TOPICS__METRICS_DLQ": f"t-{u}.metrics.dlq",
        "GUARDIAN_TOPICS__DETECTIONS": f"t-{u}.detections",
        "GUARDIAN_TOPICS__CLIENT_STATS": f"t-{u}.client-stats",
        "GUARDIAN_TOPICS__PARTITIONS": "4",
        "GUARDIAN_INGEST__APP_ID": f"t-{u}-ingest",
    })
    settings = GuardianSettings(
        kafka={"bootstrap_servers": bootstrap},
        topics={"metrics": env["GUARDIAN_TOPICS__METRICS"], "metrics_dlq": env["GUARDIAN_TOPICS__METRICS_DLQ"],
                "detections": env["GUARDIAN_TOPICS__DETECTIONS"], "client_stats": env["GUARDIAN_TOPICS__CLIENT_STATS"],
                "partitions": 4},
        ingest={"app_id": env["GUARDIAN_INGEST__APP_ID"], "owner_prefixes": ["tenant-a", "tenant-b", "tenant-c"]},
    )
    t = settings.topics
    mine = [t.metrics, t.metrics_dlq, t.detections, t.client_stats]
    ensure_topics(settings.kafka.client_config(), t, only=mine)
    ie = IngestEnv(bootstrap, settings, env, tmp_path)
    yield ie
    for p in ie.procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics(mine, operation_timeout=30).values():
        try:
            fut.result(timeout=30)
        except Exception:  # noqa: BLE001 - best-effort clean-up
            pass


def wait_for(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
