"""Detections from ``guardian.detections`` for ``ActionEngine.run_forever``.

At-least-once: offsets of a batch are committed at the next ``poll``, i.e.
only after the engine handled every detection of it. A detection redelivered
after a crash is harmless: its quarantine id is derived from the detection id
and a workload has at most one open quarantine.

The source joins the engines' consumer group at its first ``poll`` and leaves
it on ``standby``, which the engine calls while it does not hold the lease.
Every ``guardian run`` process has a source, and a standby that subscribed
without polling would be handed its share of the detections' partitions and
sit on them until ``max.poll.interval.ms`` (5 min) expelled it: a drill with
two workers saw the leader act minutes late on half the detections.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from guardian.model.detection import Detection
from guardian.errors import TemporaryError

log = logging.getLogger(__name__)


class KafkaDetectionSource:
    def __init__(self, client_config: dict[str, Any], topic: str = "guardian.detections",
                 group_id: str = "guardian-engine", max_batch: int = 500) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer({"group.id": group_id, "enable.auto.commit": False,
                                   "auto.offset.reset": "earliest", "client.id": "guardian-engine",
                                   **client_config})
        self.topic = topic
        self._subscribed = False
        self._pending = False
        self.max_batch = max_batch

    def poll(self, timeout_s: float) -> list[Detection]:
        from confluent_kafka import KafkaException

        try:
            if not self._subscribed:
                self._consumer.subscribe([self.topic])
                self._subscribed = True
            if self._pending:
                self._commit()
            msgs = self._consumer.consume(self.max_batch, timeout=timeout_s)
        except KafkaException as exc:
            raise TemporaryError(f"detections: {exc}") from exc
        out = []
        records = 0
        for m in msgs:
            if m.error():
                # e.g. the topic not created yet: an event, not a record; nothing to commit for it
                log.warning("detections: %s", m.error())
                continue
            records += 1
            try:
                out.append(Detection.from_dict(json.loads(m.value())))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("undecodable detection at %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), exc)
        self._pending = records > 0
        return out

    def _commit(self) -> None:
        from confluent_kafka import KafkaError, KafkaException

        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            # the offsets are already committed (e.g. after a rebalance): nothing is lost by moving on
            if not (exc.args and exc.args[0].code() == KafkaError._NO_OFFSET):
                raise
        self._pending = False

    def standby(self) -> None:
        """Leave the group (after committing what was handled), so the lease holder's source gets
        every partition; the next ``poll`` joins again."""
        from confluent_kafka import KafkaException

        if not self._subscribed:
            return
        try:
            if self._pending:
                self._commit()
        except KafkaException as exc:
            log.warning("detections: commit before standing by failed (%s); redelivered to the leader", exc)
            self._pending = False
        self._consumer.unsubscribe()
        self._subscribed = False

    def close(self) -> None:
        self._consumer.close()
