"""What the API (and the MCP server) do, above the action engine and below HTTP.

Every verb takes the caller's ``Identity``, loads the quarantine, asks
``guardian.api.auth.authorize`` (through ``require``) and then calls the engine's
verb (``approve``, ``deny``, ``release``, ``extend``, ``appeal``, ``pause``,
``resume``), which writes the ledger with optimistic concurrency; whichever
engine holds the action lease converges the cluster. The few things the
engine has no verb for live here, built from the same ledger primitives:

* comments and proposals: a history entry with ``event`` set;
* granting an appeal with a temporary raised limit: the throttle's plan is
  replaced by one with the raised rate that *inherits the original state
  recorded before the throttle*, so when it ends the quota returns exactly to
  what it was before the guardian touched it.

Hidden and missing records both raise ``NotFoundError``.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from guardian.store.audit import quarantine_record
from guardian.api.auth import AccessPolicy, Action, Identity, Resource, authorize, require
from guardian.model.lifecycle import move
from guardian.model.quarantine import ActionRecord, QState, Quarantine, StepStatus
from guardian.errors import ConflictError, NotFoundError, PermanentError

log = logging.getLogger(__name__)

RATE_KEYS = ("producer_byte_rate", "consumer_byte_rate", "request_percentage")
MAX_PREVIOUS_APPEALS = 10


class InvalidRequestError(PermanentError):
    """The request is well-formed but makes no sense for this record (the API answers 422)."""


class SeriesSource(Protocol):
    def series(self, q: Quarantine) -> list[tuple[float, float]]:
        """The metric behind ``q``'s detection around the time it fired."""


class DetectionEvidence:
    """The samples the detection carried (the default: no extra I/O)."""

    def series(self, q: Quarantine) -> list[tuple[float, float]]:
        pts = (q.detection or {}).get("evidence") or []
        out = []
        for p in pts:
            try:
                out.append((float(p[0]), float(p[1])))
            except (TypeError, ValueError, IndexError):
                continue
        return out


def principal_of(q: Quarantine) -> str | None:
    return q.workload.get("principal")


def resource_of(q: Quarantine) -> Resource:
    return Resource("quarantine", q.id, principal_of(q))


def explain(q: Quarantine) -> str:
    """The detection's own explanation when it has one, else a plain sentence from its fields."""
    d = q.detection or {}
    try:
        from guardian.model.detection import Detection

        return Detection.from_dict(d).explain()
    except Exception:  # noqa: BLE001 - a partial detection record still gets a sentence
        who = q.workload.get("principal", "?")
        if q.workload.get("client_id"):
            who += f" client-id {q.workload['client_id']}"
        return f"{d.get('signature', 'detection')}: {who} {d.get('metric', '')}".strip()


# ---------------------------------------------------------------- cursors

