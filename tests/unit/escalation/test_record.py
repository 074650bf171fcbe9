"""The structured escalation record: versioned, JSON-ready, self-contained."""

from __future__ import annotations

import json

from guardian.escalation.summary import EVIDENCE_KEPT, SCHEMA, SCHEMA_VERSION, Links, build_record
from tests.unit.escalation.records import T0, detection, quarantine


def test_record_has_schema_version_ids_detection_actions_and_links():
    rec = build_record(quarantine(), detection(), event="quarantined", now=T0 + 1, links=Links("https://g"))
    assert rec["schema"] == SCHEMA and rec["schema_version"] == SCHEMA_VERSION == 1
    assert rec["quarantine_id"] == "q-7f3a" and rec["quarantine"]["id"] == "q-7f3a"
    assert rec["id"].startswith("q-7f3a:quarantined:")
    assert rec["event"] == "quarantined" and rec["status"] == "trigger"
    assert rec["time"] == "2023-11-14T22:13:21Z"
    assert rec["detection"]["signature"] == "runaway_producer" and rec["detection"]["ratio"] == 43.8
    assert rec["actions"][0]["kind"] == "quota" and rec["actions"][0]["idempotency_key"] == "quota:abc"
    assert rec["links"] == {"quarantine": "https://g/v1/quarantines/q-7f3a",
                            "appeal": "https://g/v1/quarantines/q-7f3a/appeal",
                            "release": "https://g/v1/quarantines/q-7f3a/release"}
    assert set(rec["summary"]) == {"headline", "text"}


def test_record_round_trips_through_json_unchanged():
    rec = build_record(quarantine(), detection(), event="quarantined", now=T0)
    assert json.loads(json.dumps(rec)) == rec


def test_evidence_is_capped_but_counted():
    rec = build_record(quarantine(), detection(), event="quarantined", now=T0)
    assert rec["detection"]["evidence_count"] == 40
    assert len(rec["detection"]["evidence"]) == EVIDENCE_KEPT
    assert rec["detection"]["evidence"][-1] == detection()["evidence"][-1]


def test_terminal_events_resolve():
    for event in ("released", "expired"):
        assert build_record(quarantine(), detection(), event=event, now=T0)["status"] == "resolve"
    assert build_record(quarantine(), detection(), event="escalated", now=T0)["status"] == "trigger"


def test_delivery_ids_differ_per_event_and_time_but_are_deterministic():
    a = build_record(quarantine(), detection(), event="quarantined", now=T0)["id"]
    assert a == build_record(quarantine(), detection(), event="quarantined", now=T0)["id"]
    assert a != build_record(quarantine(), detection(), event="quarantined", now=T0 + 1)["id"]
    assert a != build_record(quarantine(), detection(), event="released", now=T0)["id"]


def test_quarantine_ids_are_url_quoted_in_links():
    rec = build_record(quarantine(id="q/1 ?x"), detection(), event="quarantined", now=T0, links=Links("https://g"))
    assert rec["links"]["appeal"] == "https://g/v1/quarantines/q%2F1%20%3Fx/appeal"


def test_a_record_without_detection_still_builds():
    rec = build_record(quarantine(), None, event="expired", now=T0)
    assert rec["detection"] is None and rec["summary"]["headline"].startswith("[guardian] EXPIRED")
