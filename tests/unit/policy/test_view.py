"""The shared cluster view's merge (guardian.policy.view): the parts of several workers make what one
worker seeing every sample would. Pure; the Redis side is tests/integration/ingest/test_shared_view.py."""

from __future__ import annotations

import random

import orjson
import pytest

from guardian.ingest.stage import ClusterTraffic
from guardian.model.samples import Metric, Sample, Workload
from guardian.policy.effect import FollowedRates, RatePoint, merge_points
from guardian.policy.pressure import BrokerPart, ClientLoad, ClientLoads, ClusterPressure, merge_pressure
from guardian.policy.view import WorkerView, merge_traffic, merge_views

BROKERS = ("1", "2", "3")
PRINCIPALS = [f"User:t{i}" for i in range(6)]


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def samples(t: float, rng: random.Random) -> list[Sample]:
    out = []
    for b in BROKERS:
        w = Workload(broker=b)
        out += [Sample(t, w, Metric.REQUEST_HANDLER_IDLE, rng.uniform(0.1, 0.9)),
                Sample(t, w, Metric.REQUEST_TOTAL_TIME_P99, rng.uniform(3, 9), labels={"request": "Produce"}),
                Sample(t, w, Metric.PRODUCE_BYTE_RATE, rng.uniform(1e6, 2e6))]
        for p in PRINCIPALS:
            for c in ("a", "b"):
                cw = Workload(principal=p, client_id=c, broker=b)
                out += [Sample(t, cw, Metric.REQUEST_TIME_SHARE, rng.uniform(0, 20)),
                        Sample(t, cw, Metric.PRODUCE_BYTE_RATE, rng.uniform(1e4, 1e5))]
    return out


def owner(w: Workload, workers: int) -> int:
    """Keyed as the metrics topic is: the brokers' own samples on worker 0, principals spread."""
    return 0 if w.principal is None else (PRINCIPALS.index(w.principal) % workers)


def split_run(workers: int, seconds: int = 40, seed: int = 1):
    clock = Clock()
    one = ClusterPressure(clock=clock)
    parts = [ClusterPressure(clock=clock) for _ in range(workers)]
    rng = random.Random(seed)
    for t in range(seconds):
        clock.t = 1000.0 + t
        batch = samples(clock.t, rng)
        one.observe(batch)
        for i, p in enumerate(parts):
            p.observe([s for s in batch if owner(s.workload, workers) == i])
    return clock, one, parts


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_parts_of_n_workers_merge_into_the_snapshot_of_one(workers):
    clock, one, parts = split_run(workers)
    wanted = ["User:t1", "User:t4"]     # principals with an open episode
    merged = merge_pressure([p.part(wanted) for p in parts], clock(), 30.0)
    whole = one.snapshot()
    assert merged.brokers.keys() == whole.brokers.keys()
    for b, w in whole.brokers.items():
        m = merged.brokers[b]
        assert (m.ts, m.signals, m.normals) == (w.ts, w.signals, w.normals)
        assert m.total.request_time == pytest.approx(w.total.request_time)
        assert m.total.bytes_in == pytest.approx(w.total.bytes_in)
        assert m.clients == {k: v for k, v in w.clients.items() if k[0] in wanted}
        for p in wanted:
            assert m.load_of(p) == w.load_of(p)


def test_a_single_part_is_the_snapshot_and_its_client_loads_are_only_those_asked_for():
    clock, one, _ = split_run(1)
    part = one.part(["User:t2"])
    assert {k[0] for b in part.values() for k in b.clients} == {"User:t2"}
    assert set(part) == set(BROKERS)


def _exact_totals(cp: ClusterPressure, now: float) -> dict[str, tuple[float, float, float]]:
    """The totals walked from every client's fresh loads: what the running totals must match."""
    out = {}
    for broker, clients in cp._clients.items():
        fresh = [{k: v for k, (ts, v) in parts.items() if now - ts <= cp.stale_after_s} for parts in clients.values()]
        out[broker] = tuple(sum(f.get(k, 0.0) for f in fresh) for k in ("request_time", "bytes_in", "bytes_out"))
    return out