def encode_cursor(ts: float, rid: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([ts, rid]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, rid = json.loads(raw)
        return float(ts), str(rid)
    except Exception:  # noqa: BLE001 - any garbage is the same client error
        raise InvalidRequestError("the cursor is not one this API returned") from None


def paginate(rows: list[tuple[float, str, Any]], cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    """``rows`` are (ts, id, item) newest first; the cursor is the last (ts, id) already returned."""
    rows = sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)
    if cursor:
        cts, cid = decode_cursor(cursor)
        rows = [r for r in rows if (r[0], r[1]) < (cts, cid)]
    page = rows[:limit]
    nxt = encode_cursor(page[-1][0], page[-1][1]) if len(rows) > limit else None
    return [r[2] for r in page], nxt


# ---------------------------------------------------------------- appeals as data

def appeal_state(a: dict[str, Any], q: Quarantine) -> str:
    decision = a.get("decision")
    if decision in ("granted", "denied"):
        return decision
    if q.state is QState.APPEALED and q.appeal is a:
        return "pending"
    return "lapsed"   # the quarantine ended (or was released outright) before anyone decided


def appeals_of(q: Quarantine) -> list[dict[str, Any]]:
    """The current appeal and the earlier ones (newest first)."""
    if not q.appeal:
        return []
    return [q.appeal] + list(q.appeal.get("previous") or [])


@dataclass
class ReviewService:
    engine: Any                       # guardian.engine.ActionEngine (its ledger, policies, verbs)
    access: AccessPolicy = AccessPolicy()
    series_source: SeriesSource = DetectionEvidence()
    scan_limit: int = 5000

    @property
    def ledger(self) -> Any:
        return self.engine.ledger

    @property
    def clock(self) -> Callable[[], float]:
        return self.engine.clock

    # ---------------------------------------------------------------- reading
    def allowed(self, who: Identity, action: Action, resource: Resource | None = None) -> bool:
        return authorize(who, action, resource, self.access).allowed

    def require(self, who: Identity, action: Action, resource: Resource | None = None) -> None:
        require(who, action, resource, self.access)

    def load(self, who: Identity, qid: str, action: Action) -> Quarantine:
        q = self.ledger.get(qid) if qid.startswith("q-") else None
        if q is None:
            raise NotFoundError(f"no quarantine {qid}")
        self.require(who, action, resource_of(q))
        return q

    def visible(self, who: Identity, states: Iterable[QState] | None = None) -> list[Quarantine]:
        """The newest ``scan_limit`` quarantines this identity may see (a tenant's: its own newest)."""
        if who.scoped:
            wanted = set(states) if states is not None else None
            qs = [q for q in itertools.islice(self.ledger.newest(batch=500, principals=who.principals),
                                              self.scan_limit)
                  if wanted is None or q.state in wanted]
        else:
            qs = self.ledger.list(states=states, limit=self.scan_limit)
        return [q for q in qs if authorize(who, Action.QUARANTINE_LIST, resource_of(q), self.access).allowed]

    def list_quarantines(self, who: Identity, states: list[QState] | None = None, principal: str | None = None,
                         policy: str | None = None, action: str | None = None, appealed: bool | None = None,
                         cursor: str | None = None, limit: int = 50) -> tuple[list[Quarantine], str | None]:
        """One page, newest first, and the cursor of the next (None after the last).

        Reads the history from the cursor on and stops at the page's end, so a page costs what it
        returns, not the whole history. One request looks at no more than ``scan_limit``
        quarantines: when the filters leave fewer than ``limit`` of those, the page is short and its
        cursor goes on from the last one looked at. A scoped (tenant) identity, or a ``principal``
        filter, reads only that principal's quarantines (the ledger's per-principal index)."""
        self.require(who, Action.QUARANTINE_LIST)
        after = decode_cursor(cursor) if cursor else None
        wanted = set(states) if states else None
        page: list[Quarantine] = []
        looked, last = 0, None
        # a tenant's list (or one principal's) reads that principal's own index, not the whole history
        principals = (principal,) if principal is not None else who.principals if who.scoped else None
        if principal is not None and not who.sees(principal):
            return [], None   # as for a principal without quarantines: nothing to read
        for q in self.ledger.newest(after, batch=min(self.scan_limit, max(2 * limit, 100)), principals=principals):
            if looked == self.scan_limit:
                return page, encode_cursor(last.created_at, last.id)   # type: ignore[union-attr]
            looked, last = looked + 1, q
            if ((wanted is None or q.state in wanted)
                    and (principal is None or principal_of(q) == principal)
                    and (policy is None or q.policy == policy)
                    and (action is None or any(p.get("kind") == action for p in q.desired))
                    and (appealed is None or (q.state is QState.APPEALED) == appealed)
                    and authorize(who, Action.QUARANTINE_LIST, resource_of(q), self.access).allowed):
                if len(page) == limit:
                    return page, encode_cursor(page[-1].created_at, page[-1].id)
                page.append(q)
        return page, None

    def actions_of(self, q: Quarantine) -> dict[str, ActionRecord]:
        return {r.key: r for r in self.ledger.actions(q)}

    def evidence(self, q: Quarantine) -> dict[str, Any] | None:
        d = q.detection or {}
        if not d:
            return None
        series = self.series_source.series(q)
        ts = [p[0] for p in series]
        return {"explanation": explain(q), "signature": d.get("signature"), "severity": d.get("severity"),
                "confidence": d.get("confidence"), "metric": d.get("metric"), "baseline": d.get("baseline"),
                "observed": d.get("observed"), "ratio": d.get("ratio"), "duration_s": d.get("duration_s"),
                "detector": d.get("detector"), "detected_at": d.get("ts"),
                "series": [{"ts": t, "value": v} for t, v in series],
                "window_from": min(ts) if ts else None, "window_to": max(ts) if ts else None}

    def probation(self, q: Quarantine) -> dict[str, Any] | None:
        return self.ledger.probation(q.workload_key)

    # ---------------------------------------------------------------- appeals
    def find_appeal(self, who: Identity, appeal_id: str) -> tuple[Quarantine, dict[str, Any]]:
        qid = appeal_id.rsplit(".", 1)[0]
        try:
            q = self.load(who, qid, Action.APPEAL_READ)
        except NotFoundError:
            raise NotFoundError(f"no appeal {appeal_id}") from None
        for a in appeals_of(q):
            if a.get("id") == appeal_id:
                return q, a
        raise NotFoundError(f"no appeal {appeal_id}")

    def list_appeals(self, who: Identity, state: str | None = None, cursor: str | None = None,
                     limit: int = 50) -> tuple[list[tuple[Quarantine, dict[str, Any]]], str | None]:
        self.require(who, Action.APPEAL_READ)
        rows = []
        for q in self.visible(who):
            for a in appeals_of(q):
                if state is not None and appeal_state(a, q) != state:
                    continue
                rows.append((float(a.get("ts", 0.0)), str(a.get("id", "")), (q, a)))
        return paginate(rows, cursor, limit)

    def file_appeal(self, who: Identity, qid: str, justification: str, requested_limit: float | None,
                    until: float | None) -> tuple[Quarantine, dict[str, Any]]:
        q = self.load(who, qid, Action.APPEAL_FILE)
        if q.state is QState.APPEALED:
            raise ConflictError(f"quarantine {qid} already has a pending appeal")
        if q.state is not QState.ACTIVE:
            raise ConflictError(f"quarantine {qid} is {q.state.value}; only an active quarantine can be appealed")
        now = self.clock()
        if until is not None and until <= now:
            raise InvalidRequestError("`until` must be in the future")
        seq = 1 + sum(1 for h in q.history if h.get("to") == QState.APPEALED.value)
        previous = []
        if q.appeal:
            prior = {k: v for k, v in q.appeal.items() if k != "previous"}
            previous = ([prior] + list(q.appeal.get("previous") or []))[:MAX_PREVIOUS_APPEALS]
        details = {"id": f"{q.id}.{seq}", "justification": justification, "requested_limit": requested_limit,
                   "until": until, "previous": previous}
        q = self.engine.appeal(q.id, who.label, justification, details=details)
        return q, q.appeal

    # ---------------------------------------------------------------- SRE verbs
    def _check_version(self, q: Quarantine, expected: int | None) -> None:
        if expected is not None and expected != q.version:
            raise ConflictError(f"quarantine {q.id} is at version {q.version}, not {expected}; re-read it")

    def approve(self, who: Identity, qid: str, reason: str = "", raised_limit: float | None = None,
                until: float | None = None, expected_version: int | None = None) -> Quarantine:
        q = self.load(who, qid, Action.QUARANTINE_APPROVE)
        self._check_version(q, expected_version)
        if q.state is QState.APPEALED:
            if raised_limit is not None:
                return self._grant_with_limit(who, q, raised_limit, until, reason)
            if until is not None:
                raise InvalidRequestError("`until` goes with `raised_limit`")
            # only while it is still appealed: a second SRE's concurrent deny makes this a conflict
            return self.engine.release(q.id, who.label, reason or "appeal granted", only_if=QState.APPEALED)
        if raised_limit is not None or until is not None:
            raise InvalidRequestError("`raised_limit` and `until` apply to granting an appeal only")
        return self.engine.approve(q.id, who.label, reason)

    def deny(self, who: Identity, qid: str, reason: str, expected_version: int | None = None) -> Quarantine:
        q = self.load(who, qid, Action.QUARANTINE_DENY)
        self._check_version(q, expected_version)
        if q.state not in (QState.APPEALED, QState.AWAITING_APPROVAL, QState.WATCHING) and q.pending_rung is None:
            raise ConflictError(f"quarantine {qid} is {q.state.value} with nothing to deny")
        return self.engine.deny(q.id, who.label, reason)

    def release(self, who: Identity, qid: str, reason: str = "", expected_version: int | None = None) -> Quarantine:
        q = self.load(who, qid, Action.QUARANTINE_RELEASE)
        self._check_version(q, expected_version)
        return self.engine.release(q.id, who.label, reason or "released")

    def extend(self, who: Identity, qid: str, seconds: float, reason: str = "",
               expected_version: int | None = None) -> Quarantine:
        q = self.load(who, qid, Action.QUARANTINE_EXTEND)
        self._check_version(q, expected_version)
        return self.engine.extend(q.id, who.label, seconds, reason)

    def comment(self, who: Identity, qid: str, text: str) -> Quarantine:
        q = self.load(who, qid, Action.QUARANTINE_COMMENT)
        return self._note(who, q, "comment", text)

    def propose(self, who: Identity, qid: str, action: str, reason: str, seconds: float | None) -> Quarantine:
        q = self.load(who, qid, Action.QUARANTINE_PROPOSE)
        if q.state.terminal:
            raise ConflictError(f"quarantine {qid} is {q.state.value}; there is nothing left to propose")
        what = action + (f" by {seconds:.0f}s" if action == "extend" and seconds else "")
        return self._note(who, q, "proposal", f"proposes {what}: {reason}",
                          proposal={"action": action, "seconds": seconds})

    def _note(self, who: Identity, q: Quarantine, event: str, text: str, **extra: Any) -> Quarantine:
        now = self.clock()
        q.history.append({"ts": now, "from": q.state.value, "to": q.state.value, "by": who.label,
                          "reason": text, "event": event, **extra})
        q.updated_at = now
        return self.ledger.save_quarantine(q, audit=[quarantine_record(q, event, now, who.label, text)])

    def pause(self, who: Identity, reason: str) -> dict[str, Any]:
        self.require(who, Action.GUARDIAN_PAUSE)
        self.engine.pause(who.label, reason)
        return self.ledger.pause_state() or {}

    def resume(self, who: Identity, reason: str) -> None:
        self.require(who, Action.GUARDIAN_RESUME)
        self.engine.resume(who.label, reason)

    # ---------------------------------------------------------------- appeal granted with a raised limit
    def _grant_with_limit(self, who: Identity, q: Quarantine, raised: float, until: float | None,
                          reason: str) -> Quarantine:
        from guardian.actuators.base import ActionPlan
        from guardian.actuators.quota import QuotaActuator

        now = self.clock()
        if until is None:
            until = q.expires_at
        if until <= now:
            raise InvalidRequestError("`until` must be in the future")
        idx = next((i for i in range(len(q.desired) - 1, -1, -1) if q.desired[i].get("kind") == "quota"), None)
        if idx is None:
            raise InvalidRequestError("`raised_limit` needs a quota throttle to relax; this quarantine has none")
        old = q.desired[idx]
        keys = [k for k in RATE_KEYS if k in old.get("params", {})]
        # A throttle translated from a cluster-wide rate (several brokers) is relaxed cluster-wide too: the
        # raised limit is the new cluster-wide rate, set on each broker at the same share as before.
        share = old["params"].get("broker_share")
        cluster = {"cluster_rate": raised, "broker_share": share} if share else {}
        per_broker = raised * float(share) if share else raised
        # Byte-rate quotas are whole bytes/s (the broker refuses a fraction); percentages may be fractional.
        rates = {k: (per_broker if k == "request_percentage" else float(max(1, int(per_broker)))) for k in keys}
        was = {k: float(old["params"].get("cluster_rate", old["params"][k])) for k in keys}
        low = [k for k in keys if was[k] >= (raised if share else rates[k])]
        if low:
            now_at = ", ".join(f"{k}={was[k]:g}{' cluster-wide' if share else ''}" for k in low)
            raise InvalidRequestError(f"raised_limit {raised:g} is not above the throttle ({now_at})")
        params = {"scope": old["params"].get("scope"), **rates, **cluster}
        target = {k: v for k, v in old["target"].items() if k in ("principal", "client_id")}
        new = QuotaActuator(admin=None).plan(target, params, q.id).to_dict()
        new["rung"] = old.get("rung", q.rung)
        old_rec = self.ledger.get_action(old["idempotency_key"])
        if old_rec is not None and old_rec.before is not None and old_rec.status is not StepStatus.REVERTED:
            # The relaxed plan inherits the state recorded before the throttle: its revert restores that.
            existing = self.ledger.get_action(new["idempotency_key"])
            if existing is None:
                rec = ActionRecord(key=new["idempotency_key"], quarantine_id=q.id, rung=int(new["rung"]),
                                   plan=ActionPlan.from_dict(new).to_dict(), status=StepStatus.PLANNED,
                                   before=old_rec.before, history=[{"ts": now, "status": "planned",
                                                                    "inherited_from": old_rec.key}])
                self.ledger.put_action(rec)
            elif existing.before != old_rec.before:
                raise ConflictError(f"a relaxed plan for {q.id} already exists with another recorded state")
        q.desired = q.desired[:idx] + q.desired[idx + 1:] + [new]
        move(q, QState.ACTIVE, now, who.label, reason or f"appeal granted with a limit of {raised:g} until {until:.0f}")
        q.appeal = {**(q.appeal or {}), "decision": "granted", "decided_by": who.label, "decided_at": now,
                    "note": reason, "raised_limit": raised, "raised_until": until}
        q.expires_at = until
        q.updated_at = now
        q = self.ledger.save_quarantine(q, audit=[quarantine_record(q, "appeal_granted_with_limit", now,
                                                                    who.label, reason)])
        probation = self.engine.policies.global_.probation
        if probation.duration_s > 0:
            self.ledger.set_probation(q.workload_key, until + probation.duration_s, q.rung, q.policy, now)
        return q

    # ---------------------------------------------------------------- decisions feed
    def decisions(self, who: Identity, start_ms: int, end_ms: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Every state change, comment and proposal in [start, end], as Grafana annotation rows (oldest first).

        ``timeEnd`` is when the state it entered ended (the next transition), so a
        Grafana region spans e.g. the whole time a quarantine was active.
        """
        self.require(who, Action.DECISIONS_READ)
        now_ms = int(self.clock() * 1000)
        rows: list[dict[str, Any]] = []
        for q in self.visible(who):
            transitions = [h for h in q.history if h.get("event") is None and h.get("from") != h.get("to")]
            for h in q.history:
                t = int(float(h.get("ts", 0.0)) * 1000)
                if t < start_ms or t > end_ms:
                    continue
                event = h.get("event") or ("transition" if h.get("from") != h.get("to") else "update")
                t_end = t
                if event == "transition" and not QState(h["to"]).terminal:
                    later = [int(float(x["ts"]) * 1000) for x in transitions if float(x["ts"]) > float(h["ts"])]
                    t_end = min(later) if later else max(t, now_ms)
                kinds = sorted({p.get("kind", "") for p in q.desired})
                who_wl = q.workload.get("principal") or q.workload_key
                if q.workload.get("client_id"):
                    who_wl += f" client-id {q.workload['client_id']}"
                title = (f"{h.get('to')}: {who_wl}" if event == "transition" else f"{event}: {who_wl}")
                rows.append({"time": t, "timeEnd": t_end, "title": title,
                             "text": f"{h.get('by', '')}: {h.get('reason', '')}".strip(": "),
                             "tags": ["guardian", event, str(h.get("to") or q.state.value), q.policy, *kinds]
                             + (["dry-run"] if q.dry_run else []),
                             "quarantine_id": q.id, "event": event, "state": str(h.get("to") or q.state.value),
                             "by": str(h.get("by", "")), "principal": principal_of(q), "policy": q.policy})
        rows.sort(key=lambda r: (r["time"], r["quarantine_id"]))
        return rows[-limit:]   # over the limit, the most recent rows are the ones worth keeping
