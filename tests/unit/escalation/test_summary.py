"""The human summary: at most 12 lines, a headline that says it all, tenant text quoted as data."""

from __future__ import annotations

import pytest

from guardian.model.detection import Detection
from guardian.escalation.summary import (MAX_LINES, Links, blast_radius, build_record, escalation_for, quote,
                                 summarize)
from tests.unit.escalation.records import T0, detection, quarantine

HOSTILE = 'evil"\n<!channel> *URGENT* `rm -rf /`\r\x1b[31m\u202e\u2028' + "x" * 500


def lines_of(rec) -> list[str]:
    return rec["summary"]["text"].split("\n")


def test_headline_names_who_what_numbers_action_and_quarantine():
    rec = build_record(quarantine(), detection(), event="quarantined", now=T0)
    head = rec["summary"]["headline"]
    assert lines_of(rec)[0] == head
    for part in ('User:"tenant-a"', 'client-id "loader-7"', "runaway_producer", "48.2M", "1.10M", "43.8x",
                 "95s", "quota producer 1.00 MiB/s", "THROTTLED", "q-7f3a"):
        assert part in head, part


def test_body_covers_evidence_action_blast_radius_appeal_and_release():
    links = Links(api_base_url="https://guardian.example.com/", dashboard_url="https://grafana.example/d/q?var-id={id}")
    text = build_record(quarantine(), detection(), event="quarantined", now=T0, links=links)["summary"]["text"]
    assert "Evidence: \"produce_bytes_per_s\" = 48.2M vs baseline 1.10M (43.8x) for 95s; 40 samples" in text
    assert "Action: quota producer 1.00 MiB/s" in text and 'policy "runaway-producers"' in text
    assert 'Blast radius: only client-id "loader-7" of User:"tenant-a"' in text
    assert "Appeal (tenant): POST https://guardian.example.com/v1/quarantines/q-7f3a/appeal" in text
    assert "Release (SRE): POST https://guardian.example.com/v1/quarantines/q-7f3a/release" in text
    assert "Dashboard: https://grafana.example/d/q?var-id=q-7f3a" in text
    assert "expires 2023-11-14T22:43:20Z" in text


def test_without_links_the_summary_still_says_how_to_appeal_and_release():
    text = build_record(quarantine(), detection(), event="quarantined", now=T0)["summary"]["text"]
    assert 'Appeal (tenant): the guardian API, quarantine "q-7f3a"' in text
    assert "Release (SRE):" in text


@pytest.mark.parametrize("n_actions", [0, 1, 3, 9])
@pytest.mark.parametrize("event", ["quarantined", "escalated", "released", "shadow", "awaiting_approval"])
def test_never_more_than_twelve_lines(n_actions, event):
    actions = [{"kind": "acl", "target": {"principal": "User:tenant-a", "topics": ",".join(
        f"tenant-a.t{i}-{j}" for j in range(30))}, "params": {"operations": ["READ", "WRITE"]}}
        for i in range(n_actions)]
    links = Links(api_base_url="https://g", dashboard_url="https://d/{id}", runbook_url="https://r")
    rec = build_record(quarantine(desired=actions, workload={"principal": "User:" + HOSTILE, "client_id": HOSTILE,
                                                             "group": HOSTILE, "topic": HOSTILE, "pod": HOSTILE}),
                       detection(metric=HOSTILE, detector=HOSTILE), event=event, now=T0, links=links)
    ls = lines_of(rec)
    assert 1 <= len(ls) <= MAX_LINES
    assert all(len(line) <= 300 for line in ls)


def test_hostile_client_ids_and_topics_cannot_add_lines_or_break_out_of_quotes():
    q = quarantine(workload={"principal": "User:tenant-a", "client_id": HOSTILE},
                   desired=[{"kind": "acl", "target": {"principal": "User:tenant-a", "topics": "a`b"},
                             "params": {"operations": ["WRITE"]}}])
    rec = build_record(q, detection(workload=q["workload"]), event="quarantined", now=T0)
    text = rec["summary"]["text"]
    assert "\r" not in text and "\x1b" not in text and "\u202e" not in text and "\u2028" not in text
    assert "`" not in text  # nothing can open a code span
    assert 'client-id "evil\\"\\n<!channel> *URGENT* \\x60rm -rf /\\x60\\r\\x1b[31m\\u202e\\u2028' in text
    assert lines_of(rec)[1].startswith("Who: ")  # the client-id's newline did not start a line
    # The JSON record keeps the raw value: JSON is its own quoting.
    assert rec["workload"]["client_id"] == HOSTILE


