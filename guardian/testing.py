"""A testing kit for code built on the guardian: no broker, no Redis, no network.

* ``FakeClock``: the engine's clock, set and advanced by the test.
* ``MemoryLedger``: the ledger interface the ``ActionEngine`` uses
  (``guardian.store.ledger.Ledger``), in memory: versions and conflicts, the
  one-open-quarantine-per-workload index, the cap, the dirty set, action
  records, pause, probation and the audit outbox. Records are stored as JSON,
  as in Redis, so what a caller gets back is a copy. The same behaviours run
  against both ledgers (tests/unit/engine/ledger_behaviours.py).
* ``RecordingActuator``: an ``Actuator`` holding its "cluster" in a dict and
  recording every call.
* ``check_actuator(actuator, plan, snapshot)``: the actuator contract (apply
  twice equals apply once, revert after apply restores what was observed, ...);
  ``check_detector(factory)``: the detector contract. Every actuator's and
  every detector's contract suite calls these.
* ``without_harm_test(policies)``: the same policy set with the harm test off,
  so a test about something else (the API, the lifecycle, the lease) gets a
  quarantine from a detection alone. ``pressure_blaming(...)``: a ``Pressure``
  snapshot in which one broker is starved and the named clients hold its load,
  for tests of the harm path itself.

An engine on the kit, in a unit test::

    >>> from guardian.engine.engine import ActionEngine
    >>> from guardian.policy.config import default_policy_path, load_policy
    >>> clock = FakeClock()
    >>> quota = RecordingActuator("quota")
    >>> engine = ActionEngine(MemoryLedger(clock), without_harm_test(load_policy(default_policy_path())),
    ...                       {"quota": quota}, clock=clock)
    >>> from guardian.model.detection import Detection, Severity, Signature
    >>> det = Detection(id="d-1", ts=clock(), signature=Signature.RUNAWAY_PRODUCER, severity=Severity.CRITICAL,
    ...                 confidence=0.95, workload={"principal": "User:tenant-a", "client_id": "loader"},
    ...                 metric="produce_byte_rate", baseline=1e5, observed=2e6, ratio=20.0, duration_s=120.0)
    >>> engine.handle(det).outcome.value
    'quarantined'
    >>> [step for step, _ in quota.calls]
    ['observe', 'apply', 'verify']
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Callable, Iterable, Iterator, Sequence

from guardian.actuators.base import ActionPlan, Actuator
from guardian.model.quarantine import ActionRecord, QState, Quarantine
from guardian.policy.pressure import BrokerPressure, ClientLoad, Pressure
from guardian.errors import ConflictError, NotLeaderError
from guardian.store.ledger import Fence
from guardian.policy.config import PolicySet


# ------------------------------------------------------------------------------- clock

class FakeClock:
    """A clock the test sets (``clock.t = ...``, ``set``) and advances (``advance``); call it for the time.

    >>> clock = FakeClock(100.0)
    >>> clock.advance(5)
    105.0
    >>> clock()
    105.0
    """

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = float(t)

    def __call__(self) -> float:
        return self.t

    def set(self, t: float) -> float:
        self.t = float(t)
        return self.t

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self.t += seconds
        return self.t


# ------------------------------------------------------------------------------- ledger

def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class MemoryLedger:
    """``guardian.store.ledger.Ledger`` in memory, for one process (no transactions are needed: no concurrency).

    A ``Fence`` passed to a write must match ``leases[fence.key]``, or the write fails with
    ``NotLeaderError`` as it does in Redis once the lease is someone else's. Probation expires
    on ``clock``.
    """

    def __init__(self, clock: Callable[[], float] | None = None, prefix: str = "guardian:") -> None:
        import time

        self.clock = clock or time.time
        self.prefix = prefix
        self.leases: dict[str, str] = {}       # lease key -> "<token>:<owner>" of its holder
        self._q: dict[str, str] = {}           # id -> JSON quarantine
        self._created: dict[str, float] = {}   # id -> created_at (the ``q:all`` zset)
        self._open: set[str] = set()
        self._wl: dict[str, str] = {}
        self._dirty: dict[str, int] = {}
        self._a: dict[str, str] = {}
        self._pause: str | None = None
        self._probation: dict[str, tuple[float, str]] = {}   # wl key -> (expires on clock, JSON)
        self._outbox: list[str] = []

    @property
    def client(self) -> None:
        return None

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _check(self, fence: Fence | None) -> None:
        if fence is not None and self.leases.get(fence.key) != fence.value:
            raise NotLeaderError(f"the action lease is no longer ours (fencing token {fence.token})")

    # ---------------------------------------------------------------- quarantines
    def create_quarantine(self, q: Quarantine, max_open: int | None = None, fence: Fence | None = None,
                          audit: Iterable[dict[str, Any]] = ()) -> Quarantine:
        self._check(fence)
        if q.id in self._q:
            raise ConflictError(f"quarantine {q.id} exists")
        other = self._wl.get(q.workload_key)
        if other is not None:
            raise ConflictError(f"workload {q.workload_key} already has open quarantine {other}")
        if q.counts_for_caps and max_open is not None and len(self._open) >= max_open:
            raise ConflictError(f"{max_open} quarantines are open; the cap holds")
        q.version = 1
        self._put_q(q)
        self.append_audit(audit)
        return q

    def save_quarantine(self, q: Quarantine, fence: Fence | None = None,
                        audit: Iterable[dict[str, Any]] = ()) -> Quarantine:
        self._check(fence)
        raw = self._q.get(q.id)
        if raw is None:
            raise ConflictError(f"quarantine {q.id} does not exist")
        current = json.loads(raw)["version"]
        if current != q.version:
            raise ConflictError(f"quarantine {q.id} changed (version {current}, you have {q.version})")
        q.version += 1
        self._put_q(q)
        self.append_audit(audit)
        return q

    def _put_q(self, q: Quarantine) -> None:
        self._q[q.id] = _dumps(q.to_dict())
        self._created[q.id] = q.created_at
        self._dirty[q.id] = q.version
        if q.state.terminal:
            self._open.discard(q.id)
            self._wl.pop(q.workload_key, None)
        else:
            self._wl[q.workload_key] = q.id
            if q.counts_for_caps:
                self._open.add(q.id)

    def get(self, qid: str) -> Quarantine | None:
        raw = self._q.get(qid)
        return Quarantine.from_dict(json.loads(raw)) if raw else None

    def open_for(self, workload_key: str) -> Quarantine | None:
        qid = self._wl.get(workload_key)
        return self.get(qid) if qid else None

    def list(self, states: Iterable[QState] | None = None, tenant: str | None = None,
             limit: int = 1000) -> list[Quarantine]:
        """Newest first: the newest ``limit``, then filtered (as ``Ledger.list``)."""
        wanted = set(states) if states is not None else None
        return [q for q in itertools.islice(self.newest(), limit)
                if (wanted is None or q.state in wanted) and (tenant is None or q.tenant == tenant)]

    def newest(self, after: tuple[float, str] | None = None, batch: int = 200,
               principals: Sequence[str] | None = None) -> Iterator[Quarantine]:
        """As ``Ledger.newest``."""
        for qid in sorted(self._created, key=lambda i: (self._created[i], i), reverse=True):
            if after is None or (self._created[qid], qid) < after:
                q = self.get(qid)
                if q is not None and (principals is None or q.workload.get("principal") in principals):
                    yield q

    def unfinished(self) -> list[Quarantine]:
        return [q for i in sorted(self._wl.values()) if (q := self.get(i)) is not None and not q.state.terminal]

    def open_counting(self) -> list[Quarantine]:
        return [q for i in sorted(self._open) if (q := self.get(i)) is not None]

    def dirty(self) -> list[tuple[str, int]]:
        return sorted(self._dirty.items(), key=lambda kv: (kv[1], kv[0]))

    def mark_converged(self, qid: str, version: int) -> None:
        if self._dirty.get(qid) == version:
            del self._dirty[qid]

    def mark_dirty(self, qid: str, version: int) -> None:
        self._dirty[qid] = version

    # ---------------------------------------------------------------- action records
    def get_action(self, key: str) -> ActionRecord | None:
        raw = self._a.get(key)
        return ActionRecord.from_dict(json.loads(raw)) if raw else None

    def put_action(self, rec: ActionRecord, fence: Fence | None = None,
                   audit: Iterable[dict[str, Any]] = ()) -> ActionRecord:
        self._check(fence)
        raw = self._a.get(rec.key)
        current = json.loads(raw)["version"] if raw else 0
        if current != rec.version:
            raise ConflictError(f"action {rec.key} changed (version {current}, you have {rec.version})")
        rec.version += 1
        self._a[rec.key] = _dumps(rec.to_dict())
        self.append_audit(audit)
        return rec

    def actions(self, q: Quarantine) -> list[ActionRecord]:
        return [r for p in q.desired if (r := self.get_action(p["idempotency_key"])) is not None]

    # ---------------------------------------------------------------- pause, probation
    def set_pause(self, by: str, reason: str, ts: float, audit: Iterable[dict[str, Any]] = ()) -> None:
        self._pause = _dumps({"by": by, "reason": reason, "ts": ts})
        self.append_audit(audit)

    def clear_pause(self, audit: Iterable[dict[str, Any]] = ()) -> None:
        self._pause = None
        self.append_audit(audit)

    def pause_state(self) -> dict[str, Any] | None:
        return json.loads(self._pause) if self._pause else None

    def set_probation(self, workload_key: str, until: float, rung: int, policy: str, now: float) -> None:
        # as in Redis: kept for max(1 s, until - now) from the write
        self._probation[workload_key] = (self.clock() + max(1.0, until - now),
                                         _dumps({"until": until, "rung": rung, "policy": policy}))

    def probation(self, workload_key: str) -> dict[str, Any] | None:
        entry = self._probation.get(workload_key)
        if entry is None:
            return None
        if self.clock() >= entry[0]:
            del self._probation[workload_key]
            return None
        return json.loads(entry[1])

    # ---------------------------------------------------------------- audit outbox
    def append_audit(self, audit: Iterable[dict[str, Any]]) -> None:
        self._outbox.extend(_dumps(r) for r in audit)

    def outbox_peek(self, n: int = 500) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self._outbox[:n]]

    def outbox_ack(self, n: int) -> None:
        if n > 0:
            del self._outbox[:n]

    def outbox_len(self) -> int:
        return len(self._outbox)


# ------------------------------------------------------------------------------- actuator

class RecordingActuator(Actuator):
    """An actuator whose "cluster" is ``state``: target -> {key: value}. Every call is recorded in
    ``calls`` as (method, idempotency key); ``apply`` sets the plan's params on its target, ``revert``
    puts back what ``observe`` saw for those keys and drops the keys that were not there.

    >>> act = RecordingActuator("quota")
    >>> plan = act.plan({"principal": "User:a", "client_id": "c"}, {"producer_byte_rate": 1024.0})
    >>> before = act.observe(plan)
    >>> act.apply(plan); act.apply(plan)
    >>> act.verify(plan), act.effective_applies
    (True, 1)
    >>> act.revert(plan, before); act.observe(plan) == before
    True
    """

    def __init__(self, kind: str = "quota", state: dict[str, dict[str, Any]] | None = None) -> None:
        self.kind = kind  # type: ignore[misc]
        self.state: dict[str, dict[str, Any]] = {} if state is None else state   # shared = one cluster
        self.calls: list[tuple[str, str]] = []
        self.effective_applies = 0   # applies that changed the state
        self.effective_reverts = 0

    @staticmethod
    def _target(plan: ActionPlan) -> str:
        return _dumps(plan.target)

    def plan(self, target: dict[str, str], params: dict[str, Any], quarantine_id: str = "") -> ActionPlan:
        return ActionPlan(self.kind, dict(target), dict(params), quarantine_id)

    def observe(self, plan: ActionPlan) -> dict[str, Any]:
        self.calls.append(("observe", plan.idempotency_key))
        return {"values": dict(self.state.get(self._target(plan), {}))}

    def apply(self, plan: ActionPlan) -> None:
        self.calls.append(("apply", plan.idempotency_key))
        values = self.state.setdefault(self._target(plan), {})
        if any(values.get(k) != v for k, v in plan.params.items()):
            self.effective_applies += 1
        values.update(plan.params)

    def verify(self, plan: ActionPlan) -> bool:
        self.calls.append(("verify", plan.idempotency_key))
        values = self.state.get(self._target(plan), {})
        return all(values.get(k) == v for k, v in plan.params.items())

    def revert(self, plan: ActionPlan, before: dict[str, Any]) -> None:
        self.calls.append(("revert", plan.idempotency_key))
        target = self._target(plan)
        values = dict(self.state.get(target, {}))
        was = dict(values)
        old = before.get("values", {})
        for k in plan.params:
            if k in old:
                values[k] = old[k]
            else:
                values.pop(k, None)
        if values != was:
            self.effective_reverts += 1
        if values:
            self.state[target] = values
        else:
            self.state.pop(target, None)

    def steps(self, method: str) -> int:
        """How often ``method`` was called."""
        return sum(1 for m, _ in self.calls if m == method)


# ------------------------------------------------------------------------------- actuator contract

def _ledger_round_trip(value: Any) -> Any:
    """What comes back from the ledger: JSON, nothing else."""
    return json.loads(json.dumps(value))


def check_apply_twice_equals_apply_once(actuator: Actuator, plan: ActionPlan, snapshot: Callable[[], Any]) -> None:
    before = actuator.observe(plan)
    actuator.apply(plan)
    once = snapshot()
    actuator.apply(plan)
    assert snapshot() == once, "a second apply changed the cluster again"
    assert actuator.verify(plan), "verify is false right after apply"
    actuator.revert(plan, before)


def check_revert_after_apply_restores(actuator: Actuator, plan: ActionPlan, snapshot: Callable[[], Any]) -> None:
    original, before = snapshot(), actuator.observe(plan)
    actuator.apply(plan)
    assert snapshot() != original, "apply changed nothing the snapshot can see"
    actuator.revert(plan, before)
    assert snapshot() == original, "revert did not restore the cluster as it was"
    assert actuator.observe(plan) == before, "revert did not restore what observe saw"


def check_verify_follows_apply(actuator: Actuator, plan: ActionPlan, snapshot: Callable[[], Any]) -> None:
    before = actuator.observe(plan)
    assert not actuator.verify(plan), "verify is true before any apply"
    actuator.apply(plan)
    assert actuator.verify(plan), "verify is false after apply"
    actuator.revert(plan, before)
    assert not actuator.verify(plan), "verify is still true after revert"


def check_revert_twice_is_harmless(actuator: Actuator, plan: ActionPlan, snapshot: Callable[[], Any]) -> None:
    original, before = snapshot(), actuator.observe(plan)
    actuator.apply(plan)
    actuator.revert(plan, before)
    actuator.revert(plan, before)
    assert snapshot() == original, "a second revert changed the cluster"


def check_revert_before_apply_changes_nothing(actuator: Actuator, plan: ActionPlan,
                                              snapshot: Callable[[], Any]) -> None:
    original, before = snapshot(), actuator.observe(plan)
    actuator.revert(plan, before)
    assert snapshot() == original, "revert without apply changed the cluster"


def check_restart_finishes_from_the_ledger(actuator: Actuator, plan: ActionPlan, snapshot: Callable[[], Any],
                                           fresh: Callable[[], Actuator]) -> None:
    """A restarted guardian (``fresh()``; plan and state read back as JSON) replays apply and reverts."""
    original = snapshot()
    before = _ledger_round_trip(actuator.observe(plan))
    stored_plan = _ledger_round_trip(plan.to_dict())
    actuator.apply(plan)
    restarted = fresh()
    again = ActionPlan.from_dict(stored_plan)
    assert again.idempotency_key == plan.idempotency_key, "the plan's key does not survive the ledger"
    restarted.apply(again)
    assert restarted.verify(again)
    restarted.revert(again, before)
    assert snapshot() == original, "the restarted guardian did not restore the cluster"


ACTUATOR_CHECKS = (check_apply_twice_equals_apply_once, check_revert_after_apply_restores,
                   check_verify_follows_apply, check_revert_twice_is_harmless,
                   check_revert_before_apply_changes_nothing)


def check_actuator(actuator: Actuator, plan: ActionPlan, snapshot: Callable[[], Any] | None = None,
                   fresh: Callable[[], Actuator] | None = None) -> None:
    """Every actuator check, in order, on one plan; each starts and ends with the plan not applied.

    ``snapshot`` reads the state the plan touches (independently of the actuator where possible;
    default ``actuator.observe(plan)``); ``fresh`` builds the actuator a restarted guardian would."""
    snap = snapshot or (lambda: actuator.observe(plan))
    for check in ACTUATOR_CHECKS:
        check(actuator, plan, snap)
    if fresh is not None:
        check_restart_finishes_from_the_ledger(actuator, plan, snap, fresh)


# ------------------------------------------------------------------------------- detector contract

def detector_trace(seed: int, n: int, slots: int = 3) -> tuple[Any, Any]:
    """Noisy diurnal-ish series per slot with a late 4x step on slot 0."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    vals = 100 + 20 * np.sin(2 * np.pi * t / 300)[:, None] + rng.normal(0, 5, (n, slots))
    vals[int(n * 0.8):, 0] *= 4
    return t, vals


