"""Plain-dict quarantines and detections shaped like the engine's ``to_dict()`` output."""

from __future__ import annotations

from typing import Any

T0 = 1_700_000_000.0


def quarantine(**over: Any) -> dict[str, Any]:
    q = {"id": "q-7f3a", "state": "active", "policy": "runaway-producers", "rung": 0, "dry_run": False,
         "created_at": T0, "expires_at": T0 + 1800, "pending_rung": None, "appeal": None,
         "workload": {"principal": "User:tenant-a", "client_id": "loader-7"},
         "desired": [{"kind": "quota", "rung": 0, "idempotency_key": "quota:abc",
                      "target": {"principal": "User:tenant-a", "user": "tenant-a", "client_id": "loader-7"},
                      "params": {"scope": "client", "producer_byte_rate": 1048576.0}}]}
    q.update(over)
    return q


def detection(**over: Any) -> dict[str, Any]:
    d = {"id": "d-1", "ts": T0 - 5, "signature": "runaway_producer", "severity": "high", "confidence": 0.93,
         "workload": {"principal": "User:tenant-a", "client_id": "loader-7"}, "metric": "produce_bytes_per_s",
         "baseline": 1.1e6, "observed": 4.82e7, "ratio": 43.8, "duration_s": 95.0,
         "evidence": [[T0 - 95 + i, 4.0e7 + i * 1e5] for i in range(40)], "detector": "robust-baseline",
         "extra": {}}
    d.update(over)
    return d
