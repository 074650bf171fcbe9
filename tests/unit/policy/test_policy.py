"""Policy files: the shipped default validates; unknown keys and bad values name file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from guardian.model.detection import Severity, Signature
from guardian.errors import ConfigError
from guardian.policy.config import (DenyAclRung, IsolatePodRung, PolicySet, ThrottleRung, default_policy_path,
                             load_policy, parse_policy)

MINIMAL = textwrap.dedent("""\
    version: 1
    global:
      max_concurrent_quarantines: 3
    policies:
      - name: p
        ladder:
          - action: throttle
            absolute: 1000
    """)


def test_default_policy_loads_and_has_the_three_rungs():
    ps = load_policy(default_policy_path())
    runaway = ps.first_match({"principal": "User:tenant-a", "client_id": "x"}, Signature.RUNAWAY_PRODUCER)
    assert [type(r) for r in runaway.ladder] == [ThrottleRung, DenyAclRung, IsolatePodRung]
    # storms are throttled by the quota made for them, not by a byte rate
    storm = ps.first_match({"principal": "User:tenant-a"}, Signature.PARTITION_STORM)
    assert storm.ladder[0].quota == "controller_mutation_rate"
    group = ps.first_match({"principal": "User:tenant-a", "group": "g"}, Signature.REBALANCE_STORM)
    assert group.ladder[0].quota == "request_percentage"
    assert ps.global_.protected.reason({"principal": "User:admin"}) is not None
    assert ps.global_.dry_run is False


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("where,insert_after,bad", [
    ("global", "  max_concurrent_quarantines: 3", "  max_concurent_quarantines: 4"),
    ("rung", "        absolute: 1000", "        tll_s: 60"),
    ("policy", "  - name: p", "    dryrun: true"),
])
def test_unknown_key_error_names_file_line_and_key(tmp_path: Path, where, insert_after, bad):
    text = MINIMAL.replace(insert_after, insert_after + "\n" + bad)
    path = tmp_path / f"{where}.yaml"
    path.write_text(text)
    key = bad.strip().split(":")[0]
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    msg = str(err.value)
    assert f"{path}:{_line_of(text, bad.strip())}:" in msg
    assert repr(key) in msg and "not allowed" in msg


def test_unknown_key_in_the_shipped_default_is_found_at_its_line(tmp_path: Path):
    text = default_policy_path().read_text().replace("    resume_rung: true", "    resume_rung: true\n    surprise: 1")
    path = tmp_path / "default.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"{path}:{_line_of(text, 'surprise: 1')}: global.probation.surprise"):
        load_policy(path)


def test_bad_value_is_reported_at_its_line():
    text = MINIMAL.replace("absolute: 1000", "absolute: -5")
    with pytest.raises(ConfigError, match=rf"x.yaml:{_line_of(text, 'absolute: -5')}: policies.0.ladder.0.absolute"):
        parse_policy(text, "x.yaml")


def test_throttle_needs_exactly_one_rate():
    text = MINIMAL.replace("absolute: 1000", "absolute: 1000\n        multiple_of_baseline: 2")
    with pytest.raises(ConfigError, match="exactly one of multiple_of_baseline or absolute"):
        parse_policy(text, "x.yaml")


def test_unknown_action_and_signature_rejected():
    with pytest.raises(ConfigError, match="ladder.0"):
        parse_policy(MINIMAL.replace("action: throttle", "action: nuke"), "x.yaml")
    with pytest.raises(ConfigError, match="signatures"):
        parse_policy(MINIMAL.replace("    ladder:", "    signatures: [meteor]\n    ladder:"), "x.yaml")


def test_empty_ladder_and_duplicate_names_rejected():
    with pytest.raises(ConfigError, match="ladder"):
        parse_policy("policies:\n  - name: a\n    ladder: []\n", "x.yaml")
    dup = MINIMAL + "  - name: p\n    ladder:\n      - action: throttle\n        absolute: 5\n"
    with pytest.raises(ConfigError, match="repeated: p"):
        parse_policy(dup, "x.yaml")


def test_invalid_yaml_names_the_line():
    with pytest.raises(ConfigError, match=r"x.yaml:\d+: not valid YAML"):
        parse_policy("policies:\n  - name: [unclosed\n", "x.yaml")


def test_matching_is_first_match_with_globs():
    ps = parse_policy(textwrap.dedent("""\
        policies:
          - name: loaders
            match: {principals: ["User:tenant-a"], client_ids: ["loader-*"]}
            ladder: [{action: throttle, absolute: 10}]
          - name: rest
            ladder: [{action: throttle, absolute: 20}]
        """), "x.yaml")
    assert ps.first_match({"principal": "User:tenant-a", "client_id": "loader-7"}).name == "loaders"
    assert ps.first_match({"principal": "User:tenant-a", "client_id": "web"}).name == "rest"
    assert ps.first_match({"principal": "User:tenant-b"}).name == "rest"
    # A pattern other than '*' never matches a missing identity.
    assert ps.policies[0].match.matches({"principal": "User:tenant-a"}) is False


def test_first_match_skips_policies_that_do_not_list_the_signature():
    ps = parse_policy(textwrap.dedent("""\
        policies:
          - name: storms
            signatures: [partition_storm]
            ladder: [{action: throttle, quota: controller_mutation_rate, absolute: 2}]
          - name: rest
            ladder: [{action: throttle, absolute: 20}]
        """), "x.yaml")
    wl = {"principal": "User:tenant-a"}
    assert ps.first_match(wl, Signature.PARTITION_STORM).name == "storms"
    assert ps.first_match(wl, Signature.RUNAWAY_PRODUCER).name == "rest"
    assert ps.first_match(wl).name == "storms"   # without a signature: the workload alone decides


def test_reacts_to_signature_severity_confidence_and_probation_relief():
    ps = parse_policy(MINIMAL.replace("    ladder:", "    signatures: [runaway_producer]\n"
                                      "    min_severity: high\n    min_confidence: 0.6\n    ladder:"), "x.yaml")
    p = ps.policies[0]
    assert p.reacts_to(Signature.RUNAWAY_PRODUCER, Severity.HIGH, 0.7)
    assert not p.reacts_to(Signature.RETRY_STORM, Severity.CRITICAL, 0.9)
    assert not p.reacts_to(Signature.RUNAWAY_PRODUCER, Severity.MEDIUM, 0.9)
    assert p.reacts_to(Signature.RUNAWAY_PRODUCER, Severity.MEDIUM, 0.9, severity_relief=1)
    assert not p.reacts_to(Signature.RUNAWAY_PRODUCER, Severity.HIGH, 0.5)


def test_protected_principals_cover_super_users_guardian_internal_and_allow_list():
    ps = PolicySet.model_validate({"global": {"protected": {"allow_list": ["User:payments"]}}})
    prot = ps.global_.protected
    for wl in ({"principal": "User:admin"}, {"principal": "User:guardian"},
               {"principal": "User:mirrormaker2"}, {"principal": "User:tenant-a", "client_id": "guardian-audit"},
               {"principal": "User:tenant-a", "client_id": "__consumer_offsets_x"},
               {"principal": "User:payments", "client_id": "x"}):
        assert prot.reason(wl) is not None, wl
    assert prot.reason({"principal": "User:tenant-a", "client_id": "loader"}) is None
