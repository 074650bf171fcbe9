"""The action engine: detections to decisions under guardrails, executed exactly once.

* ``model``     - quarantines, action records, decisions (pure data);
* ``decide``    - the pure policy engine with its guardrails;
* ``lifecycle`` - which quarantine state may follow which;
* ``reconcile`` - drives action records towards the desired state (crash recovery);
* ``lease``     - the Redis lease so that one engine acts;
* ``engine``    - ``ActionEngine``, the wiring (``handle``, ``tick``, ``run_forever``, SRE verbs).

``from guardian.engine import ActionEngine`` imports lazily: nothing happens at import time.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ActionEngine", "Decision", "Outcome", "QState", "Quarantine", "RedisLease"]


def __getattr__(name: str) -> Any:
    if name == "ActionEngine":
        from guardian.engine.engine import ActionEngine

        return ActionEngine
    if name == "RedisLease":
        from guardian.engine.lease import RedisLease

        return RedisLease
    if name in ("Decision", "Outcome", "QState", "Quarantine"):
        from guardian.engine import model

        return getattr(model, name)
    raise AttributeError(name)
