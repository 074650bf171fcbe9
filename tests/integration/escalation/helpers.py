"""Escalations for the contract tests, built from plain dicts like the engine's."""

from __future__ import annotations

import time
from typing import Any

from guardian.escalation.summary import Escalation, Links, escalation_for

T0 = 1_700_000_000.0


def quarantine(qid: str = "q-contract-1", **over: Any) -> dict[str, Any]:
    q = {"id": qid, "state": "active", "policy": "runaway-producers", "rung": 0, "dry_run": False,
         "created_at": T0, "expires_at": T0 + 1800,
         "workload": {"principal": "User:tenant-a", "client_id": "loader-7"},
         "desired": [{"kind": "quota", "target": {"principal": "User:tenant-a", "user": "tenant-a",
                                                  "client_id": "loader-7"},
                      "params": {"scope": "client", "producer_byte_rate": 1048576.0}}],
         "detection": {"id": "d-1", "ts": T0, "signature": "runaway_producer", "severity": "critical",
                       "confidence": 0.97, "workload": {"principal": "User:tenant-a", "client_id": "loader-7"},
                       "metric": "produce_bytes_per_s", "baseline": 1.1e6, "observed": 4.8e7, "ratio": 43.6,
                       "duration_s": 95.0, "evidence": [[T0, 4.8e7]], "detector": "robust", "extra": {}}}
    q.update(over)
    return q


def escalation(event: str = "quarantined", qid: str = "q-contract-1", **over: Any) -> Escalation:
    return escalation_for(quarantine(qid, **over), None, event=event, now=time.time(),
                          links=Links("https://guardian.example.com"))
