"""Escalation content: a short human summary and a structured, versioned JSON record.

Pure: built from plain dicts (a quarantine's ``to_dict()``, a detection's
``to_dict()``), so it depends on no engine internals and does no I/O. The
senders are in ``guardian.escalation.senders``; the off-the-action-path queue
in ``guardian.escalation.dispatch``.

Everything a tenant or a metric controls (client-ids, topic names, group and
pod names, principals) is data, not text: it is quoted with
:func:`quote` (escaped, length-capped) before it goes into the summary, so a
client-id like ``"\\n<!channel> *URGENT*"`` can neither add lines nor ping a
room. The JSON record carries the raw values (JSON is its own quoting).

>>> q = {"id": "q-1", "state": "active", "policy": "default", "rung": 0, "dry_run": False,
...      "created_at": 1700000000.0, "expires_at": 1700001800.0,
...      "workload": {"principal": "User:tenant-a", "client_id": "loader"},
...      "desired": [{"kind": "quota", "target": {"principal": "User:tenant-a", "user": "tenant-a",
...                   "client_id": "loader"}, "params": {"scope": "client", "producer_byte_rate": 1048576.0}}]}
>>> d = {"id": "d-1", "ts": 1700000000.0, "signature": "runaway_producer", "severity": "high",
...      "confidence": 0.9, "workload": q["workload"], "metric": "produce_bytes_per_s",
...      "baseline": 1.0e6, "observed": 4.8e7, "ratio": 48.0, "duration_s": 95.0}
>>> rec = build_record(q, d, event="created", now=1700000001.0)
>>> rec["schema_version"], rec["quarantine_id"], rec["status"]
(1, 'q-1', 'trigger')
>>> rec["summary"]["headline"]
'[guardian] THROTTLED User:"tenant-a" client-id "loader": runaway_producer 48.0M vs baseline 1.00M (48.0x) for 95s; quota producer 1.00 MiB/s [q-1]'
>>> len(rec["summary"]["text"].splitlines()) <= MAX_LINES
True
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from guardian.model.units import bytes_rate

SCHEMA = "kafka-workload-guardian/escalation"
SCHEMA_VERSION = 1
MAX_LINES = 12
MAX_LINE_CHARS = 300
QUOTE_LIMIT = 64
EVIDENCE_KEPT = 20

# Events that end a quarantine: PagerDuty resolves on these, the rest trigger.
RESOLVE_EVENTS = frozenset({"released", "expired", "appeal_granted", "resolved"})

# ------------------------------------------------------------------------------------ quoting


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``value`` as a double-quoted, escaped, length-capped string: safe inside one summary line.

    Control and non-printable characters become ``\\n``/``\\xNN``/``\\uNNNN``; backslash,
    double quote and backtick are escaped, so the value cannot end the quote, start a
    code span or add a line. Long values are cut and marked with ``...``.

    >>> quote('ok-client')
    '"ok-client"'
    >>> quote('a"b\\n@here`x`')
    '"a\\\\"b\\\\n@here\\\\x60x\\\\x60"'
    >>> quote("x" * 100, limit=8)
    '"xxxxxxxx..."'
    """
    text = "" if value is None else str(value)
    cut = len(text) > limit
    text = text[:limit]
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "`":
            out.append("\\x60")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable() or ch in "\u2028\u2029":
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + ('..."' if cut else '"')


def principal_text(principal: Any) -> str:
    """``User:"tenant-a"``: the principal type is ours, the name is the tenant's."""
    p = "" if principal is None else str(principal)
    ptype, sep, name = p.partition(":")
    if sep and ptype.isalpha() and len(ptype) <= 16:
        return f"{ptype}:{quote(name)}"
    return quote(p)


# ------------------------------------------------------------------------------------ numbers