def run_detector(det: Any, t: Any, vals: Any) -> Any:
    """score_learn over a trace; the scores, one row per time step."""
    import numpy as np

    slots = np.arange(vals.shape[1])
    return np.array([det.score_learn(slots, np.full(len(slots), ti), row) for ti, row in zip(t, vals)])


def check_detector_deterministic(factory: Callable[[int], Any]) -> None:
    import numpy as np

    t, vals = detector_trace(1, 600)
    np.testing.assert_array_equal(run_detector(factory(7), t, vals), run_detector(factory(7), t, vals))


def check_detector_sees_the_step(factory: Callable[[int], Any]) -> None:
    import numpy as np

    t, vals = detector_trace(2, 800)
    scores = run_detector(factory(0), t, vals)
    assert np.all((scores >= 0) & (scores <= 1)), "scores outside [0, 1]"
    assert scores[640:, 0].max() > scores[300:640, 0].max(), "the 4x step scores no higher than the noise"


def check_detector_snapshot_restore(factory: Callable[[int], Any]) -> None:
    import numpy as np

    t, vals = detector_trace(3, 700)
    original = factory(0)
    run_detector(original, t[:500], vals[:500])
    snaps = {s: json.loads(json.dumps(original.snapshot(s))) for s in range(vals.shape[1])}
    restored = factory(0)
    for s, snap in snaps.items():
        restored.restore(s, snap)
    np.testing.assert_array_equal(run_detector(original, t[500:], vals[500:]),
                                  run_detector(restored, t[500:], vals[500:]))


