"""The audit trail: every decision and action step, appended to ``guardian.decisions``.

The ledger writes audit records into a Redis outbox in the same transaction as
the change they describe; ``drain`` moves them to Kafka (JSON values, keyed by
quarantine id, or by workload key for decisions that opened none) and only
then drops them from the outbox. A crash between the two re-sends the same
records after restart: delivery is at-least-once, and every record carries a
deterministic ``id`` (``<kind>:<subject>:<version>``) so readers drop repeats.

Record shapes (all have ``id``, ``ts``, ``type``, ``key``)::

    {"type": "decision",   "decision": Decision.to_dict(), "detection": {...}}
    {"type": "quarantine", "quarantine": Quarantine.to_dict(), "event": "created|approved|..."}
    {"type": "step",       "action": ActionRecord.to_dict(), "quarantine_id": ..., "effect"?: "effective|..."}
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Protocol

from guardian.errors import TemporaryError

log = logging.getLogger(__name__)


def decision_record(decision: Any, detection: Any | None = None) -> dict[str, Any]:
    d = decision.to_dict()
    return {"id": f"decision:{decision.detection_id}:{decision.outcome.value}", "ts": decision.ts,
            "type": "decision", "key": decision.quarantine_id or _wl_key(decision.workload),
            "decision": d, "detection": detection.to_dict() if detection is not None else None}


def quarantine_record(q: Any, event: str, ts: float, by: str = "", reason: str = "") -> dict[str, Any]:
    # The version is the one being written (the ledger bumps it in the same transaction).
    return {"id": f"quarantine:{q.id}:{q.version + 1}", "ts": ts, "type": "quarantine", "key": q.id,
            "event": event, "by": by, "reason": reason, "quarantine": q.to_dict()}


def step_record(rec: Any, ts: float, effect: str | None = None) -> dict[str, Any]:
    """``effect``: the step records a verified throttle's effect (``effective``, ``not_effective``, ...)."""
    out = {"id": f"step:{rec.key}:{rec.version + 1}", "ts": ts, "type": "step", "key": rec.quarantine_id,
           "quarantine_id": rec.quarantine_id, "status": rec.status.value, "action": rec.to_dict()}
    if effect is not None:
        out["effect"] = effect
    return out


def _wl_key(workload: dict[str, str]) -> str:
    from guardian.model.quarantine import workload_key

    return workload_key(workload)


class AuditSink(Protocol):
    def publish(self, records: list[dict[str, Any]]) -> None:
        """Deliver every record durably or raise; partial delivery is fine (readers dedupe)."""


class KafkaAuditSink:
    """Appends audit records to the decisions topic; ``publish`` returns once the broker acked all."""

    def __init__(self, client_config: dict[str, Any], topic: str = "guardian.decisions",
                 timeout_s: float = 15.0) -> None:
        from confluent_kafka import Producer

        conf = {"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                "client.id": "guardian-audit", **client_config}
        self._producer = Producer(conf)
        self.topic = topic
        self._timeout = timeout_s

    def publish(self, records: list[dict[str, Any]]) -> None:
        errors: list[str] = []

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for rec in records:
            self._producer.produce(self.topic, key=str(rec.get("key", "")).encode(),
                                   value=json.dumps(rec, sort_keys=True).encode(), on_delivery=done)
            self._producer.poll(0)
        left = self._producer.flush(self._timeout)
        if left or errors:
            raise TemporaryError(f"audit: {left} records unsent, errors: {errors[:3]}")

    def close(self) -> None:
        self._producer.flush(self._timeout)


def ensure_topic(client_config: dict[str, Any], topic: str, partitions: int = 6,
                 replication_factor: int = -1) -> None:
    """Create the decisions topic if it is missing (compaction off: it is an append-only log)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(dict(client_config))
    md = admin.list_topics(timeout=15)
    if topic in md.topics:
        return
    fut = admin.create_topics([NewTopic(topic, partitions, replication_factor)], operation_timeout=30)[topic]
    try:
        fut.result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise TemporaryError(f"cannot create {topic}: {exc}") from exc


def drain(ledger: Any, sink: AuditSink | None, crash_at: Callable[[str], None] | None = None,
          batch: int = 500) -> int:
    """Move the outbox to ``sink``; returns how many records went. Only the lease holder drains."""
    if sink is None:
        return 0
    sent = 0
    while True:
        records = ledger.outbox_peek(batch)
        if not records:
            return sent
        sink.publish(records)
        if crash_at is not None:
            crash_at("audit")
        ledger.outbox_ack(len(records))
        sent += len(records)
        if len(records) < batch:
            return sent
