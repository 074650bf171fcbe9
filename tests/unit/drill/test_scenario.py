"""Drill scenario files: the shipped ones load, mistakes are refused with the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from guardian_dev.drill.report import benign_stats, headline, incident_stats
from guardian_dev.drill.runner import Incident, RunContext, guardian_env, policy_file_for
from guardian_dev.drill.scenario import load_scenario, parse_scenario
from guardian_dev.stack import Endpoints
from guardian.errors import ConfigError
from guardian.policy.config import load_policy
from guardian.settings import GuardianSettings

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = sorted((ROOT / "configs" / "scenarios").glob("drill-*.yaml"))

MINIMAL = {"name": "x", "tenants": [
    {"name": "tenant-b", "clients": [{"kind": "producer", "rate": 10}]},
    {"name": "tenant-a", "role": "runaway", "clients": [
        {"kind": "producer", "rate": 10, "runaway": {"pattern": "step", "factor": 10}}]}]}


def test_there_are_shipped_drill_scenarios_covering_every_pattern() -> None:
    patterns = {c.runaway.pattern for p in SHIPPED for t in load_scenario(p).tenants for c in t.clients if c.runaway}
    assert patterns == {"step", "ramp", "retry_storm", "rewind", "rebalance_storm", "partition_storm"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_each_shipped_scenario_gives_a_valid_policy(path: Path, tmp_path: Path) -> None:
    sc = load_scenario(path)
    policy = load_policy(policy_file_for(sc, tmp_path / "p.yaml", client_prefix="drill-abc-"))
    assert all(p.match.client_ids == ["drill-abc-*"] for p in policy.policies)
    if sc.guardian.policy.evidence_s is not None:
        assert all(p.ladder[0].evidence_s == sc.guardian.policy.evidence_s for p in policy.policies)


def test_the_guardian_in_a_drill_runs_at_its_shipped_metric_resolution_unless_the_scenario_sets_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drills measure what a user gets: no interval in the scenario, no interval in the guardian's environment."""
    def env_of(data: dict) -> dict[str, str]:
        ctx = RunContext(scenario=parse_scenario(data), mode="on", run_id="abc", endpoints=Endpoints(), out_dir=tmp_path)
        return guardian_env(ctx).env

    env = env_of(MINIMAL)
    assert not any(k.startswith("GUARDIAN_INGEST__") and k.endswith("_INTERVAL_S") for k in env)
    for key in [k for k in list(os.environ) if k.startswith("GUARDIAN_")]:
        monkeypatch.delenv(key)
    ingest = GuardianSettings().ingest
    assert (ingest.scrape_interval_s, ingest.admin_interval_s) == (1.0, 2.0)

    slow = env_of({**MINIMAL, "guardian": {"scrape_interval_s": 10}})
    assert slow["GUARDIAN_INGEST__SCRAPE_INTERVAL_S"] == "10.0" and "GUARDIAN_INGEST__ADMIN_INTERVAL_S" not in slow
    shipped = {p.name: load_scenario(p).guardian for p in SHIPPED}
    assert not [name for name, g in shipped.items() if (g.scrape_interval_s, g.admin_interval_s) != (None, None)]


@pytest.mark.parametrize("change, needle", [
    (lambda d: d["tenants"][0]["clients"][0].update(colour="red"), "colour"),
    (lambda d: d["tenants"][1]["clients"][0]["runaway"].update(pattern="rewind"), "rewind"),
    (lambda d: d["tenants"].pop(1), "runaway"),
    (lambda d: d["tenants"][1].update(role="benign"), "benign"),
    (lambda d: d.update(repeats=0), "repeats"),
    (lambda d: d["tenants"][1]["clients"][0].update(payload="zeros"), "payload"),
    (lambda d: d["tenants"][1]["clients"][0].update(kind="admin", runaway={"pattern": "deploy"}), "surge pattern"),
    (lambda d: d["tenants"][1].update(role="surge") or d["tenants"][1]["clients"][0].update(
        runaway=None, surge={"pattern": "deploy"}), "deploy needs a client of kind admin"),
    (lambda d: d["tenants"][1].update(role="surge") or d["tenants"][1]["clients"][0].update(
        kind="admin", runaway=None, surge={"pattern": "deploy", "every_s": 30, "spread_s": 30}),
     r"spread_s \(30\) must be less than every_s \(30\)"),
])
def test_mistakes_are_refused_naming_the_key(change, needle: str) -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    change(data)
    with pytest.raises(ConfigError, match=needle):
        parse_scenario(data, "s.yaml")


