"""The guardian's own topics, created when missing with sensible partitions and retention.

``topic_specs`` (pure) says what each topic should be; ``ensure_topics`` (the
Kafka edge) creates the missing ones and leaves existing ones alone (it only
reports a topic with fewer partitions than wanted: growing partitions would
move workloads between processor partitions, so it stays a human decision).

* ``metrics``: ``partitions`` (the processors' parallelism), time retention;
* ``metrics.dlq``: few partitions, long retention (someone must look at it);
* ``detections``, ``telemetry``, ``client_stats``: ``partitions``, time retention;
* ``decisions``: the audit trail: 1 partition (one total order), compaction
  off, long retention.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from guardian.errors import PermanentError, TemporaryError
from guardian.settings import TopicSettings

log = logging.getLogger(__name__)

_WEEK_MS = 7 * 24 * 3600 * 1000
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(t: TopicSettings) -> list[TopicSpec]:
    rf = t.replication_factor
    ret = {"retention.ms": str(t.retention_ms), "cleanup.policy": "delete"}
    long = {"retention.ms": str(max(t.retention_ms, _WEEK_MS)), "cleanup.policy": "delete"}
    return [
        TopicSpec(t.metrics, t.partitions, rf, ret),
        # Room for any record the metrics topic accepted plus the DLQ headers.
        TopicSpec(t.metrics_dlq, min(t.partitions, 3), rf, {**long, "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}),
        TopicSpec(t.detections, t.partitions, rf, ret),
        TopicSpec(t.decisions, 1, rf, long),
        TopicSpec(t.telemetry, t.partitions, rf, ret),
        TopicSpec(t.client_stats, t.partitions, rf, ret),
    ]


def ensure_topics(client_config: dict[str, Any], topics: TopicSettings, timeout_s: float = 30.0,
                  only: list[str] | None = None) -> list[str]:
    """Create the missing guardian topics; returns the names created."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(dict(client_config))
    specs = [s for s in topic_specs(topics) if only is None or s.name in only]
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise TemporaryError(f"cannot list topics: {exc}", delay=5.0) from exc
    for s in specs:
        have = existing.get(s.name)
        if have is not None and len(have.partitions) < s.partitions:
            log.warning("topic %s has %d partitions, fewer than the %d configured; left as is",
                        s.name, len(have.partitions), s.partitions)
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics([NewTopic(s.name, s.partitions, s.replication_factor, config=s.config)
                                   for s in missing], operation_timeout=timeout_s, request_timeout=timeout_s)
    created: list[str] = []
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout_s)
            created.append(name)
            log.info("created topic %s", name)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another replica won the race
            if err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                              KafkaError.INVALID_CONFIG, KafkaError.INVALID_REPLICATION_FACTOR,
                              KafkaError.POLICY_VIOLATION):
                raise PermanentError(f"cannot create topic {name}: {err.str()}") from exc
            raise TemporaryError(f"cannot create topic {name}: {err.str()}", delay=5.0) from exc
    wait_until_visible(lambda: _leaders(admin), {s.name: s.partitions for s in missing if s.name in created}, timeout_s)
    return created


def wait_until_visible(leaders: Callable[[], dict[str, list[int]]], partitions: dict[str, int], timeout_s: float,
                       clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until ``leaders()`` (topic -> each partition's leader id, -1 for none) shows each topic of
    ``partitions`` with that many partitions, every one with a leader.

    CreateTopics answers when the controller has the topic, not when brokers serve it: on a busy
    cluster (one still deleting thousands of partitions) a consumer that subscribes at once finds
    no such topic, and faust then ignores the topic until the next rebalance, so the worker sat idle.

    >>> seen = iter([{}, {"t": [-1, 1]}, {"t": [1, 1]}])
    >>> wait_until_visible(lambda: next(seen), {"t": 2}, 10.0, clock=lambda: 0.0, sleep=lambda s: None)
    """
    deadline = clock() + timeout_s
    while True:
        why = ""
        try:
            meta = leaders()
        except Exception as exc:  # noqa: BLE001 - the admin client raises KafkaException; retried until the deadline
            meta, why = {}, f" ({exc})"
        waiting = sorted(name for name, n in partitions.items()
                         if len(meta.get(name, [])) < n or any(leader < 0 for leader in meta.get(name, [])))
        if not waiting:
            return
        if clock() >= deadline:
            raise TemporaryError(f"topics created but not served by the brokers after {timeout_s:.0f}s: "
                                 f"{', '.join(waiting)}{why}", delay=5.0)
        log.info("waiting for the brokers to serve %s", ", ".join(waiting))
        sleep(0.5)


def _leaders(admin: Any) -> dict[str, list[int]]:
    """Topic -> each partition's leader (-1: none), from the cluster's metadata."""
    return {name: [p.leader for p in t.partitions.values()] for name, t in admin.list_topics(timeout=5).topics.items()}
