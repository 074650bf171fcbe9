"""The reconciler: drives each action record towards what its quarantine wants.

One code path serves the first execution and every restart, so a crash at any
step converges the same way (the kopf habit: describe the change, record the
progress, resume from the record):

    enforcing quarantine (active, appealed), for each desired plan:
      no record  -> observe -> [write record: planned, with the state before]
      planned    -> apply   -> [write: applied]
      applied    -> verify  -> [write: verified]   (not holding: back to planned, retry)
    released / expired, for each plan in reverse:
      planned | applied | verified | failed -> revert(before) -> [write: reverted]

The state before apply is observed only while no record exists, so a crash
after apply can never record the throttled state as "before". Apply runs only
from ``planned`` and is idempotent, so a crash between apply and its record
re-runs a no-op: each change reaches the cluster once.

A step that raises ``TemporaryError(delay=d)`` is not tried again for that
action before ``d`` seconds of the engine's clock have passed (the kopf
habit: the error says when to retry); the other quarantines keep converging
meanwhile. The wait is kept in memory: a restarted engine retries at once.

``crash_at(step)`` is a test hook called at every step boundary (``observe``,
``record_planned``, ``apply``, ``record_applied``, ``verify``,
``record_verified``, ``revert``, ``record_reverted``); raising there is a crash.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from guardian.actuators.base import ActionPlan, Actuator
from guardian.store.audit import step_record
from guardian.model.quarantine import ActionRecord, Quarantine, StepStatus
from guardian.errors import PermanentError, TemporaryError
from guardian.store.ledger import Fence, Ledger

log = logging.getLogger(__name__)

CrashHook = Callable[[str], None]


def _no_crash(step: str) -> None:
    return None


class Reconciler:
    def __init__(self, ledger: Ledger, actuators: dict[str, Actuator], clock: Callable[[], float],
                 fence: Callable[[], Fence | None] = lambda: None, crash_at: CrashHook | None = None,
                 max_attempts: int = 5) -> None:
        self.ledger = ledger
        self.actuators = actuators
        self.clock = clock
        self.fence = fence
        self.crash_at = crash_at or _no_crash
        self.max_attempts = max_attempts
        self._retry_at: dict[str, float] = {}   # action key -> engine time before which it is not retried

    def _waiting(self, key: str) -> bool:
        """True while ``key`` waits out the delay of its last ``TemporaryError``."""
        until = self._retry_at.get(key)
        if until is None:
            return False
        if self.clock() < until:
            return True
        del self._retry_at[key]
        return False

    def _retry_later(self, key: str, exc: TemporaryError) -> None:
        self._retry_at[key] = self.clock() + max(0.0, float(exc.delay))

    # ---------------------------------------------------------------- whole quarantines
    def converge(self, q: Quarantine, paused: bool = False, deep: bool = False) -> bool:
        """Bring the cluster to what ``q`` wants. True when nothing is left to do.

        ``paused``: apply nothing new (reverts still run). ``deep``: re-verify actions
        already verified and re-apply those that drifted.
        """
        if q.dry_run:
            return True
        done = True
        if q.state.enforcing:
            for plan_d in q.desired:
                if paused:
                    rec = self.ledger.get_action(plan_d["idempotency_key"])
                    done = done and rec is not None and rec.status in (StepStatus.VERIFIED, StepStatus.FAILED)
                    continue
                done = self._enforce(q, plan_d, deep) and done
        elif q.state.terminal:
            for plan_d in reversed(q.desired):
                done = self._undo(q, plan_d) and done
        return done

    # ---------------------------------------------------------------- one action
    def _actuator(self, plan: ActionPlan) -> Actuator:
        act = self.actuators.get(plan.kind)
        if act is None:
            raise PermanentError(f"no {plan.kind!r} actuator is configured")
        return act

    def _write(self, rec: ActionRecord, status: StepStatus, **changes: Any) -> ActionRecord:
        ts = self.clock()
        rec.status = status
        for k, v in changes.items():
            setattr(rec, k, v)
        rec.history.append({"ts": ts, "status": status.value, **({"error": rec.error} if rec.error else {})})
        return self.ledger.put_action(rec, fence=self.fence(), audit=[step_record(rec, ts)])

    def _enforce(self, q: Quarantine, plan_d: dict[str, Any], deep: bool) -> bool:
        plan = ActionPlan.from_dict(plan_d)
        key = plan.idempotency_key
        if self._waiting(key):
            return False
        rec = self.ledger.get_action(key)
        try:
            act = self._actuator(plan)
            if rec is None:
                before = act.observe(plan)
                self.crash_at("observe")
                rec = ActionRecord(key=key, quarantine_id=q.id, rung=int(plan_d.get("rung", q.rung)),
                                   plan=plan.to_dict(), status=StepStatus.PLANNED, before=before)
                rec = self._write(rec, StepStatus.PLANNED)
                self.crash_at("record_planned")
            if rec.status is StepStatus.VERIFIED and deep:
                if act.verify(plan):
                    return True
                log.warning("action %s of %s drifted; re-applying", key, q.id)
                rec = self._write(rec, StepStatus.PLANNED, error="drift: verify failed after it held")
            if rec.status is StepStatus.PLANNED:
                act.apply(plan)
                self.crash_at("apply")
                rec = self._write(rec, StepStatus.APPLIED, attempts=rec.attempts + 1)
                self.crash_at("record_applied")
            if rec.status is StepStatus.APPLIED:
                ok = act.verify(plan)
                self.crash_at("verify")
                if ok:
                    rec = self._write(rec, StepStatus.VERIFIED, error=None)
                    self.crash_at("record_verified")
                elif rec.attempts >= self.max_attempts:
                    rec = self._write(rec, StepStatus.FAILED,
                                      error=f"change does not hold after {rec.attempts} applies")
                else:
                    rec = self._write(rec, StepStatus.PLANNED, error="verify failed; will re-apply")
                    return False
            return rec.status in (StepStatus.VERIFIED, StepStatus.FAILED)
        except TemporaryError as exc:
            log.warning("action %s of %s: %s; retrying in %.1fs", key, q.id, exc, exc.delay)
            self._retry_later(key, exc)
            return False
        except PermanentError as exc:
            log.error("action %s of %s failed: %s", key, q.id, exc)
            if rec is None:
                rec = ActionRecord(key=key, quarantine_id=q.id, rung=int(plan_d.get("rung", q.rung)),
                                   plan=plan.to_dict(), status=StepStatus.FAILED, before=None)
            self._write(rec, StepStatus.FAILED, error=str(exc))
            return True

    def _undo(self, q: Quarantine, plan_d: dict[str, Any]) -> bool:
        plan = ActionPlan.from_dict(plan_d)
        if self._waiting(plan.idempotency_key):
            return False
        rec = self.ledger.get_action(plan.idempotency_key)
        if rec is None or rec.status is StepStatus.REVERTED:
            return True  # never observed, so never applied; or already undone
        if rec.before is None:
            return True  # failed before observing: nothing was applied
        try:
            self._actuator(plan).revert(plan, rec.before)
            self.crash_at("revert")
            self._write(rec, StepStatus.REVERTED, error=None)
            self.crash_at("record_reverted")
            return True
        except TemporaryError as exc:
            log.warning("revert of %s (%s): %s; retrying in %.1fs", rec.key, q.id, exc, exc.delay)
            self._retry_later(rec.key, exc)
            return False
        except PermanentError as exc:
            log.error("revert of %s (%s) failed: %s", rec.key, q.id, exc)
            if rec.status is not StepStatus.FAILED or rec.error != f"revert: {exc}":
                self._write(rec, StepStatus.FAILED, error=f"revert: {exc}")
            return False