def test_the_running_totals_are_exact_after_each_sweep_and_late_by_at_most_a_sweep_between():
    """Clients come and go (a third stop reporting at random): the totals are kept as samples arrive
    and recomputed every sweep_s, so a load that went stale counts for at most sweep_s more."""
    clock, rng = Clock(0.0), random.Random(7)
    cp = ClusterPressure(stale_after_s=30.0, sweep_s=5.0, clock=clock)
    live = {(p, c) for p in PRINCIPALS for c in "abcd"}
    for t in range(120):
        clock.t = float(t)
        if t % 10 == 0:
            live = {k for k in live if rng.random() > 0.3} | {(rng.choice(PRINCIPALS), f"n{t}-{i}") for i in range(3)}
        cp.observe([Sample(clock.t, Workload(principal=p, client_id=c, broker=b), m, rng.uniform(0, 10))
                    for p, c in live for b in BROKERS[:2]
                    for m in (Metric.REQUEST_TIME_SHARE, Metric.PRODUCE_BYTE_RATE)])
        part = cp.part(["User:t1"])
        exact, late = _exact_totals(cp, clock.t), _exact_totals(cp, clock.t - cp.sweep_s)
        for b, bp in part.items():
            got = (bp.total.request_time, bp.total.bytes_in, bp.total.bytes_out)
            if t % 5 == 0:   # swept just now
                assert got == pytest.approx(exact[b])
            # between sweeps: at least the fresh loads, at most those fresh sweep_s ago
            assert all(e - 1e-6 <= g <= lt + 1e-6 for g, e, lt in zip(got, exact[b], late[b]))
            assert set(bp.clients) == {k for k in cp._clients[b] if k[0] == "User:t1"
                                       and any(t - ts <= 30.0 for ts, _ in cp._clients[b][k].values())}
    assert max(len(c) for c in cp._clients.values()) < 4 * len(PRINCIPALS) + 30   # quiet clients are forgotten


def test_after_a_rebalance_the_newest_owner_of_the_broker_signals_wins_and_stale_ones_go():
    clock = Clock(100.0)
    old, new = ClusterPressure(clock=clock), ClusterPressure(clock=clock)
    old.observe([Sample(100.0, Workload(broker="1"), Metric.REQUEST_HANDLER_IDLE, 0.9)])
    new.observe([Sample(110.0, Workload(broker="1"), Metric.REQUEST_HANDLER_IDLE, 0.1)])
    clock.t = 111.0
    b = merge_pressure([old.part(), new.part()], clock(), 30.0).brokers["1"]
    assert (b.ts, b.signals) == (110.0, {"request_handler_idle": 0.1})
    assert merge_pressure([old.part()], 200.0, 30.0).brokers["1"].signals == {}   # stale: unknown, not calm


def test_a_view_survives_its_json_round_trip():
    clock, one, _ = split_run(1, seconds=5)
    traffic = ClusterTraffic(clock=clock)
    rates = FollowedRates(clock=clock)
    rates.follow([("User:t1", "a", "produce_byte_rate")])
    rates.observe("User:t1", "a", {"produce_byte_rate": 9.0}, clock(), lambda m: {"1": 4.0, "2": 5.0})
    view = WorkerView("w1", clock(), one.part(["User:t1"]), {("1", "fetch_byte_rate"): (clock(), 7.0)}, rates.part())
    back = WorkerView.from_dict(orjson.loads(orjson.dumps(view.to_dict())))
    assert back == view
    assert merge_views([back], clock(), 30.0) == merge_views([view], clock(), 30.0)
    assert back.rates[("User:t1", "a", "produce_byte_rate")] == [RatePoint(clock(), 9.0, {"1": 4.0, "2": 5.0})]
    empty = WorkerView("w2", clock())
    assert WorkerView.from_dict(orjson.loads(orjson.dumps(empty.to_dict()))) == empty
    assert traffic() is None


def test_traffic_takes_each_brokers_freshest_part_and_forgets_stale_ones():
    clock = Clock(100.0)
    split = [ClusterTraffic(clock=clock), ClusterTraffic(clock=clock)]
    one = ClusterTraffic(clock=clock)
    rng = random.Random(2)
    for t in range(20):
        for i, b in enumerate(BROKERS):
            batch = _broker_batch(b, 100.0 + t, rng.uniform(1e5, 1e6))
            one.observe(batch)
            split[i % 2].observe(batch)
    clock.t = 120.0
    assert merge_traffic([s.part() for s in split], clock(), 60.0) == pytest.approx(one())
    assert merge_traffic([s.part() for s in split], 500.0, 60.0) is None
    assert merge_traffic([], 500.0, 60.0) is None
    old = {("1", "produce_byte_rate"): (10.0, 5.0)}
    new = {("1", "produce_byte_rate"): (20.0, 7.0), ("2", "produce_byte_rate"): (20.0, 1.0)}
    assert merge_traffic([new, old], 25.0, 60.0) == 8.0


def _broker_batch(broker: str, ts: float, rate: float):
    from guardian.ingest.codec import group_samples

    (batch,) = group_samples([Sample(ts, Workload(broker=broker), Metric.PRODUCE_BYTE_RATE, rate)])
    return batch


def test_followed_points_of_several_workers_are_one_series_each_time_once():
    a = [RatePoint(1.0, 10.0), RatePoint(3.0, 30.0)]
    b = [RatePoint(2.0, 20.0), RatePoint(3.0, 30.0)]
    assert [p.ts for p in merge_points([a, b])] == [1.0, 2.0, 3.0]
    assert merge_points([]) == []


