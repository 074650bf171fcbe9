"""The deploy surge's admin client on the real broker: all topics in one request, or one at a time
spread over ``spread_s`` (a Terraform apply), every topic created and acked as a tenant."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Callable

import pytest

from guardian_dev.drill.load import DeployClient, Recorder
from guardian_dev.drill.runner import delete_topics


@pytest.mark.parametrize("spread_s", [0.0, 1.2])
def test_a_deploy_creates_its_topics_at_once_or_spread_over_time(spread_s: float, bootstrap: str,
                                                                 tenant_conf: Callable[..., dict]) -> None:
    prefix = f"tenant-a.deploy-{uuid.uuid4().hex[:8]}"
    rec = Recorder(f"deploy-{uuid.uuid4().hex[:6]}", "tenant-a", "surge", "admin")
    now = time.time()
    client = DeployClient(rec, tenant_conf("tenant-a"), prefix, 4, 2, [now + 0.5, now + 3.0], threading.Event(),
                          now, now + 60.0, spread_s=spread_s)
    try:
        client.start()
        client.join(timeout=60)
        assert not client.is_alive()
        assert rec.errors == 0, rec.last_error
        assert sorted(client.created) == sorted(f"{prefix}-{k}-{i}" for k in range(2) for i in range(4))
        acks = sorted(t for t, n, _ in rec.acks)
        assert len(acks) == 8 and all(n == 2 for _, n, _ in rec.acks)
        first, second = acks[:4], acks[4:]
        assert first[0] >= now + 0.5 and second[0] >= now + 3.0
        if spread_s:   # the last of 4 topics is due 3/4 of the spread after the first
            assert first[-1] - (now + 0.5) >= 0.75 * spread_s and second[-1] - (now + 3.0) >= 0.75 * spread_s
    finally:
        delete_topics(bootstrap, client.created)
