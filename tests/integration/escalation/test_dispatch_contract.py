"""A failing or hanging channel never blocks the caller, never delays other channels, and drops are counted."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from guardian.escalation.dispatch import EngineEscalationHook, EscalationDispatcher
from guardian.escalation.senders import AgentChannel, SignedWebhookChannel, SlackChannel
from tests.integration.escalation.conftest import FAST_RETRY
from tests.integration.escalation.helpers import escalation, quarantine


def test_submit_returns_while_the_receiver_is_still_holding_the_first_request(receiver):
    receiver.hold("/slack")
    receiver.script("/slack", [], default=500)  # and it fails once it answers
    d = EscalationDispatcher([SlackChannel(receiver.url("/slack"))], retry=FAST_RETRY, queue_size=16).start()
    try:
        assert d.submit(escalation(qid="q-0")) == 1
        receiver.wait_holding("/slack")  # the worker is stuck inside an HTTP request ...
        queued = [d.submit(escalation(qid=f"q-{i}")) for i in range(1, 6)]
        assert queued == [1] * 5         # ... and the caller still got through every submit
        assert receiver.holding["/slack"] == 1 and d.stats()["slack"]["queued"] == 5
        receiver.release("/slack")
        assert d.flush()
    finally:
        d.stop()
    st = d.stats()["slack"]
    assert (st["submitted"], st["sent"], st["failed"]) == (6, 0, 6)
    assert len(receiver.on("/slack")) == 6 * FAST_RETRY.max_attempts


def test_a_full_queue_drops_and_counts_instead_of_blocking(receiver):
    receiver.hold("/agent")
    outcomes: list[tuple[str, str]] = []
    d = EscalationDispatcher([AgentChannel(receiver.url("/agent"), "t")], retry=FAST_RETRY, queue_size=2,
                             on_outcome=lambda ch, o: outcomes.append((ch, o))).start()
    try:
        d.submit(escalation(qid="q-first"))
        receiver.wait_holding("/agent")
        results = [d.submit(escalation(qid=f"q-{i}")) for i in range(4)]
        assert results == [1, 1, 0, 0]
        assert d.stats()["agent"]["dropped"] == 2
        receiver.release("/agent")
        assert d.flush()
    finally:
        d.stop()
    st = d.stats()["agent"]
    assert (st["submitted"], st["sent"], st["dropped"]) == (3, 3, 2)
    assert outcomes.count(("agent", "dropped")) == 2 and outcomes.count(("agent", "sent")) == 3


def test_a_hanging_channel_does_not_delay_the_others(receiver):
    receiver.hold("/slack")
    d = EscalationDispatcher([SlackChannel(receiver.url("/slack")),
                              SignedWebhookChannel(receiver.url("/hook"), "k")], retry=FAST_RETRY).start()
    try:
        for i in range(3):
            assert d.submit(escalation(qid=f"q-{i}")) == 2
        receiver.wait_for("/hook", 3)    # all three delivered to the webhook ...
        receiver.wait_holding("/slack")  # (its worker may reach the receiver later on a loaded machine)
        assert receiver.holding["/slack"] == 1 and receiver.on("/slack") == []  # ... while Slack still hangs
        receiver.release("/slack")
        assert d.flush()
    finally:
        d.stop()
    assert d.stats()["slack"]["sent"] == 3 and d.stats()["webhook"]["sent"] == 3


def test_stop_abandons_what_is_still_queued_and_counts_it(receiver):
    receiver.hold("/hook")
    retry = replace(FAST_RETRY, timeout_s=1.0, max_attempts=1)
    d = EscalationDispatcher([SignedWebhookChannel(receiver.url("/hook"), "k")], retry=retry).start()
    for i in range(3):
        d.submit(escalation(qid=f"q-{i}"))
    receiver.wait_holding("/hook")
    d.stop(drain_timeout_s=0.0)
    receiver.release("/hook")
    st = d.stats()["webhook"]
    assert st["abandoned"] == 2 and st["queued"] == 0
    assert st["sent"] + st["failed"] == 1  # the one in flight: answered or timed out, never lost silently


def test_the_engine_hook_never_raises_even_when_everything_fails(receiver):
    from guardian.model.quarantine import QState, Quarantine

    receiver.script("/slack", [], default=500)
    d = EscalationDispatcher([SlackChannel(receiver.url("/slack"))], retry=FAST_RETRY, queue_size=1).start()
    hook = EngineEscalationHook(d)
    try:
        q = Quarantine.from_dict({**quarantine("q-engine"), "workload_key": "principal=User:tenant-a|client_id=loader-7",
                                  "state": QState.ACTIVE.value, "updated_at": 0.0, "rung_at": 0.0,
                                  "traffic": 0.0, "throttles": True, "detections": 1, "history": [],
                                  "pending": [], "version": 1})
        for _ in range(5):
            hook("quarantined", q, None)           # queue of 1: most are dropped, none raise
        hook("quarantined", {"no": "id"}, None)    # a record that cannot be built: counted, not raised
        assert hook.build_failures == 1
        assert d.flush()
    finally:
        d.stop()
    st = d.stats()["slack"]
    assert st["submitted"] + st["dropped"] == 5 and st["failed"] == st["submitted"] >= 1
    body = receiver.on("/slack")[0].json()
    assert "q-engine" in body["text"]


def test_outcomes_feed_the_guardian_metrics(receiver):
    metrics_mod = pytest.importorskip("guardian.metrics", reason="guardian.metrics is another engineer's module")
    registry = CollectorRegistry()
    metrics = metrics_mod.GuardianMetrics(registry)
    receiver.script("/agent", [], default=500)

    def feed(channel: str, outcome: str) -> None:
        if outcome in ("sent", "failed"):
            metrics.observe_notification(channel, outcome == "sent")

    with EscalationDispatcher([SlackChannel(receiver.url("/slack")), AgentChannel(receiver.url("/agent"), "t")],
                              retry=FAST_RETRY, on_outcome=feed) as d:
        d.submit(escalation())
        assert d.flush()
    value = lambda ch, res: registry.get_sample_value(  # noqa: E731
        "guardian_escalation_notifications_total", {"channel": ch, "result": res})
    assert value("slack", "ok") == 1.0 and value("agent", "failed") == 1.0