def test_a_worker_follows_what_the_engine_named_and_publishes_only_those_points():
    clock = Clock(0.0)
    rates = FollowedRates(clock=clock)
    rates.observe("User:a", "x", {"produce_byte_rate": 1.0}, 0.0, lambda m: {})
    assert rates.part() == {}                                  # nobody follows it: nothing kept
    rates.follow([("User:a", "x", "produce_byte_rate")])
    for t in range(3):
        rates.observe("User:a", "x", {"produce_byte_rate": 2.0, "fetch_byte_rate": 5.0}, float(t), lambda m: {})
    assert [p.ts for p in rates.part()[("User:a", "x", "produce_byte_rate")]] == [0.0, 1.0, 2.0]
    assert list(rates.part()) == [("User:a", "x", "produce_byte_rate")]
    clock.t = 100.0                                            # the engine stopped asking: followed no more
    rates.observe("User:a", "x", {"produce_byte_rate": 2.0}, 100.0, lambda m: {})
    assert rates.part() == {}


def test_a_worker_giving_up_a_partition_forgets_its_loads_and_signals():
    clock, _, (part,) = split_run(1, seconds=3)
    part.part()   # its totals were just computed: forgetting must not leave the moved loads in them
    part.forget(lambda w: w.principal == "User:t1" or w.principal is None)
    kept = part.part()
    assert {k[0] for b in kept.values() for k in b.clients} == set(PRINCIPALS) - {"User:t1"}
    assert all(not b.signals and not b.normals for b in kept.values())
    assert all(not b.clients for b in part.part(["User:t1"]).values())   # nor asked for by name
    for b in kept.values():   # the totals were recomputed without them
        assert b.total.request_time == pytest.approx(sum(c.request_time for c in b.clients.values()))


def test_the_engine_builds_the_loads_of_the_principals_it_asks_for_only():
    """At 50,000 clients with 10 tenants open, building every client's load on each read was most of the
    engine's read; the loads stay as read from JSON until a principal is asked for."""
    clock, _, parts = split_run(2)
    views = [WorkerView.from_dict(orjson.loads(orjson.dumps(WorkerView(f"w{i}", clock(), p.part(PRINCIPALS)).to_dict())))
             for i, p in enumerate(parts)]
    b = merge_views(views, clock(), 30.0).brokers["1"]
    assert b.clients._built == {}                                       # merging built nothing
    truth = merge_pressure([p.part(PRINCIPALS) for p in parts], clock(), 30.0).brokers["1"]
    assert b.load_of("User:t3", ["a"]) == truth.load_of("User:t3", ["a"])
    assert set(b.clients._built) == {"User:t3"}
    assert b.clients == truth.clients                                   # and every one, when asked
    assert b.load_of(None) == truth.load_of(None)


def test_a_client_in_two_parts_keeps_the_first_parts_load_as_before():
    wire = [{"User:a": [["x", 1.0, 0.0, 0.0]]}, {"User:a": [["x", 9.0, 0.0, 0.0], ["y", 2.0, 0.0, 0.0]]}]
    loads = ClientLoads.union(ClientLoads.from_rows(w) for w in wire)
    assert {c: l.request_time for c, l in loads.principal("User:a").items()} == {"x": 1.0, "y": 2.0}


def test_unreadable_client_rows_are_skipped_and_logged_and_the_others_kept(caplog):
    raw = WorkerView("w", 1.0, {"1": BrokerPart(1.0, {}, {}, ClientLoad(), {})}).to_dict()
    raw["pressure"]["1"]["clients"] = {"User:a": [["x", 5.0, 1.0, 2.0], ["y", "many", 0, 0], [3, 1, 1, 1], "z"],
                                       "User:b": [["q", 1, 2, 3]]}
    b = merge_views([WorkerView.from_dict(raw)], 1.0, 30.0).brokers["1"]
    assert b.load_of("User:a") == ClientLoad(5.0, 1.0, 2.0)
    assert b.load_of("User:b") == ClientLoad(1.0, 2.0, 3.0)
    assert "3 unreadable client load rows of User:a" in caplog.text
    for bad in ("clients", {"User:a": "x"}, 7):                         # not the shape at all: the view is unreadable
        raw["pressure"]["1"]["clients"] = bad
        with pytest.raises((TypeError, ValueError)):
            WorkerView.from_dict(raw)


def test_a_view_written_before_the_loads_were_grouped_is_still_read():
    """A worker not yet upgraded (rolling upgrade) wrote [principal, client_id, request_time, bytes_in, bytes_out]."""
    raw = WorkerView("w", 1.0, {"1": BrokerPart(1.0, {}, {}, ClientLoad(), {})}).to_dict()
    raw["pressure"]["1"]["clients"] = [["User:a", "x", 5.0, 1.0, 2.0], ["User:a", "y", 1.0, 0.0, 0.0]]
    b = merge_views([WorkerView.from_dict(raw)], 1.0, 30.0).brokers["1"]
    assert b.load_of("User:a") == ClientLoad(6.0, 1.0, 2.0)
