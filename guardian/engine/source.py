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

**This process's own detections skip the broker** (``LocalDetections``): the worker
hands each detection record to its engine as it publishes it. Through Kafka a
detection waits for its exactly-once transaction to commit (up to the 1 s commit
interval, then the commit itself) and for the engine's fetch, all on the brokers
the runaway is overloading: in the drills the detection reached the engine 1.3-4 s
after it was published. The record still goes to ``guardian.detections`` (for a
leader elsewhere, the audit and replays); the copy that arrives that way after its
local twin is skipped (same id and time). With several workers the lease holder's
own share is the fast part; the others' detections come through Kafka, read
uncommitted: the engine takes a detection as soon as the broker has it, not after
the worker's transaction commits. A detection of a transaction that aborts (its
worker died) is computed again from the same samples by the worker that takes over;
the engine handling both is the redelivery case above.
Offsets are committed asynchronously: a synchronous commit to an overloaded group
coordinator stalled the engine's loop for as long as a benign tenant's produce.
"""

from __future__ import annotations

import json
import logging
import queue
import time
from collections import OrderedDict
from typing import Any, Callable

from guardian.model.detection import Detection
from guardian.errors import TemporaryError

log = logging.getLogger(__name__)


class LocalDetections:
    """Detection records this process's worker published, for this process's engine (thread-safe).

    Bounded: when the engine does not take them (it does not hold the lease, or is stuck) the oldest
    wait and new ones are dropped, counted in ``dropped`` and told to ``on_drop`` (the process's
    ``guardian_engine_local_detections_dropped_total``); Kafka still delivers every one, later."""

    def __init__(self, maxsize: int = 10_000, on_drop: Callable[[], None] | None = None) -> None:
        self._q: queue.Queue[bytes] = queue.Queue(maxsize)
        self.dropped = 0
        self._on_drop = on_drop

    def offer(self, value: bytes) -> None:
        try:
            self._q.put_nowait(value)
        except queue.Full:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            if self.dropped == 1:
                log.warning("local detection queue full (%d): the engine is not taking them; they come "
                            "through Kafka instead (guardian_engine_local_detections_dropped_total)", self._q.maxsize)

    def take(self) -> list[bytes]:
        """What is waiting now (never waits: the source polls Kafka in between)."""
        out: list[bytes] = []
        try:
            while True:
                out.append(self._q.get_nowait())
        except queue.Empty:
            return out

    def clear(self) -> None:
        self.take()


class KafkaDetectionSource:
    # with local detections, Kafka is polled in slices this long so a local one waits at most this
    LOCAL_SLICE_S = 0.05
    SEEN_MAX = 20_000   # detections remembered to skip their second copy (a few minutes of detections)

    def __init__(self, client_config: dict[str, Any], topic: str = "guardian.detections",
                 group_id: str = "guardian-engine", max_batch: int = 500,
                 local: LocalDetections | None = None) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer({"group.id": group_id, "enable.auto.commit": False,
                                   "auto.offset.reset": "earliest", "client.id": "guardian-engine",
                                   "isolation.level": "read_uncommitted", **client_config})
        self.topic = topic
        self._subscribed = False
        self._pending = False
        self.max_batch = max_batch
        self.local = local
        self._seen: OrderedDict[tuple[str, float], None] = OrderedDict()

    def poll(self, timeout_s: float) -> list[Detection]:
        """The detections that arrived, waiting up to ``timeout_s`` for the first: this process's own
        (at once) and Kafka's, each detection once."""
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + timeout_s
        try:
            if not self._subscribed:
                self._consumer.subscribe([self.topic])
                self._subscribed = True
            if self._pending:
                self._commit()
            out = self._decode_local(self.local.take()) if self.local is not None else []
            while True:
                remaining = max(0.0, deadline - time.monotonic())
                wait = 0.0 if out else min(self.LOCAL_SLICE_S, remaining) if self.local is not None else remaining
                out += self._decode_kafka(self._consumer.consume(self.max_batch, timeout=wait))
                if out or remaining <= wait:
                    return out
                out = self._decode_local(self.local.take())   # type: ignore[union-attr]
        except KafkaException as exc:
            raise TemporaryError(f"detections: {exc}") from exc

    def _first_copy(self, det: Detection) -> bool:
        """True the first time this detection (id and time) comes, by either way; False for its twin."""
        key = (det.id, det.ts)
        if key in self._seen:
            del self._seen[key]
            return False
        self._seen[key] = None
        if len(self._seen) > self.SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    def _decode(self, value: bytes, where: str) -> Detection | None:
        """The detection in a record, or None (logged) when it does not decode."""
        try:
            return Detection.from_dict(json.loads(value))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("undecodable detection %s: %s", where, exc)
            return None

    def _decode_local(self, values: list[bytes]) -> list[Detection]:
        return [d for v in values if (d := self._decode(v, "handed over locally")) and self._first_copy(d)]

    def _decode_kafka(self, msgs: list[Any]) -> list[Detection]:
        out = []
        records = 0
        for m in msgs:
            if m.error():
                # e.g. the topic not created yet: an event, not a record; nothing to commit for it
                log.warning("detections: %s", m.error())
                continue
            records += 1
            det = self._decode(m.value(), f"at {m.topic()}[{m.partition()}]@{m.offset()}")
            if det is not None and (self.local is None or self._first_copy(det)):
                out.append(det)
        self._pending = self._pending or records > 0
        return out

    def _commit(self, asynchronous: bool = True) -> None:
        from confluent_kafka import KafkaError, KafkaException

        try:
            # asynchronous in the loop (a failed one is covered by the next, or the records come again:
            # harmless, see above); synchronous before standing by, so the leader starts after them
            self._consumer.commit(asynchronous=asynchronous)
        except KafkaException as exc:
            # the offsets are already committed (e.g. after a rebalance): nothing is lost by moving on
            if not (exc.args and exc.args[0].code() == KafkaError._NO_OFFSET):
                raise
        self._pending = False

    def standby(self) -> None:
        """Leave the group (after committing what was handled), so the lease holder's source gets
        every partition; the next ``poll`` joins again. This process's own detections meanwhile are
        dropped on every call: the lease holder reads them in Kafka, and kept here they would be
        acted on, stale, when this process takes the lease."""
        from confluent_kafka import KafkaException

        if self.local is not None:
            self.local.clear()
        if not self._subscribed:
            return
        try:
            if self._pending:
                self._commit(asynchronous=False)
        except KafkaException as exc:
            log.warning("detections: commit before standing by failed (%s); redelivered to the leader", exc)
            self._pending = False
        self._consumer.unsubscribe()
        self._subscribed = False
        self._seen.clear()

    def close(self) -> None:
        self._consumer.close()