def check_detector_score_is_pure(factory: Callable[[int], Any]) -> None:
    t, vals = detector_trace(4, 300)
    det = factory(0)
    run_detector(det, t, vals)
    before = json.dumps(det.snapshot(0))
    det.score([0], [300.0], [1e9])
    assert json.dumps(det.snapshot(0)) == before, "score changed the state"


def check_detector_ignores_missing_values(factory: Callable[[int], Any]) -> None:
    import numpy as np

    det = factory(0)
    t, vals = detector_trace(5, 300)
    vals[::7, 1] = np.nan
    vals[::11, 2] = np.inf
    vals[:5, 0] = np.nan  # a series whose first samples are missing
    scores = run_detector(det, t, vals)
    assert np.all(np.isfinite(scores))
    assert np.all(scores[::7, 1] == 0.0), "a missing sample scored as evidence"
    after = det.score_learn([0, 1, 2], [300.0] * 3, [100.0, 100.0, 100.0])
    assert np.all(np.isfinite(after)), "missing values poisoned the state"


def check_detector_memory_is_bounded(factory: Callable[[int], Any]) -> None:
    import numpy as np

    det = factory(0)
    rng = np.random.default_rng(6)
    sizes = []
    for chunk in range(4):
        for i in range(600):
            det.score_learn([0], [chunk * 600 + i], [float(rng.lognormal(3, 1))])
        sizes.append(len(json.dumps(det.snapshot(0))))
    # state stops growing once its rings and tables are full, and stays under the declared bound
    assert sizes[-1] <= sizes[-2] * 1.05, "state still grows"
    assert sizes[-1] <= 4 * det.bytes_per_series + 1024, "state is over the declared bytes_per_series"


