"""``ActionEngine``: the wiring of decide (pure), ledger, reconciler, lease and audit.

``handle(detection)`` decides and records, then converges the quarantine it
touched; ``tick(now)`` expires quarantines past their TTL, converges every
quarantine still dirty (this is the crash recovery), re-verifies active
actions now and then, judges the effect of verified throttles on the client's
cluster-wide rate (``guardian.policy.effect``; with a ``client_rates``
reader), and drains the audit outbox; ``run_forever`` loops over a detection
source while holding the lease.

The SRE/API verbs (approve, deny, appeal, release, extend, pause, resume,
list, get) only write the ledger with optimistic concurrency; whichever
engine holds the lease converges the cluster (at once if it is this one).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Iterable

from guardian.actuators.base import ActionPlan, Actuator
from guardian.model.detection import Detection
from guardian.store.audit import AuditSink, decision_record, drain, quarantine_record, step_record
from guardian.policy.decide import NEEDS_MEMBERS, NEEDS_POD, View, decide, traffic_of
from guardian.policy.effect import NOT_EFFECTIVE_EVENT, Effect, EffectRule, RatePoint, judge, series_of
from guardian.model.lifecycle import move
from guardian.model.quarantine import (ActionRecord, Decision, Outcome, QState, Quarantine,
                                   StepStatus, workload_key)
from guardian.engine.reconcile import CrashHook, Reconciler
from guardian.errors import ConflictError, GuardianError, NotLeaderError, PermanentError
from guardian.store.ledger import Ledger
from guardian.policy.config import PolicySet, ThrottleRung

log = logging.getLogger(__name__)

# on_event(event, quarantine, decision_or_None): escalation hook; failures never block an action.
EventHook = Callable[[str, Quarantine, "Decision | None"], None]
DecisionHook = Callable[[Detection, "Decision"], None]
TickHook = Callable[[dict[str, int]], None]
# pod_resolver(workload) -> (namespace, pod) of the pod that runs it, or None; consulted only when a
# pod-isolation rung cannot be planned because the detection names no pod.
PodResolver = Callable[[dict[str, str]], "tuple[str, str] | None"]
# group_members(group) -> the client-ids of its members now; consulted only when a group's throttle
# cannot be planned because the detection names no member.
GroupMembersResolver = Callable[[str], list[str]]
# client_rates(principal, client_id, metric) -> the client's cluster-wide points seen since it was first
# asked for (guardian.policy.effect.FollowedRates.read, or with several workers every worker's points,
# guardian.ingest.view.SharedClusterView.client_rates): how the engine follows a throttle's effect.
ClientRatesReader = Callable[[str, str, str], "list[RatePoint]"]
NEW_OUTCOMES = (Outcome.QUARANTINED, Outcome.AWAITING_APPROVAL, Outcome.SHADOW, Outcome.WATCH)
_NEW_STATE = {Outcome.QUARANTINED: QState.ACTIVE, Outcome.AWAITING_APPROVAL: QState.AWAITING_APPROVAL,
              Outcome.SHADOW: QState.PROPOSED, Outcome.WATCH: QState.WATCHING}
_NEW_EVENT = {Outcome.QUARANTINED: "created", Outcome.AWAITING_APPROVAL: "awaiting_approval",
              Outcome.SHADOW: "shadow", Outcome.WATCH: "watch"}


def _no_crash(step: str) -> None:
    return None


def _read(provider: Callable[[], Any] | None, what: str) -> Any:
    """A cluster provider's value now, or None (unknown) when there is none or it failed."""
    if provider is None:
        return None
    try:
        return provider()
    except GuardianError as exc:
        log.warning("cluster %s unknown: %s", what, exc)
        return None


