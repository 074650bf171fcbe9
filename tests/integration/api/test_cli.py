"""The CLI over the running API (uvicorn on loopback) and, for tokens, straight on Redis."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from guardian.api.cli import appeals_app, quarantines_app, tokens_app


def test_cli_appeal_and_review_round_trip(harness, served):
    h = harness
    runner = CliRunner()
    env = {"GUARDIAN_REDIS__URL": h.settings.redis.url.get_secret_value(), "GUARDIAN_REDIS__PREFIX": h.settings.redis.prefix,
           "GUARDIAN_API__URL": served.url}

    def run(app, *args, token=None):
        result = runner.invoke(app, list(args), env={**env, **({"GUARDIAN_API__TOKEN": token} if token else {})})
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    # Tokens: the secret is printed once (stdout), the listing never shows it.
    sre = run(tokens_app, "create", "--role", "sre", "--name", "dana").stdout.strip().splitlines()[-1]
    tenant = run(tokens_app, "create", "--role", "tenant", "--tenant", "tenant-a").stdout.strip().splitlines()[-1]
    listed = json.loads(run(tokens_app, "list", "--json").stdout)
    assert {t["role"] for t in listed} == {"sre", "tenant"}
    assert sre not in json.dumps(listed) and tenant not in json.dumps(listed)
    assert [t["principals"] for t in listed if t["role"] == "tenant"] == [["User:tenant-a"]]

    q = h.quarantine("User:tenant-a")
    out = run(quarantines_app, "list", token=tenant).stdout
    assert q.id in out and "active" in out
    shown = json.loads(run(quarantines_app, "show", q.id, "--json", token=tenant).stdout)
    assert shown["id"] == q.id and shown["evidence"]["metric"] == "produce_byte_rate"

    filed = json.loads(run(appeals_app, "file", q.id, "-j", "batch job, see ticket OPS-1", "--requested-limit",
                           "1000000", "--until", "2h", "--json", token=tenant).stdout)
    assert filed["state"] == "pending" and filed["requested_limit"] == 1_000_000
    assert "pending" in run(appeals_app, "list", "--state", "pending", token=sre).stdout

    # A tenant cannot approve: the CLI exits non-zero with the API's words.
    refused = runner.invoke(quarantines_app, ["approve", q.id], env={**env, "GUARDIAN_API__TOKEN": tenant})
    assert refused.exit_code != 0 and "403" in str(refused.exception)

    run(quarantines_app, "approve", q.id, "--reason", "ok", token=sre)
    assert json.loads(run(appeals_app, "show", filed["id"], "--json", token=tenant).stdout)["state"] == "granted"
    assert h.ledger.get(q.id).state.value == "released"

    q2 = h.quarantine("User:tenant-a")
    before = h.ledger.get(q2.id).expires_at
    run(quarantines_app, "extend", q2.id, "--by", "1h", "--reason", "repeat offender", token=sre)
    assert h.ledger.get(q2.id).expires_at >= before + 3599
    run(quarantines_app, "release", q2.id, "--reason", "done", token=sre)
    assert h.ledger.get(q2.id).state.value == "released"

    tid = next(t["id"] for t in listed if t["role"] == "tenant")
    run(tokens_app, "revoke", tid)
    gone = runner.invoke(quarantines_app, ["list"], env={**env, "GUARDIAN_API__TOKEN": tenant})
    assert gone.exit_code != 0 and "401" in str(gone.exception)
