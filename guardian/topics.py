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
from dataclasses import dataclass, field
from typing import Any

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
    return created
