"""Two engines: only the lease holder acts; kill it (SIGKILL, a real process) and the other takes
over once the lease runs out; the deposed holder's fencing token no longer writes the ledger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from guardian.engine.lease import RedisLease
from guardian.model.quarantine import Outcome, QState, Quarantine
from guardian.errors import NotLeaderError
from guardian.clients.kafka_admin import QuotaEntity
from guardian.store.ledger import Fence

from .conftest import detection

TTL_S = 3.0
ROOT = Path(__file__).resolve().parents[3]

HOLDER = textwrap.dedent("""\
    import sys, threading, redis
    from guardian.engine.engine import ActionEngine
    from guardian.engine.lease import RedisLease
    from guardian.store.ledger import Ledger
    from guardian.policy.config import load_policy, default_policy_path
    url, prefix, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    client = redis.Redis.from_url(url)
    ledger = Ledger(client, prefix)
    engine = ActionEngine(ledger, load_policy(default_policy_path()), {},
                          lease=RedisLease(client, prefix + "lease", "proc-A", ttl), name="proc-A")

    class Idle:
        def poll(self, timeout_s):
            threading.Event().wait(timeout_s)
            return []

    engine.run_forever(Idle(), poll_s=0.2, tick_s=0.5)
    """)


def _wait(pred, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


def test_only_the_lease_holder_acts_and_the_other_takes_over(make_engine, quota, quota_admin, client_id,
                                                              ledger, redis_client, redis_url):
    key = ledger.prefix + "lease"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, redis_url, ledger.prefix, str(TTL_S)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        _wait(lambda: (redis_client.get(key) or b"").endswith(b":proc-A"), 60, "proc-A to take the lease")
        a_value = redis_client.get(key).decode()

        b = make_engine({"quota": quota()}, lease=RedisLease(redis_client, key, "engine-B", TTL_S), name="engine-B")
        d = b.handle(detection(client_id))
        assert d.outcome is Outcome.NOT_LEADER
        assert ledger.list() == [] and quota_admin.describe(QuotaEntity.of(user="tenant-a", client_id=client_id)) == {}
        assert b.tick() == {"expired": 0, "converged": 0, "pending": 0, "audited": 0}

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        remaining_ms = redis_client.pttl(key)
        assert 0 < remaining_ms <= TTL_S * 1000, "a dead holder's lease runs out within one TTL"
        took = _wait(b.is_leader, 3 * TTL_S, "engine-B to take over")
        print(f"takeover {took:.2f}s after SIGKILL (lease TTL {TTL_S}s, {remaining_ms} ms left at kill)")
        assert b.lease.token > int(a_value.split(":")[0]), "the new holder has a larger fencing token"

        d = b.handle(detection(client_id))
        assert d.outcome is Outcome.QUARANTINED
        assert quota_admin.describe(QuotaEntity.of(user="tenant-a", client_id=client_id))["producer_byte_rate"] > 0

        # The deposed holder's fence cannot write a decision any more.
        stale = ledger.get(d.quarantine_id)
        stale.expires_at += 1
        with pytest.raises(NotLeaderError):
            ledger.save_quarantine(stale, fence=Fence(key, a_value))
        assert ledger.get(d.quarantine_id).state is QState.ACTIVE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_lease_release_hands_over_at_once(redis_client, unique):
    key = f"test-{unique}:lease"
    a = RedisLease(redis_client, key, "a", ttl_s=30)
    b = RedisLease(redis_client, key, "b", ttl_s=30)
    try:
        assert a.ensure() and not b.ensure()
        assert a.ensure(), "renewal by the holder keeps it"
        a_token = a.token
        a.release()
        assert b.ensure() and not a.ensure()
        assert b.token > a_token
    finally:
        b.release()
        redis_client.delete(key, key + ":fence")


def test_keep_alive_holds_the_lease_through_a_slow_turn_and_drops_it_when_the_loop_hangs(redis_client, unique):
    """A turn of the engine's loop longer than the TTL (a quota waiting to become visible on a busy broker)
    keeps the lease; a loop that stops calling ``ensure`` for longer than ``max_stall_s`` loses it."""
    import threading

    key = f"{unique}:lease"
    holder = RedisLease(redis_client, key, "holder", ttl_s=1.0)
    other = RedisLease(redis_client, key, "other", ttl_s=1.0)
    stop = threading.Event()
    try:
        assert holder.ensure()
        token = holder.token
        t = threading.Thread(target=holder.keep_alive, args=(stop, 3.0), daemon=True)
        t.start()
        time.sleep(2.5)                      # the loop is busy for 2.5 TTLs: nothing calls ensure
        assert not other.ensure() and holder.held()
        assert holder.ensure() and holder.token == token      # the next turn finds it still ours
        time.sleep(4.5)                      # now the loop hangs past max_stall_s (3 s) and one TTL
        assert other.ensure(), "a hung holder kept the lease"
        assert not holder.held()
        assert not holder.renew_if_alive(3.0)   # never takes back what it lost
    finally:
        stop.set()
        redis_client.delete(key, key + ":fence")
