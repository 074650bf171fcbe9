"""Sending escalations off the action path.

``submit`` never blocks and never raises: it puts the escalation on a bounded
queue per channel and returns; a full queue drops the escalation for that
channel and counts the drop. One worker thread per channel sends with
retries, so a channel that hangs or fails only delays its own queue, never
an action and never another channel. Nothing here can undo an action: the
dispatcher only reads the records the engine hands it.

Wire it to the engine with :class:`EngineEscalationHook` (``ActionEngine(on_event=hook)``).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from guardian.escalation.summary import Escalation, Links, escalation_for
from guardian.escalation.senders import Attempt, Channel, Delivery, HttpSender, RetryPolicy, deliver

log = logging.getLogger(__name__)

# outcome: "sent" | "failed" | "dropped" | "retried" | "abandoned"
OutcomeHook = Callable[[str, str], None]
OUTCOMES = ("sent", "failed", "dropped", "retried", "abandoned")


@dataclass
class ChannelStats:
    submitted: int = 0
    sent: int = 0
    failed: int = 0      # gave up after retries, or a non-retryable answer
    dropped: int = 0     # the queue was full at submit
    retried: int = 0     # attempts after the first
    abandoned: int = 0   # still queued when the dispatcher stopped


class _Lane:
    def __init__(self, channel: Channel, size: int, rng: random.Random) -> None:
        self.channel = channel
        self.queue: queue.Queue[Escalation] = queue.Queue(maxsize=size)
        self.stats = ChannelStats()
        self.rng = rng
        self.thread: threading.Thread | None = None
        self.last_error: str | None = None


class EscalationDispatcher:
    """Bounded, per-channel background delivery of escalations.

    ``sleep`` defaults to an interruptible wait (``stop`` cuts a backoff short);
    ``clock`` stamps signatures; ``seed`` makes the jitter reproducible;
    ``sender_factory`` builds one :class:`HttpSender` per worker.
    """

    def __init__(self, channels: Sequence[Channel], *, retry: RetryPolicy | None = None, queue_size: int = 256,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] | None = None,
                 seed: int = 0, sender_factory: Callable[[RetryPolicy], HttpSender] | None = None,
                 on_outcome: OutcomeHook | None = None) -> None:
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"one channel per name, got {names}")
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._stopping = threading.Event()
        self._sleep = sleep or (lambda s: self._stopping.wait(s))
        self._sender_factory = sender_factory or (lambda p: HttpSender(timeout_s=p.timeout_s))
        self._on_outcome = on_outcome
        self._lock = threading.Lock()
        self._lanes = [_Lane(c, queue_size, random.Random(seed * 1000 + i)) for i, c in enumerate(channels)]
        self._started = False

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "EscalationDispatcher":
        if self._started:
            return self
        self._started = True
        for lane in self._lanes:
            lane.thread = threading.Thread(target=self._work, args=(lane,), daemon=True,
                                           name=f"escalation-{lane.channel.name}")
            lane.thread.start()
        return self

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queue is empty and no send is in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # unfinished_tasks counts queued items plus the one a worker is sending.
            if all(lane.queue.unfinished_tasks == 0 for lane in self._lanes):
                return True
            time.sleep(0.01)
        return False

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Let the queues drain for up to ``drain_timeout_s``, then stop; what is left is ``abandoned``."""
        if self._started:
            self.flush(drain_timeout_s)
        self._stopping.set()
        for lane in self._lanes:
            if lane.thread is not None:
                lane.thread.join(timeout=self.retry.timeout_s + 1.0)
            while True:
                try:
                    lane.queue.get_nowait()
                except queue.Empty:
                    break
                lane.queue.task_done()
                self._count(lane, "abandoned")
        self._started = False

    def __enter__(self) -> "EscalationDispatcher":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the action path ----------------------------------------------------------------------
    def submit(self, esc: Escalation) -> int:
        """Queue ``esc`` for every channel that wants it; never blocks. Returns how many queued it."""
        queued = 0
        for lane in self._lanes:
            try:
                if not lane.channel.accepts(esc):
                    continue
                lane.queue.put_nowait(esc)
            except queue.Full:
                self._count(lane, "dropped")
                log.warning("escalation queue of %s full: dropped %s", lane.channel.name, esc.delivery_id)
                continue
            except Exception:  # noqa: BLE001 - a broken channel filter must not reach the action path
                log.exception("escalation channel %s refused %s", lane.channel.name, esc.delivery_id)
                continue
            with self._lock:
                lane.stats.submitted += 1
            queued += 1
        return queued

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {lane.channel.name: {**vars(lane.stats), "queued": lane.queue.qsize(),
                                        "last_error": lane.last_error} for lane in self._lanes}

    # -- workers ------------------------------------------------------------------------------
    def _count(self, lane: _Lane, outcome: str, n: int = 1) -> None:
        with self._lock:
            setattr(lane.stats, outcome, getattr(lane.stats, outcome) + n)
        if self._on_outcome is not None and n:
            try:
                for _ in range(n):
                    self._on_outcome(lane.channel.name, outcome)
            except Exception:  # noqa: BLE001 - metrics must not kill a worker
                log.exception("escalation outcome hook failed")

    def _work(self, lane: _Lane) -> None:
        sender = self._sender_factory(self.retry)
        try:
            while not self._stopping.is_set():
                try:
                    esc = lane.queue.get(timeout=0.05)
                except queue.Empty:
                    continue
                try:
                    result = self._send(lane, sender, esc)
                    self._count(lane, "retried", max(0, result.attempts - 1))
                    if result.ok:
                        self._count(lane, "sent")
                    else:
                        self._count(lane, "failed")
                        with self._lock:
                            lane.last_error = result.reason
                        log.warning("escalation %s to %s failed after %d attempt(s): %s", esc.delivery_id,
                                    lane.channel.name, result.attempts, result.reason)
                finally:
                    lane.queue.task_done()
        finally:
            sender.close()

    def _send(self, lane: _Lane, sender: HttpSender, esc: Escalation) -> Delivery:
        def once():
            # Built per attempt: a signed webhook gets a fresh timestamp on every retry.
            return sender.send(lane.channel.request(esc, self._clock()))

        try:
            return deliver(once, self.retry, self._sleep, lane.rng, stopping=self._stopping.is_set)
        except Exception as exc:  # noqa: BLE001 - a bug in one channel must not kill its worker
            log.exception("escalation channel %s crashed on %s", lane.channel.name, esc.delivery_id)
            return Delivery(ok=False, attempts=1, last=Attempt(None, error=f"channel error: {type(exc).__name__}"))


class EngineEscalationHook:
    """``ActionEngine(on_event=EngineEscalationHook(dispatcher, links))``.

    Builds the record from the quarantine's plain dict (``to_dict()``) and submits
    it. Never raises: a record that cannot be built is logged and counted.
    """

    def __init__(self, dispatcher: EscalationDispatcher, links: Links | None = None,
                 clock: Callable[[], float] = time.time, events: Sequence[str] | None = None) -> None:
        self.dispatcher, self.links, self.clock = dispatcher, links, clock
        self.events = frozenset(events) if events is not None else None
        self.build_failures = 0

    def __call__(self, event: str, quarantine: Any, decision: Any = None) -> None:
        if self.events is not None and event not in self.events:
            return
        try:
            q: Mapping[str, Any] = quarantine.to_dict() if hasattr(quarantine, "to_dict") else dict(quarantine)
            self.dispatcher.submit(escalation_for(q, None, event=event, now=self.clock(), links=self.links))
        except Exception:  # noqa: BLE001 - escalation never blocks or undoes an action
            self.build_failures += 1
            log.exception("could not build the escalation for %s (%s)", getattr(quarantine, "id", "?"), event)
