"""Issue 15's drill: a stated broker capacity, benign surges (watch at most), the contained/uncontained split."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from guardian_dev.kafka import BrokerCapacity, KafkaState, LocalKafka
from guardian_dev.drill.load import Recorder
from guardian_dev.drill.report import (benign_stats, broker_line, false_actions, incident_stats, settled_noise,
                                       summarize)
from guardian_dev.drill.runner import Incident, _restarted
from guardian_dev.drill.scenario import load_scenario, parse_scenario
from guardian.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
SCENARIOS = ROOT / "configs" / "scenarios"

BENIGN = {"name": "tenant-b", "clients": [{"kind": "producer", "rate": 10}]}
SURGE = {"name": "x", "tenants": [BENIGN, {"name": "tenant-a", "role": "surge", "clients": [
    {"kind": "producer", "rate": 10, "surge": {"pattern": "step", "factor": 8}}]}]}


def _copy(d):
    return yaml.safe_load(yaml.safe_dump(d))


# ----------------------------------------------------------------------------- scenario format

def test_a_surge_scenario_expects_a_watch_and_a_runaway_scenario_a_throttle() -> None:
    assert parse_scenario(SURGE).expect == "watch"
    runaway = _copy(SURGE)
    runaway["tenants"][1] = {"name": "tenant-a", "role": "runaway", "clients": [
        {"kind": "producer", "rate": 10, "runaway": {"pattern": "step"}}]}
    assert parse_scenario(runaway).expect == "throttle"


@pytest.mark.parametrize("change, needle", [
    (lambda d: d["tenants"][1].update(role="benign"), "surge client"),          # a surge under a benign tenant
    (lambda d: d["tenants"][1]["clients"][0].update(surge=None), "no client with a surge"),
    (lambda d: d["tenants"][1]["clients"][0]["surge"].update(pattern="retry_storm"), "surge is one of"),
    (lambda d: d["tenants"][1]["clients"][0].update(runaway={"pattern": "step"}), "not both"),
    (lambda d: d["tenants"].append({"name": "tenant-c", "role": "runaway", "clients": [
        {"kind": "producer", "runaway": {"pattern": "step"}}]}), "runaway tenants or surge tenants"),
    (lambda d: d["tenants"][1].update(role="runaway", clients=[
        {"kind": "producer", "runaway": {"pattern": "rolling_restart"}}]), "surge pattern"),
    (lambda d: d.update(broker={"io_threads": 0}), "io_threads"),
    (lambda d: d.update(broker={"compression_type": "brotli"}), "compression_type"),
])
def test_surge_and_broker_mistakes_are_refused_naming_the_key(change, needle: str) -> None:
    data = _copy(SURGE)
    change(data)
    with pytest.raises(ConfigError, match=needle):
        parse_scenario(data, "s.yaml")


def test_the_warm_up_comes_before_the_first_repeat() -> None:
    sc = parse_scenario({**SURGE, "repeats": 2, "phases": {"warmup_s": 15, "before_s": 30, "during_s": 20,
                                                           "after_s": 10}})
    assert sc.duration_s == 15 + 2 * 60


def test_a_repeats_client_runs_client_age_s_before_its_onset_which_must_fit_in_the_run() -> None:
    phases = {"warmup_s": 120, "before_s": 30, "during_s": 20, "after_s": 10}
    assert parse_scenario({**SURGE, "phases": phases}).phases.age_s == 30          # default: before_s
    assert parse_scenario({**SURGE, "phases": {**phases, "client_age_s": 150}}).phases.age_s == 150
    with pytest.raises(ConfigError, match="client_age_s"):
        parse_scenario({**SURGE, "phases": {**phases, "client_age_s": 151}}, "s.yaml")


def test_shipped_harm_drills_state_a_small_capacity_and_keep_no_unexplained_override() -> None:
    """Each runaway drill runs on a stated small broker; evidence_s is the shipped default's; an
    override that stays is explained in the file (issue 15)."""
    for path in sorted(SCENARIOS.glob("drill-*.yaml")):
        sc, text = load_scenario(path), path.read_text()
        assert sc.broker is not None and sc.broker.io_threads == 1 and sc.broker.network_threads == 1, path.name
        assert sc.guardian.policy.evidence_s is None, path.name
        if sc.guardian.policy.max_throttled_traffic_share is not None:
            assert "share-of-traffic cap" in text, path.name
        if sc.guardian.detectors:
            assert "warm_n" in text and "Kept, and only this" in text, path.name


def test_there_are_surge_drills_for_a_backfill_a_launch_a_rolling_restart_and_a_deploy() -> None:
    patterns = {c.surge.pattern for p in SCENARIOS.glob("drill-surge-*.yaml")
                for t in load_scenario(p).tenants for c in t.clients if c.surge}
    assert patterns == {"step", "ramp", "rolling_restart", "deploy"}


# ----------------------------------------------------------------------------- broker capacity

def test_the_stated_capacity_is_written_into_server_properties_and_recorded(tmp_path: Path) -> None:
    cap = BrokerCapacity(io_threads=1, network_threads=1, queued_max_requests=16, compression_type="gzip",
                         compression_gzip_level=9)
    kafka = LocalKafka(tmp_path, tmp_path, capacity=cap)
    st = kafka._new_state(None)
    props = dict(line.split("=", 1) for line in kafka._properties(st, tmp_path / "data").splitlines())
    assert (props["num.io.threads"], props["num.network.threads"], props["queued.max.requests"]) == ("1", "1", "16")
    assert (props["compression.type"], props["compression.gzip.level"]) == ("gzip", "9")
    assert "log.flush.interval.messages" not in props          # 0: left to the OS, as Kafka does
    assert st.capacity == {"io_threads": 1, "network_threads": 1, "queued_max_requests": 16,
                           "flush_interval_messages": 0, "compression_type": "gzip", "compression_gzip_level": 9,
                           "memory_mb": 0, "disk_read_mb_s": 0.0}
    default = LocalKafka(tmp_path, tmp_path)
    dprops = default._properties(default._new_state(None), tmp_path / "data")
    assert "num.io.threads=4\n" in dprops and "compression.gzip.level" not in dprops


def test_a_recorded_capacity_says_whether_the_broker_was_confined() -> None:
    # what `stop` reads to release the cgroups: the state file's dict, with keys of other versions ignored
    assert BrokerCapacity.of({"disk_read_mb_s": 20.0, "from_a_newer_version": 1}).confined
    assert BrokerCapacity.of({**vars(BrokerCapacity()), "memory_mb": 1024}).memory_mb == 1024
    assert not BrokerCapacity.of({}).confined and not BrokerCapacity.of(vars(BrokerCapacity(1, 1))).confined


def test_a_broker_running_with_another_capacity_is_not_silently_reused(tmp_path: Path, monkeypatch) -> None:
    from guardian_dev import procs
    from guardian.errors import SetupError

    kafka = LocalKafka(tmp_path, tmp_path, capacity=BrokerCapacity(io_threads=1, network_threads=1))
    kafka.state_file.write_text(__import__("json").dumps(
        {**vars(KafkaState(pid=4242, port=1)), "capacity": vars(BrokerCapacity())}))
    monkeypatch.setattr(procs, "pid_alive", lambda pid: True)
    with pytest.raises(SetupError, match="capacity"):
        kafka.start()


def test_the_report_states_the_capacity() -> None:
    line = broker_line({"provider": "local", "bootstrap": "127.0.0.1:1", "stated_by_scenario": True,
                        "capacity": vars(BrokerCapacity(1, 1, 16, 0, "gzip", 9))})
    assert "1 I/O thread" in line and "1 network thread" in line and "queued.max.requests=16" in line
    assert "compression.type=gzip" in line and "as the scenario states" in line
    assert "not known" in broker_line({"provider": "environment", "bootstrap": "x", "capacity": None})
    slow = broker_line({"provider": "local", "bootstrap": "127.0.0.1:1", "stated_by_scenario": True,
                        "capacity": vars(BrokerCapacity(1, 1, 16, memory_mb=1024, disk_read_mb_s=20))})
    assert "memory limit 1024 MB" in slow and "disk reads 20 MB/s" in slow and "memory limit" not in line


def test_a_confined_broker_gets_a_fixed_heap_and_a_memory_limit_too_small_for_it_is_refused() -> None:
    sc = parse_scenario({**_copy(SURGE), "broker": {"memory_mb": 1024, "disk_read_mb_s": 20}})
    assert sc.broker.dev_settings()["kafka_memory_mb"] == 1024
    assert sc.broker.dev_settings()["kafka_disk_read_mb_s"] == 20
    with pytest.raises(ConfigError, match="memory_mb"):
        parse_scenario({**_copy(SURGE), "broker": {"memory_mb": 512}}, "s.yaml")


# ----------------------------------------------------------------------------- rolling restart

def test_a_rolling_restart_member_goes_down_and_comes_back_with_its_backlog() -> None:
    import threading

    sc = parse_scenario({"name": "r", "tenants": [BENIGN, {"name": "tenant-a", "role": "surge", "clients": [
        {"kind": "producer", "count": 2, "shared_client_id": True, "rate": 10,
         "surge": {"pattern": "rolling_restart", "every_s": 8, "down_s": 4, "factor": 5}}]}]})
    c = sc.tenants[1].clients[0]
    rec = Recorder("cid", "tenant-a", "surge", "producer")
    old, new = _restarted(rec, {}, "t", c, threading.Event(), start=0.0, end=100.0, down_at=50.0)
    assert (old.start_at, old.end_at) == (0.0, 50.0)
    assert (new.start_at, new.end_at) == (54.0, 100.0)
    # 4 s of backlog (40 messages) sent at 5x (40 more messages/s): one extra second at 5x, then the rate
    assert new.rate_fn(54.5) == 50.0 and new.rate_fn(55.5) == 10.0
    assert rec.events == [(50.0, "restart")]


# ----------------------------------------------------------------------------- report

class _Ctx:
    def __init__(self, recorders, incidents, scenario, quarantines=(), detections=(), decisions=()):
        self.recorders, self.incidents, self.scenario = recorders, incidents, scenario
        self.quarantines, self.detections, self.decisions = list(quarantines), list(detections), list(decisions)
        self.notes: list[str] = []


def _benign(onset: float) -> Recorder:
    rec = Recorder("b1", "tenant-b", "benign", "producer", {"client_id": "b1"})
    rec.acks = ([(onset - 20 + i * 0.1, 1000, 0.010) for i in range(200)]        # before: 10 ms
                + [(onset + i * 0.1, 1000, 0.080) for i in range(50)]          # onset .. +5 s: 80 ms
                + [(onset + 5 + i * 0.1, 1000, 0.011) for i in range(150)])    # +5 .. +20 s: 11 ms
    return rec


def _quarantine(qid: str, cid: str, history, state="released", q_history=()):
    return {"id": qid, "workload": {"client_id": cid}, "state": state, "dry_run": False,
            "detection": {"signature": "runaway_producer"}, "history": list(q_history),
            "actions": [{"kind": "quota", "params": {}, "status": "reverted", "history": history}] if history else []}


def test_during_is_split_at_the_verified_throttle() -> None:
    sc = parse_scenario({**SURGE, "repeats": 1, "phases": {"before_s": 30, "during_s": 20, "after_s": 10}})
    onset = 1000.0
    inc = Incident(0, onset, onset + 20, client_ids={"run-a"}, tenant="tenant-a", pattern="step")
    q = _quarantine("q1", "run-a", [{"ts": onset + 4.8, "status": "applied"}, {"ts": onset + 5.0, "status": "verified"}])
    b = benign_stats(_Ctx([_benign(onset)], [inc], sc, [q]), split=True)["tenant-b"]
    assert b["uncontained"]["p99_ms"] == pytest.approx(80.0)
    assert b["contained"]["p99_ms"] == pytest.approx(11.0, abs=0.5)
    assert b["p99_ratio_contained_vs_before"] == pytest.approx(1.1, abs=0.05)
    assert b["p99_ratio_uncontained_vs_before"] == pytest.approx(8.0)
    # no action: the whole incident is uncontained, and nothing is contained
    b = benign_stats(_Ctx([_benign(onset)], [inc], sc, []), split=True)["tenant-b"]
    assert b["contained"]["p99_ms"] is None and b["uncontained"]["messages"] == b["during"]["messages"]
    assert "contained" not in benign_stats(_Ctx([_benign(onset)], [inc], sc, [q]))["tenant-b"]


def test_a_latency_counts_where_its_message_was_sent() -> None:
    """A request queued before the throttle and answered after it is uncontained harm; one sent just
    before the onset and answered late is not part of the normal."""
    sc = parse_scenario({**SURGE, "repeats": 1, "phases": {"before_s": 30, "during_s": 20, "after_s": 10}})
    onset = 1000.0
    inc = Incident(0, onset, onset + 20, client_ids={"run-a"}, tenant="tenant-a", pattern="step")
    q = _quarantine("q1", "run-a", [{"ts": onset + 5.0, "status": "verified"}])
    rec = _benign(onset)
    rec.acks += [(onset + 0.5, 1000, 1.0)] * 5           # sent 0.5 s before the onset, answered after it
    rec.acks += [(onset + 6.0, 1000, 2.0)] * 5           # sent at +4 s (uncontained), answered at +6 s
    b = benign_stats(_Ctx([rec], [inc], sc, [q]), split=True)["tenant-b"]
    assert b["before"]["p99_ms"] == pytest.approx(10.0)
    assert b["contained"]["p99_ms"] == pytest.approx(11.0, abs=0.5)
    assert b["settled"]["p99_ms"] == pytest.approx(11.0, abs=0.5)
    # sent 0.5 s after the verified throttle, behind what the runaway had queued: contained, not settled
    rec.acks += [(onset + 7.0, 1000, 1.5)] * 5
    b = benign_stats(_Ctx([rec], [inc], sc, [q]), split=True)["tenant-b"]
    assert b["contained"]["p99_ms"] == pytest.approx(1500.0)
    assert b["settled"]["p99_ms"] == pytest.approx(11.0, abs=0.5)
    rec.acks = rec.acks[:-5]
    b = benign_stats(_Ctx([rec], [inc], sc, [q]), split=True)["tenant-b"]
    assert b["uncontained"]["p99_ms"] == pytest.approx(2000.0)
    # throughput stays by ack time: the five late answers are in contained's messages
    assert b["contained"]["messages"] == 150 + 5


def test_harm_begins_where_the_benign_p99_holds_at_3x_its_normal_and_the_throttle_is_timed_from_there() -> None:
    sc = parse_scenario({**SURGE, "repeats": 1, "phases": {"before_s": 30, "during_s": 20, "after_s": 10}})
    onset = 1000.0
    inc = Incident(0, onset, onset + 20, client_ids={"run-a"}, tenant="tenant-a", pattern="ramp")
    rec = Recorder("b1", "tenant-b", "benign", "producer", {"client_id": "b1"})
    rec.acks = ([(onset - 20 + i * 0.1, 1000, 0.010) for i in range(200)]           # before: 10 ms
                + [(onset + 2.05, 1000, 0.5)]                                      # one slow second: noise
                + [(onset + i * 0.1, 1000, 0.011) for i in range(60)]               # calm until +6 s
                + [(onset + 6 + i * 0.1 + 0.05, 1000, 0.040) for i in range(40)]    # +6 .. +10 s: 40 ms, 4x
                + [(onset + 10 + i * 0.1 + 0.05, 1000, 0.011) for i in range(100)])
    q = _quarantine("q1", "run-a", [{"ts": onset + 9.5, "status": "verified"}])
    stats = incident_stats(_Ctx([rec], [inc], sc, [q]))[0]
    assert stats["onset_to_harm_s"] == 6.0
    assert stats["harm_to_verified_action_s"] == 3.5
    assert stats["onset_to_verified_action_s"] == 9.5
    # never 3x for two seconds running: no harm, and nothing to time from
    rec.acks = [a for a in rec.acks if a[2] != 0.040]
    stats = incident_stats(_Ctx([rec], [inc], sc, [q]))[0]
    assert stats["onset_to_harm_s"] is None and stats["harm_to_verified_action_s"] is None


def test_a_surge_drill_counts_throttles_and_watches_of_the_surge_workload() -> None:
    sc = parse_scenario({**SURGE, "repeats": 2, "phases": {"before_s": 30, "during_s": 20, "after_s": 10}})
    onset = 1000.0
    incs = [Incident(k, onset + 60 * k, onset + 60 * k + 20, client_ids={f"surge-{k}"}, role="surge")
            for k in range(2)]
    watch = _quarantine("w", "surge-0", [], state="watching",
                        q_history=[{"ts": onset + 6, "from": None, "to": "watching"}])
    throttle = _quarantine("t", "surge-1", [{"ts": onset + 66, "status": "applied"},
                                            {"ts": onset + 66.2, "status": "verified"}],
                           q_history=[{"ts": onset + 66, "from": "watching", "to": "active"}])
    benign_watch = _quarantine("bw", "b1", [], state="watching")
    benign_throttle = _quarantine("bt", "b1", [{"ts": onset, "status": "applied"}])
    ctx = _Ctx([_benign(onset)], incs, sc, [watch, throttle, benign_watch, benign_throttle])
    rows = incident_stats(ctx)
    assert [(r["role"], r["throttles"], r["watches"]) for r in rows] == [("surge", 0, 1), ("surge", 1, 1)]
    assert [f["quarantine"] for f in false_actions(ctx)] == ["bt"]
    assert [f["quarantine"] for f in false_actions(ctx, watches=True)] == ["bw"]
    res = summarize(None, ctx)
    assert (res["expect"], res["surge_throttles"], res["surge_watches"]) == ("watch", 1, 2)
    assert res["false_actions"] == 1 and len(res["on"]["benign_watches"]) == 1


def test_the_decisions_harm_is_reported_per_incident() -> None:
    sc = parse_scenario({**SURGE, "repeats": 1, "phases": {"before_s": 30, "during_s": 20, "after_s": 10}})
    onset = 1000.0
    inc = Incident(0, onset, onset + 20, client_ids={"run-a"})
    det = {"id": "d1", "workload": {"client_id": "run-a"}, "signature": "runaway_producer",
           "published_at": onset + 5, "ts": onset + 4}
    decisions = [{"detection_id": "d1", "outcome": "watch", "reason": "watch: no harm", "harm": {"harmful": False}},
                 {"detection_id": "d1", "outcome": "quarantined", "reason": "matched", "harm": {"harmful": True,
                                                                                            "reason": "pressure"}}]
    row = incident_stats(_Ctx([], [inc], sc, [], [det], decisions))[0]
    assert row["decisions"] == {"watch": 1, "quarantined": 1}
    assert row["harm_when_acted"] == {"harmful": True, "reason": "pressure"}


def test_a_saved_run_gives_the_same_report(tmp_path) -> None:
    from guardian_dev.drill.report import load_run, save_run, summarize

    sc = parse_scenario({**SURGE, "repeats": 1, "phases": {"before_s": 30, "during_s": 20, "after_s": 10}})
    onset = 1000.0
    inc = Incident(0, onset, onset + 20, client_ids={"run-a"}, tenant="tenant-a", pattern="step")
    q = _quarantine("q1", "run-a", [{"ts": onset + 5.0, "status": "verified"}])
    ctx = _Ctx([_benign(onset)], [inc], sc, [q])
    ctx.mode, ctx.t0 = "on", onset - 100
    back = load_run(save_run(ctx, tmp_path / "on" / "run.json.gz"))
    assert back.incidents[0].client_ids == {"run-a"} and back.recorders[0].acks[0] == ctx.recorders[0].acks[0]
    assert summarize(None, back) == summarize(None, ctx)


def test_a_deploy_step_probe_gives_the_control_planes_harm() -> None:
    sc = parse_scenario({**SURGE, "repeats": 1, "phases": {"before_s": 30, "during_s": 20, "after_s": 10}})
    onset = 1000.0
    inc = Incident(0, onset, onset + 20, client_ids={"run-a"}, tenant="tenant-a", pattern="partition_storm")
    q = _quarantine("q1", "run-a", [{"ts": onset + 8.0, "status": "verified"}])
    prov = Recorder("p1", "tenant-b", "benign", "provision", {"client_id": "p1"})
    # (acked, bytes, latency): 40 ms before, 400 ms until the throttle, 45 ms after it
    prov.acks = ([(onset - 20 + i + 0.04, 0, 0.04) for i in range(20)]
                 + [(onset + i + 0.4, 0, 0.4) for i in range(8)]
                 + [(onset + 8 + i + 0.045, 0, 0.045) for i in range(12)])
    res = summarize(None, _Ctx([_benign(onset), prov], [inc], sc, [q]))
    p = res["on"]["benign"]["tenant-b"]["provision"]
    assert (p["before"]["steps"], p["uncontained"]["steps"], p["contained"]["steps"]) == (20, 8, 12)
    assert res["benign_provision_p99_ratio_uncontained_on"] == pytest.approx(10.0)
    assert res["benign_provision_p99_ratio_contained_on"] == pytest.approx(1.125)
    # a produce-only scenario has no such figure
    assert "benign_provision_p99_ratio_on" not in summarize(None, _Ctx([_benign(onset)], [inc], sc, [q]))


def test_the_settled_ratio_comes_with_the_runs_own_noise_on_its_quiet_stretch() -> None:
    """The same two windows (before, settled) laid on the quiet stretch before the first incident: flat
    latencies give 1.0; one slow stretch there shows in the p90; without a verified throttle, nothing."""
    sc = parse_scenario({**SURGE, "repeats": 1, "phases": {"before_s": 30, "during_s": 30, "after_s": 10}})
    onset = 1000.0
    inc = Incident(0, onset, onset + 30, client_ids={"run-a"}, tenant="tenant-a", pattern="step")
    q = _quarantine("q1", "run-a", [{"ts": onset + 8.0, "status": "verified"}])
    rec = Recorder("b1", "tenant-b", "benign", "producer", {"client_id": "b1"})
    rec.acks = [(onset - 200 + i * 0.05, 1000, 0.010 + 0.001 * (i % 7)) for i in range(4000)]
    noise = settled_noise(_Ctx([rec], [inc], sc, [q]))
    assert noise is not None and noise["positions"] >= 10
    assert noise["p50"] == pytest.approx(1.0) and noise["p90"] == pytest.approx(1.0)
    rec.acks = [(ts, b, 0.050 if onset - 70 <= ts < onset - 60 else lat) for ts, b, lat in rec.acks]
    noisy = settled_noise(_Ctx([rec], [inc], sc, [q]))
    assert noisy["p90"] > 3 and noisy["positions"] == noise["positions"]
    assert settled_noise(_Ctx([rec], [inc], sc, [])) is None
