"""Detections to decisions under guardrails. Pure: no I/O, time comes in ``now``.

``decide`` sees one detection, the policy set and a ``View`` (what the ledger
says right now: pause switch, open quarantines, this workload's quarantine and
probation) and returns a ``Decision``. The guardrails live here, in this order:

1. protected principals are never touched, whatever policy matches;
2. the first policy that matches the workload and lists the signature (or
   every signature) must react (severity, confidence; probation lowers the bar);
3. an existing quarantine escalates only after the next rung's cool-down and
   on enough evidence, never while it is under review;
4. a new quarantine needs the rung's evidence;
5. the harm test (``guardian.policy.harm``): a runaway that hurts nobody is a
   ``watch`` (recorded and escalated, nothing changed), which becomes a
   quarantine when an SRE approves it or when the runaway starts to hurt;
6. dry-run (global or per policy) records the same decision and acts on nothing;
7. acting needs no pause and room under the concurrency cap and under the
   share of the cluster's normal traffic that may be throttled (baselines, not
   the runaways' excess).

When pressure is why a runaway is throttled, the throttle is proportionate: it
keeps the share of the workload's current load that brings the broker back to
its idle target (``Harm.scale``), never less than the workload's own baseline.

Throttle rates are cluster-wide (detections measure a client summed over
brokers), but Kafka enforces a client quota on each broker separately, with the
same value on every broker. ``per_broker_quota`` turns the cluster-wide rate R
into that value from the client's measured distribution over brokers
(``extra["brokers"]``): see there for the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from guardian.model.detection import Detection, Signature
from guardian.policy.harm import Harm, assess
from guardian.policy.pressure import Pressure
from guardian.model.quarantine import Decision, Outcome, QState, Quarantine, quarantine_id_for, workload_key
from guardian.policy.config import DenyAclRung, IsolatePodRung, PolicySet, ThrottleRung

PRODUCE_SIGNATURES = frozenset({Signature.RUNAWAY_PRODUCER, Signature.RETRY_STORM, Signature.PARTITION_STORM})
CONSUME_SIGNATURES = frozenset({Signature.RUNAWAY_CONSUMER, Signature.LAG_EXPLOSION, Signature.REBALANCE_STORM})
# The quota that bounds each metric, when one does.
METRIC_QUOTA = {"produce_byte_rate": "producer_byte_rate", "fetch_byte_rate": "consumer_byte_rate",
                "request_time_share": "request_percentage",
                "partition_creation_rate": "controller_mutation_rate"}
# The quota an ``auto`` throttle uses for signatures that are not about bytes.
SIGNATURE_QUOTA = {Signature.PARTITION_STORM: "controller_mutation_rate",   # KIP-599: partition mutations/s
                   Signature.REBALANCE_STORM: "request_percentage"}        # the members' request time
BYTE_RATE_METRICS = ("produce_byte_rate", "fetch_byte_rate")
BYTE_RATE_QUOTAS = ("producer_byte_rate", "consumer_byte_rate")
# Reasons a rung cannot be planned that the engine can cure with a lookup (the pod, the group's members).
NEEDS_POD = "pod isolation needs the pod and its namespace"
NEEDS_MEMBERS = "needs its members' client-ids"


@dataclass(frozen=True)
class View:
    """What the ledger says when the detection arrives."""

    paused: bool = False
    open_quarantines: int = 0           # not dry-run, not released/expired
    throttled_traffic: float = 0.0      # bytes/s of the workloads under an open throttle
    cluster_traffic: float | None = None  # bytes/s of the whole cluster; None = unknown
    existing: Quarantine | None = None  # this workload's open quarantine
    probation: dict[str, Any] | None = None  # {"until", "rung", "policy"} while on probation
    pressure: Pressure | None = None    # broker pressure and client loads now; None = unknown


@dataclass(frozen=True)
class QuotaSplit:
    """A cluster-wide rate as the one quota value every broker enforces (see ``per_broker_quota``)."""

    cluster_rate: float   # R: what the client may do over the whole cluster
    per_broker: float     # q: the quota value, the same on every broker
    share: float          # the largest share of the client's rate that one broker carried (1.0: one broker)
    brokers: int          # brokers that carried some of the client's rate (1: one broker, or not known)

    @property
    def translated(self) -> bool:
        return self.brokers > 1

    @property
    def ceiling(self) -> float:
        """The most the client can do cluster-wide under ``per_broker`` on each of its brokers: the
        bound if its load moved until every broker it uses is at the quota."""
        return self.per_broker * self.brokers


def per_broker_quota(rate: float, brokers: Mapping[str, float] | None) -> QuotaSplit:
    """The per-broker quota value that holds a client to the cluster-wide ``rate`` R. Pure.

    ``brokers``: the client's measured rate on each broker (the detection's ``extra["brokers"]``).
    The rule: **q = R x s_max**, where s_max is the largest share of the client's rate that any one
    broker carried. A client's spread over brokers is set by where its partitions' leaders are and
    how it spreads records over them (partitioner, keys, assignment); while it holds, the busiest
    broker reaches q first, and a client held back on one broker is held back as a whole (its
    buffer for that broker fills), so the cluster-wide rate falls to q / s_max = R, and each broker
    sees its own share of R. Evenly spread over N brokers, q = R / N; all on one broker, q = R.

    Why not R / N: a skewed client (most of its partitions led by one broker) would be held to
    R x (1/N) / s_max, far under R. The price of the rule on a skewed client is the ceiling: if
    its load moves to brokers where it is under q (a partitioner that avoids slow brokers, a
    leadership change), it can reach q x N_active = R x s_max x N_active before any broker throttles
    it; verification reads the cluster-wide rate back (``guardian.actuators.quota.QuotaActuator.measure``).

    With no distribution, one broker, or no rate measured, the value is R unchanged (the
    one-broker behaviour).

    >>> per_broker_quota(900.0, {"b1": 300.0, "b2": 300.0, "b3": 300.0}).per_broker
    300.0
    >>> s = per_broker_quota(1000.0, {"b1": 600.0, "b2": 300.0, "b3": 100.0})
    >>> s.per_broker, s.share, s.brokers, s.ceiling
    (600.0, 0.6, 3, 1800.0)
    >>> per_broker_quota(1000.0, {"b1": 5000.0}).per_broker, per_broker_quota(1000.0, None).translated
    (1000.0, False)
    """
    parts = [float(v) for v in (brokers or {}).values() if math.isfinite(float(v)) and float(v) > 0]
    total = math.fsum(parts)
    if len(parts) < 2 or total <= 0:
        return QuotaSplit(cluster_rate=rate, per_broker=rate, share=1.0, brokers=1)
    share = max(parts) / total
    return QuotaSplit(cluster_rate=rate, per_broker=rate * share, share=share, brokers=len(parts))


def traffic_of(detection: Detection) -> float:
    """The workload's NORMAL byte rate, what a throttle takes out of the cluster's normal business
    (share-of-traffic cap): its baseline when the detection measures bytes, else the byte rate the
    detection carries, else 0. Its runaway excess is not business a throttle would cut off: counting
    it let the biggest runaways, the ones most worth throttling, slip under the cap."""
    if detection.metric in BYTE_RATE_METRICS:
        return max(0.0, float(detection.baseline))
    return max(0.0, float(detection.extra.get("byte_rate", 0.0) or 0.0))


def _quota_key(rung: ThrottleRung, detection: Detection) -> str:
    if rung.quota != "auto":
        return rung.quota
    if detection.metric in METRIC_QUOTA:
        return METRIC_QUOTA[detection.metric]
    if detection.signature in SIGNATURE_QUOTA:
        return SIGNATURE_QUOTA[detection.signature]
    if detection.signature in PRODUCE_SIGNATURES:
        return "producer_byte_rate"
    if detection.signature in CONSUME_SIGNATURES:
        return "consumer_byte_rate"
    return "request_percentage"


def _side(side: str, detection: Detection) -> str:
    if side != "auto":
        return side
    if detection.signature in PRODUCE_SIGNATURES:
        return "produce"
    if detection.signature in CONSUME_SIGNATURES:
        return "consume"
    return "both"


def _throttle_targets(principal: str, wl: dict[str, str], detection: Detection) -> list[dict[str, str]] | str:
    """Whom a throttle binds: the workload's client-id; a group's member client-ids (each its own
    quota, found by the engine); else the principal itself (e.g. a tenant's partition storm)."""
    if wl.get("client_id"):
        return [{"principal": principal, "client_id": wl["client_id"]}]
    if wl.get("group"):
        members = sorted({str(c) for c in detection.extra.get("client_ids") or [] if c})
        if not members:
            return (f"a throttle of group {wl['group']} {NEEDS_MEMBERS}; "
                    "none are known (the group is empty or could not be described)")
        return [{"principal": principal, "client_id": c} for c in members]
    return [{"principal": principal}]


def _current(key: str, detection: Detection, harm: Harm) -> float | None:
    """The workload's load now in ``key``'s unit: what the detection measured, else the broker's view."""
    if METRIC_QUOTA.get(detection.metric) == key:
        return float(detection.observed)
    load = harm.load or {}
    return {"producer_byte_rate": load.get("bytes_in"), "consumer_byte_rate": load.get("bytes_out"),
            "request_percentage": load.get("request_time")}.get(key)


def intents_for(rung: Any, detection: Detection, harm: Harm | None = None) -> list[dict[str, Any]] | str:
    """The actuator calls a rung means for this detection, or why it cannot be planned.

    With ``harm`` saying pressure (and how much load to keep), a baseline-relative throttle is
    proportionate: the current load times ``harm.scale``, never under the baseline."""
    wl = detection.workload
    principal = wl.get("principal")
    if isinstance(rung, ThrottleRung):
        if not principal:
            return "a throttle needs the workload's principal; the detection has none"
        key = _quota_key(rung, detection)
        baseline, current = 0.0, None
        if rung.absolute is not None:
            rate = rung.absolute
        else:
            if METRIC_QUOTA.get(detection.metric) == key:
                baseline = detection.baseline
            else:
                baseline = (detection.extra.get("baselines") or {}).get(key)
            if baseline is None or baseline <= 0:
                return (f"multiple_of_baseline needs a positive baseline of {key}; "
                        f"the detection measured {detection.metric}")
            rate = float(baseline) * float(rung.multiple_of_baseline or 1.0)
            current = _current(key, detection, harm) if harm is not None and harm.scale is not None else None
            if current is not None and current > 0:
                rate = max(float(baseline), current * harm.scale)
        if key in BYTE_RATE_QUOTAS:
            # the floor is in bytes/s; byte-rate quotas are whole bytes/s (the broker refuses fractions)
            rate = float(int(max(rate, rung.floor)))
        elif rung.absolute is None:
            # a rate computed from a baseline is never under 1 % of a broker thread, or 1 partition
            # mutation/s; an absolute rate is what the policy's author chose, below that too
            rate = max(rate, 1.0)
        targets = _throttle_targets(principal, wl, detection)
        if isinstance(targets, str):
            return targets
        intents = [{"kind": "quota", "target": t, "params": _quota_params(key, rate, detection)} for t in targets]
        cap = thread_time_cap(key, detection, harm, baseline, current) if len(targets) == 1 else None
        if cap is not None:
            intents.append({"kind": "quota", "target": targets[0], "params": {"request_percentage": cap}})
        return intents
    if isinstance(rung, DenyAclRung):
        if not principal:
            return "a DENY ACL needs the workload's principal; the detection has none"
        topics = [wl["topic"]] if wl.get("topic") else list(detection.extra.get("topics") or [])
        if not topics:
            return "a DENY ACL needs the topic(s); the detection names none"
        return [{"kind": "acl", "target": {"principal": principal},
                 "params": {"topics": sorted(topics), "side": _side(rung.side, detection)}}]
    if isinstance(rung, IsolatePodRung):
        pod = wl.get("pod") or detection.extra.get("pod")
        namespace = wl.get("namespace") or detection.extra.get("namespace")
        if not (pod and namespace):
            return f"{NEEDS_POD}; the detection names none"
        target = {"namespace": str(namespace), "pod": str(pod)}
        for k in ("principal", "client_id"):
            if wl.get(k):
                target[k] = wl[k]
        return [{"kind": "pod", "target": target, "params": {"scale_owner": rung.scale_owner}}]
    raise TypeError(f"unknown rung {rung!r}")  # pragma: no cover - pydantic's union is closed


def thread_time_cap(key: str, detection: Detection, harm: Harm | None, baseline: float,
                    current: float | None) -> float | None:
    """With pressure the reason, a byte-rate throttle also caps the workload's broker thread time
    (``request_percentage``, percent of one thread, the unit of Kafka's ``request-time`` sensor).

    Pressure is thread time, and bytes are a poor proxy for it when a runaway sends many small
    requests: in the retry-storm drill from 24 connections the byte throttle, sized to shed the
    missing headroom in bytes, left the storm most of the broker's threads (benign p99 still 3.5x
    under the verified throttle). The cap keeps ``harm.scale`` of the thread time the workload uses
    now on the broker under pressure, never less than its baseline bytes would need at today's cost
    per byte (``request_time * baseline / current``, an overestimate for a storm of small requests,
    which is the safe side). None when the throttle is not a byte rate sized by pressure, or the
    broker gave no thread time for the workload."""
    if key not in BYTE_RATE_QUOTAS or harm is None or harm.scale is None or not current or current <= 0:
        return None
    used = _current("request_percentage", detection, harm)
    if used is None or not math.isfinite(used) or used <= 0:
        return None
    floor = used * min(1.0, max(0.0, float(baseline)) / float(current))
    return round(max(1.0, floor, used * harm.scale), 3)


def _quota_params(key: str, rate: float, detection: Detection) -> dict[str, Any]:
    """The quota plan's parameters for the cluster-wide ``rate``: the per-broker value, and, when it was
    translated (the client is spread over brokers), the cluster-wide rate and the share behind it.

    The distribution is the detection metric's (the same brokers lead the partitions a client's
    bytes and requests go to); every target of the intent gets it. A key that is not
    enforced per client on a broker (``controller_mutation_rate``) is never split."""
    split = per_broker_quota(rate, detection.extra.get("brokers") if key != "controller_mutation_rate" else None)
    if not split.translated:
        return {key: round(rate, 3)}
    per_broker = float(int(max(split.per_broker, 1.0))) if key in BYTE_RATE_QUOTAS else max(split.per_broker, 1.0)
    return {key: round(per_broker, 3), "cluster_rate": round(rate, 3), "broker_share": round(split.share, 4)}


def decide(detection: Detection, policies: PolicySet, view: View, now: float) -> Decision:
    """The one decision for ``detection``. See the module docstring for the order of guardrails."""
    wl = dict(detection.workload)
    key = workload_key(wl)
    g = policies.global_

    def out(outcome: Outcome, reason: str, **kw: Any) -> Decision:
        return Decision(outcome=outcome, reason=reason, detection_id=detection.id, workload=wl, ts=now, **kw)

    protected = g.protected.reason(wl)
    if protected:
        return out(Outcome.PROTECTED, f"protected principal: {protected}")
    policy = policies.first_match(wl, detection.signature)
    if policy is None:
        return out(Outcome.NO_POLICY, "no policy matches this workload")

    on_probation = view.probation is not None and float(view.probation.get("until", 0)) > now
    relief = g.probation.severity_relief if on_probation else 0
    factor = g.probation.evidence_factor if on_probation else 1.0
    if not policy.reacts_to(detection.signature, detection.severity, detection.confidence, relief):
        return out(Outcome.NOT_REACTING,
                   f"policy {policy.name} does not react to {detection.signature.value} "
                   f"at {detection.severity.value}/{detection.confidence:.2f}", policy=policy.name)
    dry = g.dry_run or policy.dry_run
    ladder = policy.ladder

    q = view.existing
    if q is not None and q.state is QState.WATCHING:
        return _watching(detection, policies, view, now, q, out)
    if q is not None:
        common = {"policy": q.policy, "quarantine_id": q.id, "dry_run": q.dry_run}
        if q.state in (QState.APPEALED, QState.AWAITING_APPROVAL) or q.pending_rung is not None:
            return out(Outcome.UNDER_REVIEW, f"quarantine {q.id} is {q.state.value}"
                       + (" with an escalation awaiting approval" if q.pending_rung is not None else ""),
                       rung=q.rung, **common)
        qpolicy = policies.policy(q.policy) or policy
        nxt = q.rung + 1
        if nxt >= len(qpolicy.ladder):
            return out(Outcome.TOP_RUNG, f"quarantine {q.id} is already on the last rung", rung=q.rung, **common)
        rung = qpolicy.ladder[nxt]
        if now - q.rung_at < rung.cooldown_s:
            return out(Outcome.COOLING_DOWN, f"rung {nxt} ({rung.action}) is due "
                       f"{rung.cooldown_s - (now - q.rung_at):.0f}s from now", rung=q.rung, **common)
        if detection.duration_s < rung.evidence_s * factor:
            return out(Outcome.INSUFFICIENT_EVIDENCE, f"rung {nxt} ({rung.action}) needs "
                       f"{rung.evidence_s * factor:.0f}s of evidence, have {detection.duration_s:.0f}s",
                       rung=q.rung, **common)
        if view.paused and not q.dry_run:
            return out(Outcome.PAUSED, "the global pause switch is on", rung=q.rung, **common)
        intents = intents_for(rung, detection)
        if isinstance(intents, str):
            return out(Outcome.UNPLANNABLE, intents, rung=nxt, **common)
        if rung.requires_approval and not q.dry_run:
            return out(Outcome.ESCALATION_AWAITING_APPROVAL, f"rung {nxt} ({rung.action}) needs approval",
                       rung=nxt, intents=intents, **common)
        return out(Outcome.ESCALATED, f"detection continued after {now - q.rung_at:.0f}s on rung {q.rung}",
                   rung=nxt, intents=intents, **common)

    start = 0
    if on_probation and g.probation.resume_rung and view.probation.get("policy") == policy.name:
        start = min(int(view.probation.get("rung", 0)), len(ladder) - 1)
    rung = ladder[start]
    qid = quarantine_id_for(detection.id, key)
    common = {"policy": policy.name, "rung": start, "quarantine_id": qid, "dry_run": dry}
    if detection.duration_s < rung.evidence_s * factor:
        return out(Outcome.INSUFFICIENT_EVIDENCE, f"rung {start} ({rung.action}) needs "
                   f"{rung.evidence_s * factor:.0f}s of evidence, have {detection.duration_s:.0f}s",
                   **{**common, "quarantine_id": None})
    intents = intents_for(rung, detection)
    if isinstance(intents, str):
        return out(Outcome.UNPLANNABLE, intents, **{**common, "quarantine_id": None})
    harm = None
    if isinstance(rung, ThrottleRung):
        # the harm test gates automatic throttles; rungs that need a human already have one
        harm = assess(detection, view.pressure, g.harm, now)
        common["harm"] = harm.to_dict()
        if not harm.harmful:
            return out(Outcome.WATCH, f"watch: {harm.line}", intents=intents, **common)
        intents = intents_for(rung, detection, harm)
        assert not isinstance(intents, str)  # the same rung planned above; sizing cannot unplan it
    if dry:
        return out(Outcome.SHADOW, f"dry-run: would {rung.action} under policy {policy.name}"
                   + (" (probation)" if on_probation else ""), intents=intents, **common)
    if view.paused:
        return out(Outcome.PAUSED, "the global pause switch is on", **{**common, "quarantine_id": None})
    capped = _capped(rung, detection, policies, view)
    if capped is not None:
        return out(Outcome.CAPPED, capped, **{**common, "quarantine_id": None})
    if rung.requires_approval:
        return out(Outcome.AWAITING_APPROVAL, f"rung {start} ({rung.action}) needs approval",
                   intents=intents, **common)
    return out(Outcome.QUARANTINED, f"{detection.signature.value} matched policy {policy.name}"
               + (" (probation)" if on_probation else ""), intents=intents, **common)


def _capped(rung: Any, detection: Detection, policies: PolicySet, view: View) -> str | None:
    """Why acting would break a cap (concurrency, share of traffic under throttle), or None."""
    g = policies.global_
    if view.open_quarantines >= g.max_concurrent_quarantines:
        return f"{view.open_quarantines} quarantines open; the cap is {g.max_concurrent_quarantines}"
    if not isinstance(rung, ThrottleRung):
        return None
    mine = traffic_of(detection)
    if view.cluster_traffic is None or view.cluster_traffic <= 0:
        if g.on_unknown_traffic == "hold":
            return "cluster traffic unknown and on_unknown_traffic is 'hold'"
        return None
    # normal traffic (baselines) against what the cluster carries now: subtracting the runaway's excess
    # from a cluster rate averaged over 10 s, which lags a sudden rise, could leave ~0 and read 100 %
    share = (view.throttled_traffic + mine) / max(view.cluster_traffic, view.throttled_traffic + mine, 1e-9)
    if share > g.max_throttled_traffic_share:
        return (f"throttling it would put {share:.0%} of the cluster's traffic under throttle (at the "
                f"workloads' normal rates); the cap is {g.max_throttled_traffic_share:.0%}")
    return None


def _watching(detection: Detection, policies: PolicySet, view: View, now: float, q: Quarantine,
              out: Any) -> Decision:
    """A detection for a workload under watch: start the quarantine once the runaway hurts."""
    policy = policies.policy(q.policy)
    common: dict[str, Any] = {"policy": q.policy, "quarantine_id": q.id, "rung": q.rung, "dry_run": q.dry_run}
    if policy is None or q.rung >= len(policy.ladder):
        return out(Outcome.WATCH, f"watch: policy {q.policy} has no rung {q.rung} any more", **common)
    rung = policy.ladder[q.rung]
    harm = assess(detection, view.pressure, policies.global_.harm, now)
    common["harm"] = harm.to_dict()
    if not harm.harmful:
        return out(Outcome.WATCH, f"watch: {harm.line}", **common)
    intents = intents_for(rung, detection, harm)
    if isinstance(intents, str):
        return out(Outcome.UNPLANNABLE, intents, **common)
    if q.dry_run:
        return out(Outcome.WATCH, f"dry-run watch: it hurts now ({harm.line}); would {rung.action}",
                   intents=intents, **common)
    if view.paused:
        return out(Outcome.PAUSED, "the global pause switch is on", **common)
    capped = _capped(rung, detection, policies, view)
    if capped is not None:
        return out(Outcome.CAPPED, capped, **common)
    return out(Outcome.QUARANTINED, f"{detection.signature.value} under watch now hurts: {harm.line}",
               intents=intents, **common)