def _num(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return quote(x)
    if not math.isfinite(v):
        return str(v)
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:#.3g}".rstrip(".") + unit
    return f"{v:#.3g}".rstrip(".")


def _duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return quote(seconds)
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def _iso(ts: Any) -> str | None:
    try:
        return datetime.fromtimestamp(float(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


# ------------------------------------------------------------------------------------ actions


def action_text(action: Mapping[str, Any]) -> str:
    """One action in a few words: ``quota producer 1.00 MiB/s``, ``DENY WRITE on "t1","t2"``."""
    kind = action.get("kind")
    target, params = action.get("target") or {}, action.get("params") or {}
    if kind == "quota":
        parts = []
        for key, label in (("producer_byte_rate", "producer"), ("consumer_byte_rate", "consumer")):
            if key in params:
                parts.append(f"{label} {bytes_rate(float(params[key]))}")
        if "request_percentage" in params:
            parts.append(f"request time {_num(params['request_percentage'])}%")
        return "quota " + ", ".join(parts)
    if kind == "acl":
        topics = [t for t in str(target.get("topics", "")).split(",") if t]
        shown = ",".join(quote(t) for t in topics[:3]) + (f" +{len(topics) - 3} more" if len(topics) > 3 else "")
        ops = "+".join(params.get("operations") or [])
        return f"DENY {ops} on {shown}"
    if kind == "pod":
        text = f"isolate pod {quote(target.get('namespace'))}/{quote(target.get('pod'))}"
        return text + (" and scale its owner to 0" if params.get("scale_owner") else "")
    return f"{quote(kind)} action"


def blast_radius(actions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Who an action set can hurt, as data plus one sentence."""
    principals, client_ids, topics, pods, scopes = set(), set(), set(), set(), set()
    for a in actions:
        t, p = a.get("target") or {}, a.get("params") or {}
        if t.get("principal"):
            principals.add(str(t["principal"]))
        if a.get("kind") == "quota":
            scope = p.get("scope", "client" if t.get("client_id") else "user")
            scopes.add(scope)
            if scope == "client" and t.get("client_id") is not None:
                client_ids.add(str(t["client_id"]))
        elif a.get("kind") == "acl":
            topics.update(x for x in str(t.get("topics", "")).split(",") if x)
        elif a.get("kind") == "pod":
            pods.add(f"{t.get('namespace')}/{t.get('pod')}")
    parts = []
    who = ", ".join(principal_text(p) for p in sorted(principals)) or "no principal"
    if "user" in scopes:
        parts.append(f"every client of {who} together")
    elif "default_client" in scopes:
        parts.append(f"each client of {who} separately")
    elif client_ids:
        shown = ", ".join(quote(c) for c in sorted(client_ids)[:3])
        parts.append(f"only client-id {shown} of {who}; its other clients and all other tenants unaffected")
    if topics:
        parts.append(f"{who} on {len(topics)} topic(s) only")
    if pods:
        parts.append(f"{len(pods)} pod(s)")
    return {"principals": sorted(principals), "client_ids": sorted(client_ids), "topics": sorted(topics),
            "pods": sorted(pods), "quota_scopes": sorted(scopes),
            "text": "; ".join(parts) or "nothing applied"}


# ------------------------------------------------------------------------------------ links


@dataclass(frozen=True)
class Links:
    """Where a reader goes next. Templates take ``{id}`` (the quarantine id, URL-quoted)."""

    api_base_url: str = ""                     # e.g. https://guardian.example.com
    quarantine_path: str = "/v1/quarantines/{id}"
    appeal_path: str = "/v1/quarantines/{id}/appeal"   # guardian/api/routes.py
    release_path: str = "/v1/quarantines/{id}/release"
    dashboard_url: str = ""                    # e.g. a Grafana URL with ...&var-quarantine={id}
    runbook_url: str = ""

    def for_quarantine(self, qid: str) -> dict[str, str]:
        from urllib.parse import quote as urlquote

        safe = urlquote(qid, safe="")
        base = self.api_base_url.rstrip("/")
        out = {}
        if base:
            out.update(quarantine=base + self.quarantine_path.format(id=safe),
                       appeal=base + self.appeal_path.format(id=safe),
                       release=base + self.release_path.format(id=safe))
        if self.dashboard_url:
            out["dashboard"] = self.dashboard_url.format(id=safe)
        if self.runbook_url:
            out["runbook"] = self.runbook_url
        return out


# ------------------------------------------------------------------------------------ record


def _verb(event: str, actions: Sequence[Mapping[str, Any]], dry_run: bool) -> str:
    kinds = {a.get("kind") for a in actions}
    doing = "ISOLATED" if "pod" in kinds else "DENIED" if "acl" in kinds else "THROTTLED" if "quota" in kinds \
        else "QUARANTINED"
    if dry_run or event == "shadow":
        return f"WOULD HAVE {doing} (dry-run)"
    if event == "watch":
        return f"WATCHING (no harm seen, not {doing.lower()})"
    return {"awaiting_approval": f"APPROVAL NEEDED ({doing.lower()})",
            "escalation_awaiting_approval": f"APPROVAL NEEDED to escalate ({doing.lower()})",
            "escalated": f"ESCALATED: {doing}",
            "released": "RELEASED", "expired": "EXPIRED", "appealed": "APPEALED",
            "appeal_granted": "APPEAL GRANTED, RELEASED", "appeal_denied": "APPEAL DENIED, STILL " + doing,
            "throttle_not_effective": "THROTTLE NOT EFFECTIVE on",
            }.get(event, doing)


def _who(workload: Mapping[str, Any]) -> str:
    parts = [principal_text(workload.get("principal")) if workload.get("principal") else "unknown principal"]
    for key, label in (("client_id", "client-id"), ("group", "group"), ("topic", "topic"), ("pod", "pod")):
        if workload.get(key) is not None:
            parts.append(f"{label} {quote(workload[key])}")
    return " ".join(parts)


def _evidence_line(det: Mapping[str, Any]) -> str:
    ev = det.get("evidence") or []
    text = (f"Evidence: {quote(det.get('metric'), 48)} = {_num(det.get('observed'))} vs baseline "
            f"{_num(det.get('baseline'))} ({_num(det.get('ratio'))}x) for {_duration(det.get('duration_s'))}")
    if ev:
        recent = ", ".join(_num(v) for _, v in list(ev)[-3:])
        text += f"; {det.get('evidence_count', len(ev))} samples, last: {recent}"
    return text


def _headline(event: str, workload: Mapping[str, Any], det: Mapping[str, Any] | None,
              actions: Sequence[Mapping[str, Any]], qid: str, dry_run: bool) -> str:
    head = f"[guardian] {_verb(event, actions, dry_run)} {_who(workload)}"
    if det:
        head += (f": {quote(det.get('signature'), 32)[1:-1]} {_num(det.get('observed'))} vs baseline "
                 f"{_num(det.get('baseline'))} ({_num(det.get('ratio'))}x) for {_duration(det.get('duration_s'))}")
    if actions and event not in RESOLVE_EVENTS:
        head += "; " + "; ".join(action_text(a) for a in actions[:2])
    head += f" [{quote(qid, 40)[1:-1]}]"
    return _cap(head)


def _cap(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS - 3] + "..."


def summarize(record: Mapping[str, Any]) -> str:
    """The human summary of a record: a headline, then at most 11 more lines, each capped."""
    q, det = record["quarantine"], record.get("detection") or {}
    actions, links = record.get("actions") or [], record.get("links") or {}
    lines = [record["summary"]["headline"] if "summary" in record else
             _headline(record["event"], record.get("workload") or {}, det, actions, q["id"], q.get("dry_run", False))]
    if record.get("note"):
        lines.append(f"Effect: {quote(record['note'], 400)[1:-1]}")
    lines.append(f"Who: {_who(record.get('workload') or {})}")
    if det:
        lines.append(f"What: {quote(det.get('signature'), 32)[1:-1]} ({quote(det.get('severity'), 16)[1:-1]}, "
                     f"confidence {_num(det.get('confidence'))})"
                     + (f" by {quote(det.get('detector'), 32)}" if det.get("detector") else ""))
        lines.append(_evidence_line(det))
    harm = q.get("harm")
    if isinstance(harm, Mapping) and harm.get("line"):
        lines.append(f"Harm: {quote(harm['line'], 400)[1:-1]}")
    if actions and q.get("state") == "watching":
        lines.append("Would: " + "; ".join(action_text(a) for a in actions[:4])
                     + f" (policy {quote(q.get('policy'), 40)}, rung {q.get('rung')}); approve to act")
    elif actions:
        lines.append(("Reverted: " if record["event"] in RESOLVE_EVENTS else "Action: ") + "; ".join(action_text(a) for a in actions[:4])
                     + (f" +{len(actions) - 4} more" if len(actions) > 4 else "")
                     + f" (policy {quote(q.get('policy'), 40)}, rung {q.get('rung')})")
    else:
        lines.append("Action: none applied")
    lines.append(f"Blast radius: {record['blast_radius']['text']}")
    state = f"State: {quote(q.get('state'), 32)[1:-1]}"
    if q.get("expires_at") and record["event"] not in RESOLVE_EVENTS:
        state += f", expires {_iso(q['expires_at'])}"
    if q.get("dry_run"):
        state += "; dry-run: nothing was changed on the cluster"
    lines.append(state)
    if record["event"] not in RESOLVE_EVENTS:
        appeal = links.get("appeal")
        lines.append(f"Appeal (tenant): POST {appeal}" if appeal else
                     f"Appeal (tenant): the guardian API, quarantine {quote(q['id'], 40)}")
        release = links.get("release")
        lines.append(f"Release (SRE): POST {release}" if release else
                     f"Release (SRE): the guardian API or CLI, quarantine {quote(q['id'], 40)}")
    for key in ("dashboard", "quarantine", "runbook"):
        if links.get(key) and len(lines) < MAX_LINES:
            lines.append(f"{key.capitalize()}: {links[key]}")
    return "\n".join(_cap(line) for line in lines[:MAX_LINES])


# What a receiving agent calls next, as MCP tool calls of `guardian mcp` (docs/mcp.md). Additive to
# schema_version 1: `follow_up` has its own version; the tool names are a contract the MCP tests check.
FOLLOW_UP_VERSION = 1


def follow_up(qid: str, event: str) -> dict[str, Any]:
    """The MCP tool call to make first and the likely next ones; ``arguments`` are exactly the tool's.

    ``needs`` names the arguments the agent must supply itself (a reason is never guessed for it).

    >>> f = follow_up("q-1", "appealed")
    >>> f["tool"], f["arguments"], [n["tool"] for n in f["next"]]
    ('get_quarantine', {'quarantine_id': 'q-1'}, ['explain_detection', 'list_appeals', 'propose_action', 'approve_quarantine', 'deny_quarantine'])
    """
    ref = {"quarantine_id": qid}
    nxt: list[dict[str, Any]] = [{"tool": "explain_detection", "arguments": dict(ref)}]
    if event in RESOLVE_EVENTS:
        nxt.append({"tool": "list_decisions", "arguments": {}})
    elif event in ("awaiting_approval", "escalation_awaiting_approval", "watch"):
        # a watch is turned into a quarantine the same way an approval is given
        nxt += [{"tool": "propose_action", "arguments": {**ref, "action": "approve"}, "needs": ["reason"]},
                {"tool": "approve_quarantine", "arguments": dict(ref), "role": "sre"},
                {"tool": "deny_quarantine", "arguments": dict(ref), "needs": ["reason"], "role": "sre"}]
    elif event == "appealed":
        nxt += [{"tool": "list_appeals", "arguments": {"state": "pending"}},
                {"tool": "propose_action", "arguments": {**ref, "action": "approve"}, "needs": ["reason"]},
                {"tool": "approve_quarantine", "arguments": dict(ref), "role": "sre"},
                {"tool": "deny_quarantine", "arguments": dict(ref), "needs": ["reason"], "role": "sre"}]
    else:
        nxt += [{"tool": "file_appeal", "arguments": dict(ref), "needs": ["justification"]},
                {"tool": "propose_action", "arguments": {**ref, "action": "release"}, "needs": ["reason"]},
                {"tool": "release_quarantine", "arguments": dict(ref), "role": "sre"}]
    return {"schema_version": FOLLOW_UP_VERSION, "via": "mcp", "tool": "get_quarantine", "arguments": ref,
            "next": nxt}


def _detection_part(det: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not det:
        return None
    keep = ("id", "ts", "signature", "severity", "confidence", "metric", "baseline", "observed", "ratio",
            "duration_s", "detector", "workload")
    out = {k: det.get(k) for k in keep if k in det}
    ev = list(det.get("evidence") or [])
    out["evidence_count"] = len(ev)
    out["evidence"] = [list(p) for p in ev[-EVIDENCE_KEPT:]]
    return out


def build_record(quarantine: Mapping[str, Any], detection: Mapping[str, Any] | None = None, *, event: str,
                 now: float, links: Links | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The structured, versioned escalation record (JSON-ready) with its summary inside.

    ``quarantine``: a quarantine as a dict (``id``, ``state``, ``workload``, ``policy``, ``rung``,
    ``dry_run``, ``created_at``, ``expires_at``, ``desired`` = action plans as dicts); ``detection``:
    a ``Detection.to_dict()`` (defaults to ``quarantine["detection"]``); ``event``: what happened.
    """
    qid = str(quarantine["id"])
    det = detection if detection is not None else (quarantine.get("detection") or None)
    if det is not None and hasattr(det, "to_dict"):
        det = det.to_dict()
    actions = [{k: a.get(k) for k in ("kind", "target", "params", "idempotency_key", "rung") if k in a}
               for a in (quarantine.get("desired") or [])]
    workload = dict(quarantine.get("workload") or (det or {}).get("workload") or {})
    dry_run = bool(quarantine.get("dry_run", False))
    watching = quarantine.get("state") == "watching"
    radius = blast_radius([] if dry_run or watching else actions)
    status = "resolve" if event in RESOLVE_EVENTS else "trigger"
    body_id = hashlib.sha256(json.dumps([qid, event, now], default=str).encode()).hexdigest()[:16]
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "id": f"{qid}:{event}:{body_id}",
        "event": event,
        "status": status,
        "ts": now,
        "time": _iso(now),
        "quarantine_id": qid,
        "quarantine": {k: quarantine.get(k) for k in ("id", "state", "policy", "rung", "dry_run", "created_at",
                                                      "expires_at", "pending_rung", "appeal", "harm")},
        "workload": workload,
        "detection": _detection_part(det),
        "actions": actions,
        "blast_radius": radius,
        "links": (links or Links()).for_quarantine(qid),
        "follow_up": follow_up(qid, event),
    }
    if extra:
        record["extra"] = dict(extra)
    # what the engine wrote into the history with this event (a throttle that did not work says why)
    note = next((h.get("reason") for h in reversed(quarantine.get("history") or [])
                 if isinstance(h, Mapping) and h.get("event") == event and h.get("reason")), None)
    if note:
        record["note"] = str(note)
    headline = _headline(event, workload, det, actions, qid, dry_run)
    record["summary"] = {"headline": headline}
    record["summary"]["text"] = summarize(record)
    return record


@dataclass(frozen=True)
class Escalation:
    """One notification: the record plus what senders need at hand."""

    record: dict[str, Any]
    channels: frozenset[str] | None = None  # None = every channel
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def headline(self) -> str:
        return self.record["summary"]["headline"]

    @property
    def text(self) -> str:
        return self.record["summary"]["text"]

    @property
    def dedup_key(self) -> str:
        return self.record["quarantine_id"]

    @property
    def delivery_id(self) -> str:
        return self.record["id"]

    @property
    def resolves(self) -> bool:
        return self.record["status"] == "resolve"


def escalation_for(quarantine: Mapping[str, Any], detection: Mapping[str, Any] | None = None, *, event: str,
                   now: float, links: Links | None = None) -> Escalation:
    return Escalation(build_record(quarantine, detection, event=event, now=now, links=links))
