"""The one authorisation decision: every role against every action, with and without ownership."""

from __future__ import annotations

import pytest

from guardian.api.auth import (AGENT_GRANTABLE, AccessPolicy, Action, Identity, Resource, Role, authorize,
                           normalize_principal, require)
from guardian.errors import AuthorizationError, ConfigError, NotFoundError

A = "User:tenant-a"
B = "User:tenant-b"
MINE = Resource("quarantine", "q-a", A)
THEIRS = Resource("quarantine", "q-b", B)
ORPHAN = Resource("quarantine", "q-x", None)

TENANT = Identity("t", Role.TENANT, (A,), "team-a")
AGENT = Identity("g", Role.AGENT)
SCOPED_AGENT = Identity("sg", Role.AGENT, (A,))
SRE = Identity("s", Role.SRE)
ADMIN = Identity("ad", Role.ADMIN)

TENANT_MAY = {Action.QUARANTINE_LIST, Action.QUARANTINE_READ, Action.APPEAL_READ, Action.APPEAL_FILE,
              Action.QUARANTINE_COMMENT, Action.DECISIONS_READ, Action.PAUSE_READ}
AGENT_MAY = {Action.QUARANTINE_LIST, Action.QUARANTINE_READ, Action.APPEAL_READ, Action.APPEAL_FILE,
             Action.QUARANTINE_COMMENT, Action.QUARANTINE_PROPOSE, Action.DECISIONS_READ, Action.PAUSE_READ,
             Action.POLICY_READ}


def allowed(who: Identity, resource: Resource | None = None, access: AccessPolicy = AccessPolicy()) -> set[Action]:
    return {a for a in Action if authorize(who, a, resource, access).allowed}


def test_role_matrix_on_an_owned_resource():
    assert allowed(TENANT, MINE) == TENANT_MAY
    assert allowed(AGENT, MINE) == AGENT_MAY
    assert allowed(SCOPED_AGENT, MINE) == AGENT_MAY
    assert allowed(SRE, MINE) == set(Action) - {Action.TOKENS_MANAGE, Action.POLICY_CHANGE}
    assert allowed(ADMIN, MINE) == set(Action)


@pytest.mark.parametrize("who", [TENANT, SCOPED_AGENT])
def test_scoped_tokens_find_nothing_of_other_tenants_whatever_the_action(who):
    for action in Action:
        d = authorize(who, action, THEIRS)
        assert d.hidden and not d.allowed, action
        with pytest.raises(NotFoundError, match="^no quarantine q-b$"):
            require(who, action, THEIRS)
        # A quarantine without a principal belongs to no tenant.
        assert authorize(who, action, ORPHAN).hidden


def test_unscoped_roles_see_every_tenant():
    for who in (AGENT, SRE, ADMIN):
        assert not authorize(who, Action.QUARANTINE_READ, THEIRS).hidden
        assert authorize(who, Action.QUARANTINE_READ, ORPHAN).allowed


def test_refusals_of_known_resources_are_forbidden_not_hidden():
    d = authorize(TENANT, Action.QUARANTINE_RELEASE, MINE)
    assert not d.allowed and not d.hidden
    with pytest.raises(AuthorizationError, match="tenant may not quarantine:release"):
        require(TENANT, Action.QUARANTINE_RELEASE, MINE)


def test_agents_act_only_on_explicit_grants():
    for action in AGENT_GRANTABLE:
        assert not authorize(AGENT, action, MINE).allowed, action
    grants = AccessPolicy.of(["quarantine:release", "guardian:pause"])
    assert allowed(AGENT, MINE, grants) == AGENT_MAY | {Action.QUARANTINE_RELEASE, Action.GUARDIAN_PAUSE}
    # A grant never crosses a tenant boundary, and never reaches other roles' limits.
    assert authorize(SCOPED_AGENT, Action.QUARANTINE_RELEASE, THEIRS, grants).hidden
    assert not authorize(TENANT, Action.QUARANTINE_RELEASE, MINE, grants).allowed
    assert not authorize(AGENT, Action.TOKENS_MANAGE, None, AccessPolicy(frozenset({Action.TOKENS_MANAGE}))).allowed
    with pytest.raises(ConfigError, match="tokens:manage cannot be granted to agents"):
        AccessPolicy.of(["tokens:manage"])


def test_unknown_grants_are_a_config_error():
    with pytest.raises(ConfigError, match="unknown action 'release-everything'"):
        AccessPolicy.of(["release-everything"])


def test_principals_are_normalised_and_labels_say_who():
    assert normalize_principal("tenant-a") == "User:tenant-a"
    assert normalize_principal(" User:tenant-a ") == "User:tenant-a"
    with pytest.raises(ConfigError):
        normalize_principal("  ")
    assert TENANT.label == "tenant:team-a" and AGENT.label == "agent:g"