class ActionEngine:
    def __init__(self, ledger: Ledger, policies: PolicySet, actuators: dict[str, Actuator], *,
                 audit_sink: AuditSink | None = None, lease: Any | None = None,
                 clock: Callable[[], float] = time.time,
                 cluster_traffic: Callable[[], float | None] | None = None,
                 cluster_pressure: Callable[[], Any] | None = None,
                 on_event: EventHook | None = None, crash_at: CrashHook | None = None,
                 drift_check_s: float = 30.0, name: str = "guardian",
                 pod_resolver: PodResolver | None = None,
                 group_members: GroupMembersResolver | None = None,
                 client_rates: ClientRatesReader | None = None, effect_rule: EffectRule | None = None,
                 on_decision: DecisionHook | None = None, on_tick: TickHook | None = None) -> None:
        self.ledger = ledger
        self.policies = policies
        self.actuators = actuators
        self.audit_sink = audit_sink
        self.lease = lease
        self.clock = clock
        self.cluster_traffic = cluster_traffic
        self.cluster_pressure = cluster_pressure   # () -> guardian.policy.pressure.Pressure | None
        self.on_event = on_event
        self.on_decision = on_decision   # every decision ``handle`` made (metrics, log lines)
        self.on_tick = on_tick           # every ``tick``'s counts
        self.crash_at = crash_at or _no_crash
        self.drift_check_s = drift_check_s
        self.name = name
        self.pod_resolver = pod_resolver
        self.group_members = group_members
        self.client_rates = client_rates
        self.effect_rule = effect_rule or EffectRule()
        self._last_deep = float("-inf")
        self._following: set[str] = set()          # quarantines with a verified throttle not judged yet
        self._follow_start: dict[str, float] = {}  # action key -> when this engine began following it
        self.reconciler = Reconciler(ledger, actuators, clock, fence=self._fence, crash_at=self.crash_at)
        # one converge at a time: with --api the API's thread (an SRE's release) and the engine's loop (its
        # tick) share this engine, and two reverts of one action raced: the loser's write of the record
        # failed on its version, so the release answered 409 after it had released the quarantine
        self._converging = threading.RLock()

    # ---------------------------------------------------------------- leadership
    def _fence(self):
        return self.lease.fence() if self.lease is not None else None

    def is_leader(self) -> bool:
        """Take or renew the lease; True when this engine may act (always, without a lease)."""
        return True if self.lease is None else self.lease.ensure()

    # ---------------------------------------------------------------- detections
    def view_for(self, detection: Detection, now: float) -> View:
        key = workload_key(detection.workload)
        counting = self.ledger.open_counting()
        throttled = sum(q.traffic for q in counting if q.throttles)
        return View(paused=self.ledger.pause_state() is not None, open_quarantines=len(counting),
                    throttled_traffic=throttled, cluster_traffic=_read(self.cluster_traffic, "traffic"),
                    existing=self.ledger.open_for(key), probation=self.ledger.probation(key),
                    pressure=_read(self.cluster_pressure, "pressure"))

    def _plans(self, decision: Decision) -> list[dict[str, Any]] | str:
        plans = []
        for intent in decision.intents:
            act = self.actuators.get(intent["kind"])
            if act is None:
                return f"no {intent['kind']!r} actuator is configured"
            try:
                plan: ActionPlan = act.plan(intent["target"], intent["params"], decision.quarantine_id or "")
            except PermanentError as exc:
                return f"{intent['kind']} actuator refused the plan: {exc}"
            plans.append({**plan.to_dict(), "rung": decision.rung})
        return plans

    def handle(self, detection: Detection) -> Decision:
        """Decide about one detection, record it, and act on it if the decision says so."""
        d = self._decide(detection)
        self._hook(self.on_decision, detection, d)
        return d

    def _decide(self, detection: Detection) -> Decision:
        if not self.is_leader():
            return Decision(Outcome.NOT_LEADER, f"{self.name} does not hold the action lease",
                            detection.id, dict(detection.workload), self.clock())
        for attempt in range(3):
            try:
                return self._handle_once(detection)
            except ConflictError as exc:
                if attempt == 2:
                    raise
                log.info("decision for %s raced another writer (%s); re-reading", detection.id, exc)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _hook(hook: Callable[..., None] | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:  # noqa: BLE001 - an observer (metrics, a log line) never stops the engine
            log.exception("engine hook %r failed", hook)

    def _completed(self, detection: Detection, reason: str) -> Detection | None:
        """The detection with what its rung lacked (``reason`` says which) looked up: the pod that
        runs its workload, or its group's member client-ids. None when nothing can be found."""
        wl = detection.workload
        try:
            if NEEDS_POD in reason and self.pod_resolver is not None:
                found = self.pod_resolver(dict(wl))
                extra = {"namespace": found[0], "pod": found[1]} if found else None
            elif NEEDS_MEMBERS in reason and self.group_members is not None and wl.get("group"):
                members = self.group_members(wl["group"])
                extra = {"client_ids": list(members)} if members else None
            else:
                return None
        except GuardianError as exc:
            log.warning("could not look up what %s lacks (%s): %s", wl, reason, exc)
            return None
        return dataclasses.replace(detection, extra={**detection.extra, **extra}) if extra else None

    def _handle_once(self, detection: Detection) -> Decision:
        now = self.clock()
        view = self.view_for(detection, now)
        d = decide(detection, self.policies, view, now)
        if d.outcome is Outcome.UNPLANNABLE:
            completed = self._completed(detection, d.reason)
            if completed is not None:
                detection = completed
                d = decide(detection, self.policies, view, now)
        plans: list[dict[str, Any]] = []
        if d.intents:
            resolved = self._plans(d)
            if isinstance(resolved, str):
                d.outcome, d.reason, d.intents = Outcome.UNPLANNABLE, resolved, []
            else:
                plans = resolved
        self.crash_at("plan")
        fence = self._fence()
        q: Quarantine | None = None
        watched = view.existing if view.existing is not None and view.existing.state is QState.WATCHING else None
        if watched is not None and d.outcome is Outcome.QUARANTINED:
            q = self._activate(watched, detection, d, plans, now)
            self.ledger.save_quarantine(q, fence=fence, audit=[decision_record(d, detection),
                                                              quarantine_record(q, "created", now, self.name)])
        elif watched is not None:
            q = None   # still only watched: the audit trail has the decision, the record is unchanged
            self.ledger.append_audit([decision_record(d, detection)])
        elif d.outcome in NEW_OUTCOMES:
            q = self._new_quarantine(detection, d, plans, now)
            event = _NEW_EVENT[d.outcome]
            self.ledger.create_quarantine(
                q, max_open=self.policies.global_.max_concurrent_quarantines if q.counts_for_caps else None,
                fence=fence, audit=[decision_record(d, detection), quarantine_record(q, event, now, self.name)])
        elif d.outcome in (Outcome.ESCALATED, Outcome.ESCALATION_AWAITING_APPROVAL) and view.existing is not None:
            q = view.existing
            q.detection, q.detections = detection.to_dict(), q.detections + 1
            if d.outcome is Outcome.ESCALATED:
                self._climb(q, d.rung or 0, plans, now)
                event = "escalated"
            else:
                q.pending_rung, q.pending = d.rung, plans
                event = "escalation_awaiting_approval"
            q.updated_at = now
            self.ledger.save_quarantine(q, fence=fence, audit=[decision_record(d, detection),
                                                              quarantine_record(q, event, now, self.name)])
        else:
            self.ledger.append_audit([decision_record(d, detection)])
        self.crash_at("record_decision")
        if q is not None:
            if d.acts:
                self._converge(q)
            self._emit(d.outcome.value, q, d)
        self._drain()
        return d

    def _new_quarantine(self, det: Detection, d: Decision, plans: list[dict[str, Any]], now: float) -> Quarantine:
        policy = self.policies.policy(d.policy or "")
        assert policy is not None and d.quarantine_id is not None and d.rung is not None
        rung = policy.ladder[d.rung]
        state = _NEW_STATE[d.outcome]
        watch = state is QState.WATCHING
        ttl = self.policies.global_.harm.watch_ttl_s if watch else rung.ttl_s
        q = Quarantine(id=d.quarantine_id, workload=dict(det.workload), workload_key=workload_key(det.workload),
                       policy=policy.name, state=QState.PROPOSED, rung=d.rung, dry_run=d.dry_run,
                       created_at=now, updated_at=now, rung_at=now, expires_at=now + ttl,
                       desired=plans, traffic=traffic_of(det),
                       throttles=isinstance(rung, ThrottleRung) and not watch,
                       detection=det.to_dict(), harm=d.harm)
        q.history.append({"ts": now, "from": None, "to": QState.PROPOSED.value, "by": self.name, "reason": d.reason})
        if state is not QState.PROPOSED:
            move(q, state, now, self.name, d.reason)
        return q

    def _activate(self, q: Quarantine, det: Detection, d: Decision, plans: list[dict[str, Any]],
                  now: float, by: str | None = None, reason: str | None = None) -> Quarantine:
        """A watch becomes an acting quarantine: its runaway now hurts, or an SRE approved it."""
        policy = self.policies.policy(q.policy)
        rung = policy.ladder[q.rung] if policy is not None and q.rung < len(policy.ladder) else None
        if plans:
            q.desired = plans
        q.detection, q.detections, q.harm = det.to_dict(), q.detections + 1, d.harm
        q.traffic = traffic_of(det)
        q.throttles = isinstance(rung, ThrottleRung)
        move(q, QState.ACTIVE, now, by or self.name, reason or d.reason)
        q.rung_at = now
        q.expires_at = now + (rung.ttl_s if rung is not None else self.policies.global_.harm.watch_ttl_s)
        return q

    def _climb(self, q: Quarantine, rung_index: int, plans: list[dict[str, Any]], now: float) -> None:
        policy = self.policies.policy(q.policy)
        rung = policy.ladder[rung_index] if policy and rung_index < len(policy.ladder) else None
        q.rung, q.rung_at = rung_index, now
        known = {p["idempotency_key"] for p in q.desired}
        q.desired = q.desired + [p for p in plans if p["idempotency_key"] not in known]
        q.pending_rung, q.pending = None, []
        if rung is not None:
            q.expires_at = max(q.expires_at, now + rung.ttl_s)
            q.throttles = q.throttles or isinstance(rung, ThrottleRung)
        q.history.append({"ts": now, "from": q.state.value, "to": q.state.value, "by": self.name,
                          "reason": f"rung {rung_index}"})

    # ---------------------------------------------------------------- convergence
    def _converge(self, q: Quarantine, deep: bool = False) -> bool:
        if not self.is_leader():
            return False
        with self._converging:
            paused = self.ledger.pause_state() is not None
            done = self.reconciler.converge(q, paused=paused, deep=deep)
            if done:
                self.ledger.mark_converged(q.id, q.version)
                if self.client_rates is not None and q.throttles and q.state.enforcing and not q.dry_run:
                    self._following.add(q.id)   # its throttles are verified: tick judges their effect
        return done

    def _drain(self) -> int:
        try:
            return drain(self.ledger, self.audit_sink, self.crash_at)
        except GuardianError as exc:
            log.warning("audit outbox not drained: %s", exc)
            return 0

    def _emit(self, event: str, q: Quarantine, d: Decision | None) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event, q, d)
        except Exception:  # noqa: BLE001 - a failing escalation channel never blocks or undoes an action
            log.exception("escalation hook failed for %s (%s)", q.id, event)

    def tick(self, now: float | None = None) -> dict[str, int]:
        """Expire, reconcile, re-verify and drain. Returns counts of what it did."""
        counts = self._tick(now)
        self._hook(self.on_tick, counts)
        return counts

    def _tick(self, now: float | None) -> dict[str, int]:
        now = self.clock() if now is None else now
        counts = {"expired": 0, "converged": 0, "pending": 0, "audited": 0}
        if not self.is_leader():
            return counts
        unfinished = self.ledger.unfinished()   # all of them: ``list`` reads only the newest 1,000
        for q in unfinished:
            if now >= q.expires_at:
                try:
                    self._finish(q, QState.EXPIRED, now, self.name, "TTL reached")
                    counts["expired"] += 1
                except ConflictError:
                    pass  # changed meanwhile; next tick sees it again
        unfinished = [q for q in unfinished if now < q.expires_at]
        deep = now - self._last_deep >= self.drift_check_s
        if deep:
            self._last_deep = now
            for q in unfinished:
                if q.state.enforcing:
                    self.ledger.mark_dirty(q.id, q.version)
        for qid, _version in self.ledger.dirty():
            q = self.ledger.get(qid)
            if q is None:
                continue
            if self._converge(q, deep=deep):
                counts["converged"] += 1
            else:
                counts["pending"] += 1
        counts.update(self._check_effects(now))
        counts["audited"] = self._drain()
        return counts

    # ---------------------------------------------------------------- throttle effect
    def _check_effects(self, now: float) -> dict[str, int]:
        """Judge every verified throttle whose effect is not recorded yet; count what was recorded."""
        counts: dict[str, int] = {}
        for qid in sorted(self._following):
            q = self.ledger.get(qid)
            if q is None or not q.state.enforcing or q.dry_run:
                self._forget(qid, q)
                continue
            waiting = False
            for rec in self.ledger.actions(q):
                if rec.plan.get("kind") != "quota" or rec.status is not StepStatus.VERIFIED or rec.effect:
                    continue
                effect, since = self._judge(rec, now)
                if effect is None:
                    waiting = True
                    continue
                try:
                    self._record_effect(q, rec, effect, since, now)
                except ConflictError as exc:
                    log.info("effect of %s raced another writer (%s); next tick", rec.key, exc)
                    waiting = True
                    continue
                counts[effect.result] = counts.get(effect.result, 0) + 1
            if not waiting:
                self._forget(qid, q)
        return counts

    def _forget(self, qid: str, q: Quarantine | None) -> None:
        self._following.discard(qid)
        for p in q.desired if q is not None else []:
            self._follow_start.pop(p.get("idempotency_key", ""), None)

    def _judge(self, rec: ActionRecord, now: float) -> tuple[Effect | None, float]:
        """(the effect, or None while it is too early; when following began)."""
        found = series_of(rec.plan)
        if isinstance(found, Effect):
            return found, now
        assert self.client_rates is not None
        _key, client_id, metric = found
        verified = [float(h["ts"]) for h in rec.history if h.get("status") == StepStatus.VERIFIED.value]
        # samples count from when this engine began reading them (after a restart: from then)
        since = max(verified[-1] if verified else now, self._follow_start.setdefault(rec.key, now))
        points = self.client_rates(str(rec.plan["target"].get("principal")), client_id, metric)
        return judge(rec.plan, points, since, now, self.effect_rule), since

    def _record_effect(self, q: Quarantine, rec: ActionRecord, effect: Effect, since: float, now: float) -> None:
        """Once per action: the effect on its record (a step in the audit trail); a throttle that did not
        work also goes into the quarantine's history and is escalated."""
        rec.effect = {**effect.to_dict(), "since": since, "ts": now}
        rec.history.append({"ts": now, "status": rec.status.value, "effect": effect.result})
        self.ledger.put_action(rec, fence=self._fence(), audit=[step_record(rec, now, effect.result)])
        self._follow_start.pop(rec.key, None)
        if effect.result != "not_effective":
            log.info("%s of %s: %s", rec.key, q.id, effect.line)
            return
        # Not re-planned here: a smaller q fitted to the moved spread would hold the client far under R once
        # it moves back; a runaway the throttle does not hold keeps being detected and climbs the ladder.
        log.warning("%s of %s: %s", rec.key, q.id, effect.line)
        q.history.append({"ts": now, "from": q.state.value, "to": q.state.value, "by": self.name,
                          "reason": effect.line, "event": NOT_EFFECTIVE_EVENT})
        q.updated_at = now
        try:
            self.ledger.save_quarantine(q, fence=self._fence(),
                                        audit=[quarantine_record(q, NOT_EFFECTIVE_EVENT, now, self.name, effect.line)])
        except ConflictError as exc:   # the action record has it; only the history line is lost
            log.warning("history of %s not updated with the throttle's effect: %s", q.id, exc)
        self._emit(NOT_EFFECTIVE_EVENT, q, None)

    def run_forever(self, detections_source: Any, stop: threading.Event | None = None,
                    poll_s: float = 0.5, tick_s: float = 1.0) -> None:
        """Handle detections until ``stop`` is set.

        ``detections_source`` is either an object with ``poll(timeout_s) -> Iterable[Detection]``
        (a Kafka consumer wrapper: only the lease holder polls) or a plain iterable.
        """
        stop = stop or threading.Event()
        last_tick = float("-inf")
        iterator = None if hasattr(detections_source, "poll") else iter(detections_source)
        while not stop.is_set():
            try:
                if not self.is_leader():
                    standby = getattr(detections_source, "standby", None)
                    if standby is not None:
                        standby()   # leave the detections to the lease holder (guardian.engine.source)
                    stop.wait(self.lease.renew_every_s if self.lease is not None else poll_s)
                    continue
                if iterator is None:
                    batch: Iterable[Detection] = detections_source.poll(poll_s)
                else:
                    item = next(iterator, None)
                    if item is None:
                        stop.wait(poll_s)
                        batch = []
                    else:
                        batch = [item]
                for det in batch:
                    self.handle(det)
                if time.monotonic() - last_tick >= tick_s:
                    self.tick()
                    last_tick = time.monotonic()
            except NotLeaderError as exc:
                log.warning("%s: %s", self.name, exc)
            except GuardianError as exc:
                log.warning("%s: %s; retrying", self.name, exc)
                stop.wait(getattr(exc, "delay", poll_s))

    # ---------------------------------------------------------------- SRE / API verbs
    def _load(self, qid: str) -> Quarantine:
        q = self.ledger.get(qid)
        if q is None:
            raise PermanentError(f"no quarantine {qid}")
        return q

    def get(self, qid: str) -> Quarantine | None:
        return self.ledger.get(qid)

    def actions(self, qid: str) -> list[Any]:
        return self.ledger.actions(self._load(qid))

    def list_quarantines(self, states: Iterable[QState] | None = None, tenant: str | None = None) -> list[Quarantine]:
        return self.ledger.list(states=states, tenant=tenant)

    def approve(self, qid: str, by: str, note: str = "") -> Quarantine:
        """Let a quarantine awaiting approval act, or a pending escalation climb."""
        q, now = self._load(qid), self.clock()
        if q.state is QState.WATCHING:
            # an SRE (or an agent's proposal an SRE accepted) turns the watch into a quarantine
            policy = self.policies.policy(q.policy)
            rung = policy.ladder[q.rung] if policy is not None and q.rung < len(policy.ladder) else None
            move(q, QState.ACTIVE, now, by, note or "watch approved into a quarantine")
            q.rung_at = now
            q.throttles = isinstance(rung, ThrottleRung)
            if rung is not None:
                q.expires_at = now + rung.ttl_s
            event = "approved"
        elif q.state is QState.AWAITING_APPROVAL:
            policy = self.policies.policy(q.policy)
            move(q, QState.ACTIVE, now, by, note or "approved")
            q.rung_at = now
            if policy is not None:
                q.expires_at = now + policy.ladder[q.rung].ttl_s
            event = "approved"
        elif q.pending_rung is not None and q.state.enforcing:
            self._climb(q, q.pending_rung, q.pending, now)
            event = "escalation_approved"
        else:
            raise ConflictError(f"quarantine {qid} is {q.state.value} with nothing awaiting approval")
        self.ledger.save_quarantine(q, audit=[quarantine_record(q, event, now, by, note)])
        self._after_change(q, event)
        return q

    def appeal(self, qid: str, by: str, reason: str, details: dict[str, Any] | None = None) -> Quarantine:
        """``details``: what the API adds to the appeal record (id, requested limit, until, earlier appeals)."""
        q, now = self._load(qid), self.clock()
        move(q, QState.APPEALED, now, by, reason)
        q.appeal = {**(details or {}), "by": by, "reason": reason, "ts": now, "decision": None}
        self.ledger.save_quarantine(q, audit=[quarantine_record(q, "appealed", now, by, reason)])
        self._emit("appealed", q, None)
        return q

    def deny(self, qid: str, by: str, note: str = "") -> Quarantine:
        """Deny an appeal (back to active), or reject a quarantine awaiting approval (released)."""
        q, now = self._load(qid), self.clock()
        if q.state is QState.AWAITING_APPROVAL:
            return self._finish(q, QState.RELEASED, now, by, note or "approval denied")
        if q.state is QState.WATCHING:
            return self._finish(q, QState.RELEASED, now, by, note or "watch dismissed")
        if q.state is not QState.APPEALED:
            if q.pending_rung is not None:  # reject a pending escalation
                q.pending_rung, q.pending = None, []
                self.ledger.save_quarantine(q, audit=[quarantine_record(q, "escalation_denied", now, by, note)])
                return q
            raise ConflictError(f"quarantine {qid} is {q.state.value}: no appeal to deny")
        move(q, QState.ACTIVE, now, by, note or "appeal denied")
        q.appeal = {**(q.appeal or {}), "decision": "denied", "decided_by": by, "note": note, "decided_at": now}
        self.ledger.save_quarantine(q, audit=[quarantine_record(q, "appeal_denied", now, by, note)])
        self._after_change(q, "appeal_denied")
        return q

    def release(self, qid: str, by: str, reason: str = "", only_if: QState | None = None) -> Quarantine:
        """Release now (an SRE, or an appeal granted): revert every action, start probation.

        ``only_if``: the state the caller decided on (an appeal grant: ``APPEALED``); if the
        quarantine left it meanwhile (another SRE denied the appeal), a conflict instead."""
        q, now = self._load(qid), self.clock()
        if only_if is not None and q.state is not only_if:
            raise ConflictError(f"quarantine {qid} is {q.state.value} now, not {only_if.value}: decided meanwhile")
        if q.state is QState.APPEALED:
            q.appeal = {**(q.appeal or {}), "decision": "granted", "decided_by": by, "decided_at": now}
        return self._finish(q, QState.RELEASED, now, by, reason or "released")

    def extend(self, qid: str, by: str, seconds: float, reason: str = "") -> Quarantine:
        if seconds <= 0:
            raise PermanentError("extend by a positive number of seconds")
        q, now = self._load(qid), self.clock()
        if q.state.terminal:
            raise ConflictError(f"quarantine {qid} is {q.state.value}; it cannot be extended")
        q.expires_at = max(q.expires_at, now) + seconds
        q.updated_at = now
        q.history.append({"ts": now, "from": q.state.value, "to": q.state.value, "by": by,
                          "reason": f"extended by {seconds:.0f}s" + (f": {reason}" if reason else "")})
        self.ledger.save_quarantine(q, audit=[quarantine_record(q, "extended", now, by, reason)])
        return q

    def pause(self, by: str, reason: str = "") -> None:
        now = self.clock()
        self.ledger.set_pause(by, reason, now, audit=[{"id": f"pause:{now}", "ts": now, "type": "pause",
                                                       "key": "pause", "by": by, "reason": reason}])

    def resume(self, by: str, reason: str = "") -> None:
        now = self.clock()
        self.ledger.clear_pause(audit=[{"id": f"resume:{now}", "ts": now, "type": "resume",
                                        "key": "pause", "by": by, "reason": reason}])
        for q in self.ledger.unfinished():
            if q.state.enforcing:
                self.ledger.mark_dirty(q.id, q.version)   # apply what the pause held back

    def paused(self) -> dict[str, Any] | None:
        return self.ledger.pause_state()

    def _finish(self, q: Quarantine, state: QState, now: float, by: str, reason: str) -> Quarantine:
        acted = q.state.enforcing or any(True for _ in self.ledger.actions(q))
        move(q, state, now, by, reason)
        q.pending_rung, q.pending = None, []
        self.ledger.save_quarantine(q, audit=[quarantine_record(q, state.value, now, by, reason)])
        probation = self.policies.global_.probation
        if acted and not q.dry_run and probation.duration_s > 0:
            self.ledger.set_probation(q.workload_key, now + probation.duration_s, q.rung, q.policy, now)
        self._after_change(q, state.value)
        return q

    def _after_change(self, q: Quarantine, event: str) -> None:
        if self.lease is None or self.lease.held():
            self._converge(q)
            self._drain()
        self._emit(event, q, None)