DETECTOR_CHECKS = (check_detector_deterministic, check_detector_sees_the_step, check_detector_snapshot_restore,
                   check_detector_score_is_pure, check_detector_ignores_missing_values,
                   check_detector_memory_is_bounded)


def check_detector(factory: Callable[[int], Any]) -> None:
    """Every detector check; ``factory(seed)`` builds a fresh detector."""
    for check in DETECTOR_CHECKS:
        check(factory)


# ------------------------------------------------------------------------------- policies and pressure

def without_harm_test(policies: PolicySet) -> PolicySet:
    """``policies`` with ``global.harm.enabled`` false: detections act on change alone."""
    harm = policies.global_.harm.model_copy(update={"enabled": False})
    return policies.model_copy(update={"global_": policies.global_.model_copy(update={"harm": harm})})


def pressure_blaming(clients: list[tuple[str, str]], ts: float, broker: str = "broker-1",
                     idle: float = 0.02, others: float = 5.0) -> Pressure:
    """Broker ``broker`` with request handlers ``idle`` idle; each of ``clients`` (principal, client-id)
    uses 90 % of a thread and the rest of the cluster ``others`` %: every one of them explains the pressure."""
    loads = {c: ClientLoad(request_time=90.0, bytes_in=1e6, bytes_out=1e6) for c in clients}
    loads[("User:someone-else", "other")] = ClientLoad(request_time=others, bytes_in=1e4, bytes_out=1e4)
    total = ClientLoad()
    for load in loads.values():
        total = total + load
    b = BrokerPressure(broker=broker, ts=ts, signals={"request_handler_idle": idle, "network_processor_idle": 0.9},
                       normals={}, clients=loads, total=total)
    return Pressure(ts=ts, brokers={broker: b})
