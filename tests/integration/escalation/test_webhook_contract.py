"""Signed generic webhook contract: what a receiver sees and how it checks the signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from guardian.escalation.summary import SCHEMA_VERSION
from guardian.escalation.dispatch import EscalationDispatcher
from guardian.escalation.senders import SignedWebhookChannel, verify_signature
from tests.integration.escalation.conftest import FAST_RETRY
from tests.integration.escalation.helpers import escalation

SECRET = "whsec-contract-test"


def receiver_accepts(req) -> bool:
    """The check a receiver does, written out with hmac (not the guardian's own helper)."""
    ts = req.headers["x-guardian-timestamp"]
    want = "v1=" + hmac.new(SECRET.encode(), ts.encode() + b"." + req.body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(ts)) <= 300
    return fresh and hmac.compare_digest(want, req.headers["x-guardian-signature"])


def test_webhook_carries_the_versioned_record_with_a_valid_signature(receiver):
    esc = escalation()
    with EscalationDispatcher([SignedWebhookChannel(receiver.url("/hook"), SECRET)], retry=FAST_RETRY) as d:
        d.submit(esc)
        assert d.flush()
    [got] = receiver.on("/hook")
    assert receiver_accepts(got)
    assert verify_signature(SECRET, got.body, got.headers["x-guardian-timestamp"],
                            got.headers["x-guardian-signature"], now=time.time())
    record = got.json()
    assert record == json.loads(json.dumps(esc.record))
    assert record["schema_version"] == SCHEMA_VERSION and record["quarantine_id"] == "q-contract-1"
    assert {"detection", "actions", "links", "summary", "blast_radius"} <= set(record)
    assert got.headers["x-guardian-event"] == "quarantined"
    assert got.headers["x-guardian-delivery"] == esc.delivery_id


def test_a_tampered_body_or_wrong_secret_fails_the_receivers_check(receiver):
    with EscalationDispatcher([SignedWebhookChannel(receiver.url("/hook"), "not-the-shared-secret")],
                              retry=FAST_RETRY) as d:
        d.submit(escalation())
        assert d.flush()
    [got] = receiver.on("/hook")
    assert not receiver_accepts(got)
    assert not verify_signature(SECRET, got.body + b" ", got.headers["x-guardian-timestamp"],
                                got.headers["x-guardian-signature"], now=time.time())


def test_retries_after_5xx_are_re_signed_and_keep_the_delivery_id(receiver):
    receiver.script("/hook", [502, 500])
    with EscalationDispatcher([SignedWebhookChannel(receiver.url("/hook"), SECRET)], retry=FAST_RETRY) as d:
        d.submit(escalation())
        assert d.flush()
    got = receiver.on("/hook")
    assert [r.status for r in got] == [502, 500, 200]
    assert all(receiver_accepts(r) for r in got)
    assert len({r.headers["x-guardian-delivery"] for r in got}) == 1  # receivers de-duplicate on it
    assert d.stats()["webhook"]["sent"] == 1