def test_random_payloads_cost_a_recompressing_broker_every_byte_and_repeated_ones_do_not() -> None:
    """Why the demo's runaway sends random payloads: its broker recompresses every batch at gzip-9."""
    import zlib

    from guardian_dev.demo import demo_scenario
    from guardian_dev.drill.load import RANDOM_POOL_BYTES, payloads, random_pool

    def gzip9_ratio(fresh: bool) -> float:
        payload = payloads(8000, fresh)
        batch = b"".join(payload() for _ in range(125))    # one 1 MB batch, as the demo's runaway sends
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        return len(c.compress(batch) + c.flush()) / len(batch)

    assert gzip9_ratio(fresh=False) < 0.05    # copies of one payload: deflate matches each with the one before
    assert gzip9_ratio(fresh=True) > 0.99     # nothing to match: the compressor works through every byte
    # random payloads are drawn once and cycled, past any codec's window: consecutive ones differ, and a payload
    # comes back only after RANDOM_POOL_BYTES (16 MB) of others
    fresh = payloads(8000, True)
    first = [fresh() for _ in range(len(random_pool(8000)))]
    assert len(set(first)) == len(first) and len(first) * 8000 >= RANDOM_POOL_BYTES
    assert fresh() == first[0] and random_pool(8000) is random_pool(8000)
    sc = demo_scenario(quick=True)
    assert sc.broker is not None and sc.broker.compression_type == "gzip"
    runaway = [c for t in sc.tenants for c in t.clients if c.runaway and c.kind == "producer"]
    assert runaway and all(c.payload == "random" for c in runaway)
    assert parse_scenario(MINIMAL).tenants[0].clients[0].payload == "repeated"   # the default


class _Rec:
    def __init__(self, name, tenant, role, kind, acks):
        self.name, self.tenant, self.role, self.kind, self.acks = name, tenant, role, kind, acks
        self.perf, self.errors, self.workload = [], 0, {"client_id": name}


class _Ctx:
    def __init__(self, recorders, incidents, scenario, quarantines=(), detections=()):
        self.recorders, self.incidents, self.scenario = recorders, incidents, scenario
        self.quarantines, self.detections, self.notes = list(quarantines), list(detections), []


def test_report_phases_latency_and_timings_from_recorded_data() -> None:
    sc = parse_scenario({**MINIMAL, "repeats": 1, "phases": {"before_s": 30, "during_s": 20, "after_s": 10}})
    onset = 1000.0
    inc = Incident(0, onset, onset + 20, client_ids={"run-a"}, tenant="tenant-a", pattern="step")
    benign = _Rec("b1", "tenant-b", "benign", "producer",
                  [(onset - 20 + i * 0.1, 1000, 0.010) for i in range(200)]      # before: 10 ms
                  + [(onset + i * 0.1, 1000, 0.030) for i in range(200)])        # during: 30 ms
    runaway = _Rec("run-a", "tenant-a", "runaway", "producer", [(onset + i * 0.01, 10_000, 0.1) for i in range(500)])
    q = {"id": "q1", "workload": {"client_id": "run-a"}, "state": "released", "dry_run": False,
         "detection": {"signature": "runaway_producer"},
         "actions": [{"kind": "quota", "params": {}, "status": "reverted",
                      "history": [{"ts": onset + 6.0, "status": "applied"}, {"ts": onset + 6.5, "status": "verified"}]}]}
    det = {"workload": {"client_id": "run-a"}, "signature": "runaway_producer", "published_at": onset + 5.0,
           "ts": onset + 3.5}
    ctx = _Ctx([benign, runaway], [inc], sc, [q], [det])
    b = benign_stats(ctx)["tenant-b"]
    assert b["before"]["p99_ms"] == pytest.approx(10.0)
    assert b["during"]["p99_ms"] == pytest.approx(30.0)
    assert b["p99_ratio_during_vs_before"] == pytest.approx(3.0)
    i = incident_stats(ctx)[0]
    assert i["onset_to_detection_s"] == pytest.approx(5.0)
    # the detector fired on the sample of onset + 3.5 s; publishing took the other 1.5 s
    assert (i["onset_to_detector_fired_s"], i["fired_to_published_s"]) == (pytest.approx(3.5), pytest.approx(1.5))
    assert i["onset_to_verified_action_s"] == pytest.approx(6.5)
    assert {"onset_to_verified_action_p50_s", "onset_to_verified_action_p95_s", "benign_p99_ratio_on",
            "benign_p99_ratio_off", "false_actions"} <= set(headline({}))