def test_quote_caps_length_and_escapes():
    assert quote("a" * 70) == '"' + "a" * 64 + '..."'
    assert quote(None) == '""'
    assert quote('\\') == '"\\\\"'
    assert quote("\u00e9t\u00e9") == '"\u00e9t\u00e9"'  # printable non-ASCII stays readable


def test_events_change_the_verb_and_resolve_events_drop_appeal_lines():
    det = detection()
    assert "WOULD HAVE THROTTLED (dry-run)" in build_record(quarantine(dry_run=True), det, event="shadow",
                                                            now=T0)["summary"]["headline"]
    assert "APPROVAL NEEDED" in build_record(quarantine(), det, event="awaiting_approval", now=T0)["summary"]["headline"]
    released = build_record(quarantine(state="released"), det, event="released", now=T0)
    assert released["summary"]["headline"].startswith("[guardian] RELEASED ")
    assert "Appeal" not in released["summary"]["text"] and "Reverted: quota" in released["summary"]["text"]


def test_dry_run_has_no_blast_radius_and_says_nothing_changed():
    rec = build_record(quarantine(dry_run=True, state="proposed"), detection(), event="shadow", now=T0)
    assert rec["blast_radius"]["text"] == "nothing applied"
    assert "dry-run: nothing was changed on the cluster" in rec["summary"]["text"]


def test_blast_radius_per_action_kind():
    user_wide = blast_radius([{"kind": "quota", "target": {"principal": "User:a"}, "params": {"scope": "user"}}])
    assert user_wide["text"] == 'every client of User:"a" together'
    acl = blast_radius([{"kind": "acl", "target": {"principal": "User:a", "topics": "a.x,a.y"},
                         "params": {"operations": ["WRITE"]}}])
    assert acl["topics"] == ["a.x", "a.y"] and "2 topic(s) only" in acl["text"]
    pod = blast_radius([{"kind": "pod", "target": {"namespace": "ns", "pod": "p"}, "params": {}}])
    assert pod["pods"] == ["ns/p"]


def test_summary_is_rebuilt_identically_from_the_record():
    rec = build_record(quarantine(), detection(), event="quarantined", now=T0, links=Links("https://g"))
    assert summarize(rec) == rec["summary"]["text"]


def test_a_detection_object_and_the_quarantines_own_detection_both_work():
    det = Detection.from_dict(detection())
    a = escalation_for(quarantine(), det, event="quarantined", now=T0)
    b = escalation_for(quarantine(detection=detection()), None, event="quarantined", now=T0)
    assert a.record == b.record
    assert a.dedup_key == "q-7f3a" and not a.resolves


def test_the_summary_says_what_harm_was_seen():
    harm = {"harmful": True, "reason": "pressure",
            "line": "broker b1 under pressure (request handlers 3% idle (line 25%)); this workload has 91% of its load"}
    text = build_record(quarantine(harm=harm), detection(), event="quarantined", now=T0)["summary"]["text"]
    assert "Harm: broker b1 under pressure (request handlers 3% idle (line 25%)); this workload has 91%" in text
    assert len(text.split("\n")) <= MAX_LINES


def test_a_watch_says_no_harm_was_seen_what_it_would_do_and_changes_nothing():
    harm = {"harmful": False, "reason": "none", "line": "no harm seen (b1: request handlers 80% idle); watching"}
    rec = build_record(quarantine(state="watching", harm=harm), detection(), event="watch", now=T0)
    text = rec["summary"]["text"]
    assert rec["summary"]["headline"].startswith("[guardian] WATCHING (no harm seen, not throttled) ")
    assert "Harm: no harm seen (b1: request handlers 80% idle); watching" in text
    assert "Would: quota producer 1.00 MiB/s" in text and "approve to act" in text
    assert rec["blast_radius"]["text"] == "nothing applied" and "Action: quota" not in text
    assert [n["tool"] for n in rec["follow_up"]["next"]][1:3] == ["propose_action", "approve_quarantine"]


def test_a_hostile_harm_line_stays_one_quoted_line():
    rec = build_record(quarantine(harm={"line": HOSTILE}), detection(), event="quarantined", now=T0)
    harm_lines = [line for line in lines_of(rec) if line.startswith("Harm: ")]
    assert len(harm_lines) == 1 and "\n" not in harm_lines[0] and "\x1b" not in harm_lines[0]
