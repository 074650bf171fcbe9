"""The appeal flow end to end against the real broker and Redis.

The runner engine throttles a client (AlterClientQuotas on the broker); the
tenant appeals through the API; an SRE approves or denies through the API;
the runner's ``tick`` converges what the API wrote. DescribeClientQuotas is
read straight from the broker at every step.
"""

from __future__ import annotations

import time
import uuid

from guardian.clients.kafka_admin import QuotaEntity
from tests.integration.api.conftest import THROTTLE

# A quota the entity already had before the guardian touched it: the restore must bring back
# exactly this, including a key the throttle never set.
PRE_EXISTING = {"producer_byte_rate": 5_000_000.0, "consumer_byte_rate": 7_000_000.0}


def _entity(cid: str) -> QuotaEntity:
    return QuotaEntity.of(user="tenant-a", client_id=cid)


def test_approved_appeal_restores_the_quota_exactly_and_records_probation(harness):
    h, c = harness, harness.client
    cid = f"appeal-ok-{uuid.uuid4().hex[:8]}"
    admin = h.quota._admin
    admin.alter(_entity(cid), PRE_EXISTING)
    deadline = time.monotonic() + 10
    while admin.describe(_entity(cid)) != PRE_EXISTING and time.monotonic() < deadline:
        time.sleep(0.05)
    before = admin.describe(_entity(cid))
    assert before == PRE_EXISTING

    q = h.quarantine("User:tenant-a", cid)
    throttled = admin.describe(_entity(cid))
    assert throttled == {**PRE_EXISTING, "producer_byte_rate": THROTTLE}

    tenant = h.token("tenant", "User:tenant-a")
    sre = h.token("sre")
    r = c.get(f"/v1/quarantines/{q.id}", headers=h.auth(tenant))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["evidence"]["metric"] == "produce_byte_rate"
    assert "runaway_producer" in body["evidence"]["explanation"]
    assert len(body["evidence"]["series"]) == 30
    assert body["actions"][0]["status"] == "verified"

    until = time.time() + 3600
    r = c.post(f"/v1/quarantines/{q.id}/appeal", headers=h.auth(tenant),
               json={"justification": "nightly backfill, agreed with the platform team",
                     "requested_limit": 4_000_000, "until": until})
    assert r.status_code == 201, r.text
    appeal = r.json()
    assert appeal["state"] == "pending" and appeal["requested_limit"] == 4_000_000 and appeal["until"] == until
    assert r.headers["location"] == f"/v1/appeals/{appeal['id']}"
    # The tenant follows its appeal; the throttle still holds while it is pending.
    r = c.get(f"/v1/appeals/{appeal['id']}", headers=h.auth(tenant))
    assert r.status_code == 200 and r.json()["state"] == "pending"
    h.runner.tick()
    assert admin.describe(_entity(cid)) == throttled

    r = c.post(f"/v1/quarantines/{q.id}/approve", headers=h.auth(sre), json={"reason": "backfill is legit"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "released"
    assert r.json()["appeal"]["state"] == "granted"

    h.runner.tick()   # the engine holding the lease converges: revert
    assert admin.describe(_entity(cid)) == before

    detail = c.get(f"/v1/quarantines/{q.id}", headers=h.auth(tenant)).json()
    assert detail["actions"][0]["status"] == "reverted"
    assert detail["probation"] is not None and detail["probation"]["until"] > time.time()
    assert h.ledger.probation(q.workload_key) == detail["probation"]
    assert c.get(f"/v1/appeals/{appeal['id']}", headers=h.auth(tenant)).json()["state"] == "granted"
    admin.alter(_entity(cid), {}, list(PRE_EXISTING))


def test_denied_appeal_leaves_the_throttle_in_place(harness):
    h, c = harness, harness.client
    cid = f"appeal-no-{uuid.uuid4().hex[:8]}"
    admin = h.quota._admin
    assert admin.describe(_entity(cid)) == {}
    q = h.quarantine("User:tenant-a", cid)
    assert admin.describe(_entity(cid)) == {"producer_byte_rate": THROTTLE}
    tenant, sre = h.token("tenant", "tenant-a"), h.token("sre")

    r = c.post(f"/v1/quarantines/{q.id}/appeal", headers=h.auth(tenant), json={"justification": "please"})
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    r = c.post(f"/v1/quarantines/{q.id}/deny", headers=h.auth(sre), json={"reason": "still running away"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active" and r.json()["appeal"]["state"] == "denied"
    assert r.json()["appeal"]["decision_note"] == "still running away"

    h.runner.tick()
    assert admin.describe(_entity(cid)) == {"producer_byte_rate": THROTTLE}
    assert h.ledger.probation(q.workload_key) is None
    r = c.get(f"/v1/appeals/{aid}", headers=h.auth(tenant))
    assert r.json()["state"] == "denied"

    # A second appeal is possible after a denial and keeps the first on record.
    r = c.post(f"/v1/quarantines/{q.id}/appeal", headers=h.auth(tenant), json={"justification": "fixed the loop"})
    assert r.status_code == 201 and r.json()["id"] != aid
    states = {a["id"]: a["state"] for a in c.get("/v1/appeals", headers=h.auth(tenant)).json()["items"]}
    assert states == {aid: "denied", r.json()["id"]: "pending"}


def test_granting_with_a_raised_limit_relaxes_then_restores_exactly(harness):
    h, c = harness, harness.client
    cid = f"appeal-raise-{uuid.uuid4().hex[:8]}"
    admin = h.quota._admin
    q = h.quarantine("User:tenant-a", cid)
    tenant, sre = h.token("tenant", "User:tenant-a"), h.token("sre")
    c.post(f"/v1/quarantines/{q.id}/appeal", headers=h.auth(tenant),
           json={"justification": "need 1 MB/s for a day", "requested_limit": 1_000_000})
    until = time.time() + 600
    r = c.post(f"/v1/quarantines/{q.id}/approve", headers=h.auth(sre),
               json={"reason": "ok for today", "raised_limit": 1_000_000.7, "until": until})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "active" and body["expires_at"] == until
    assert body["appeal"]["state"] == "granted" and body["appeal"]["raised_limit"] == 1_000_000.7
    assert [a["params"]["producer_byte_rate"] for a in body["actions"]] == [1_000_000.0]   # whole bytes/s
    assert body["probation"]["until"] > until

    h.runner.tick()
    assert admin.describe(_entity(cid)) == {"producer_byte_rate": 1_000_000.0}
    h.runner.tick()   # a second pass (and its drift check) leaves the relaxed limit alone
    assert admin.describe(_entity(cid)) == {"producer_byte_rate": 1_000_000.0}

    # A limit below the throttle is not a raise.
    q2 = h.quarantine("User:tenant-a", f"appeal-low-{uuid.uuid4().hex[:8]}")
    c.post(f"/v1/quarantines/{q2.id}/appeal", headers=h.auth(tenant), json={"justification": "x"})
    r = c.post(f"/v1/quarantines/{q2.id}/approve", headers=h.auth(sre), json={"raised_limit": 10})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"

    r = c.post(f"/v1/quarantines/{q.id}/release", headers=h.auth(sre), json={"reason": "done"})
    assert r.status_code == 200, r.text
    h.runner.tick()
    assert admin.describe(_entity(cid)) == {}


def test_a_raised_limit_on_a_throttle_spread_over_brokers_is_cluster_wide(harness):
    """The throttle was translated (the client carried 60 % of its rate on its busiest broker): the
    tenant's raised limit is a cluster-wide rate, set on each broker at the same share."""
    h, c = harness, harness.client
    cid = f"appeal-spread-{uuid.uuid4().hex[:8]}"
    admin = h.quota._admin
    q = h.quarantine("User:tenant-a", cid, brokers={"b1": 1_200_000.0, "b2": 400_000.0, "b3": 400_000.0})
    (plan,) = q.desired
    assert plan["params"]["cluster_rate"] == THROTTLE and plan["params"]["broker_share"] == 0.6
    assert admin.describe(_entity(cid)) == {"producer_byte_rate": 0.6 * THROTTLE}
    tenant, sre = h.token("tenant", "User:tenant-a"), h.token("sre")
    c.post(f"/v1/quarantines/{q.id}/appeal", headers=h.auth(tenant), json={"justification": "backfill"})
    # above the per-broker value but not above the cluster-wide throttle: not a raise
    r = c.post(f"/v1/quarantines/{q.id}/approve", headers=h.auth(sre), json={"raised_limit": 0.8 * THROTTLE})
    assert r.status_code == 422 and "cluster-wide" in r.text, r.text
    r = c.post(f"/v1/quarantines/{q.id}/approve", headers=h.auth(sre),
               json={"raised_limit": 500_000, "until": time.time() + 600})
    assert r.status_code == 200, r.text
    assert [a["params"]["producer_byte_rate"] for a in r.json()["actions"]] == [300_000.0]
    h.runner.tick()
    assert admin.describe(_entity(cid)) == {"producer_byte_rate": 300_000.0}
    r = c.post(f"/v1/quarantines/{q.id}/release", headers=h.auth(sre), json={"reason": "done"})
    assert r.status_code == 200, r.text
    h.runner.tick()
    assert admin.describe(_entity(cid)) == {}