def test_a_principal_wide_quarantine_counts_for_its_partition_storm_incident() -> None:
    """A partition storm's quarantine names only the principal: the incident is matched by signature."""
    sc = parse_scenario({**MINIMAL, "repeats": 1, "phases": {"before_s": 30, "during_s": 20, "after_s": 10}})
    onset = 1000.0
    inc = Incident(0, onset, onset + 20, client_ids={"run-admin"}, tenant="tenant-a", pattern="partition_storm",
                   signature_only="partition_storm")
    q = {"id": "q1", "workload": {"principal": "User:tenant-a"}, "state": "released", "dry_run": False,
         "detection": {"signature": "partition_storm"},
         "actions": [{"kind": "quota", "params": {"controller_mutation_rate": 2.0}, "status": "reverted",
                      "history": [{"ts": onset + 7.0, "status": "applied"}, {"ts": onset + 7.2, "status": "verified"}]}]}
    other = {**q, "id": "q2", "detection": {"signature": "runaway_producer"},
             "actions": [{**q["actions"][0], "history": [{"ts": onset + 1.0, "status": "verified"}]}]}
    det = {"id": "d1", "workload": {"principal": "User:tenant-a"}, "signature": "partition_storm",
           "published_at": onset + 6.0, "ts": onset + 6.0}
    ctx = _Ctx([], [inc], sc, [other, q], [det])
    ctx.decisions = [{"detection_id": "d1", "outcome": "insufficient_evidence", "reason": "needs 4s"},
                     {"detection_id": "d1", "outcome": "quarantined", "reason": "matched"},
                     {"detection_id": "elsewhere", "outcome": "no_policy", "reason": "-"}]
    i = incident_stats(ctx)[0]
    assert i["decisions"] == {"insufficient_evidence": 1, "quarantined": 1}
    assert i["onset_to_verified_action_s"] == pytest.approx(7.2)
    assert i["action"] == {"kind": "quota", "params": {"controller_mutation_rate": 2.0}}


def test_a_tenant_wide_quarantine_counts_in_the_incident_where_it_acted_not_in_every_one() -> None:
    """Each incident of a deploy surge holds the tenant's quarantines: the counts go by when it watched
    and when it acted (a watch opened in the first incident, throttled in the second, is one of each)."""
    sc = parse_scenario({**MINIMAL, "repeats": 2, "phases": {"before_s": 30, "during_s": 40, "after_s": 10}})
    incs = [Incident(k, 1000.0 + 80 * k, 1040.0 + 80 * k, client_ids={f"run-deploy-r{k}"}, tenant="tenant-a",
                     pattern="deploy", role="surge", signature_only="partition_storm") for k in range(2)]
    base = {"workload": {"principal": "User:tenant-a"}, "dry_run": False, "detection": {"signature": "partition_storm"}}
    first = {**base, "id": "q1", "state": "released", "created_at": 1002.0,
             "actions": [{"kind": "quota", "params": {}, "history": [{"ts": 1003.0, "status": "verified"}]}]}
    later = {**base, "id": "q2", "state": "released", "created_at": 1041.0,
             "history": [{"from": "watching", "to": "active", "ts": 1085.0}],
             "actions": [{"kind": "quota", "params": {}, "history": [{"ts": 1085.0, "status": "applied"}]}]}
    stats = incident_stats(_Ctx([], incs, sc, [first, later], []))
    assert [(i["throttles"], i["watches"]) for i in stats] == [(1, 1), (1, 0)]


def test_an_incident_holds_its_quarantine_by_identity_or_by_the_storms_signature() -> None:
    storm = Incident(0, 0.0, 30.0, client_ids={"run-admin"}, tenant="tenant-a", signature_only="partition_storm")
    producer = Incident(1, 0.0, 30.0, client_ids={"run-a"})
    ledger_record = {"workload": {"principal": "User:tenant-a"}, "detection": {"signature": "partition_storm"}}
    api_detail = {"workload": {"principal": "User:tenant-a"}, "evidence": {"signature": "partition_storm"}}
    api_list_item = {"workload": {"principal": "User:tenant-a"}}
    assert storm.holds(ledger_record) and storm.holds(api_detail) and not storm.holds(api_list_item)
    # another tenant throttled for a partition storm is not this incident's (a false action), nor is a
    # broker's own series, which names no tenant
    assert not storm.holds({**ledger_record, "workload": {"principal": "User:tenant-b"}})
    assert not storm.matches({"broker": "b1"}, "partition_storm")
    assert not producer.holds(ledger_record)
    assert producer.holds({"workload": {"principal": "User:tenant-a", "client_id": "run-a"}})
