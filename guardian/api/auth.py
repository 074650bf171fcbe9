"""Who may do what: roles, actions, the one decision point, and bearer tokens.

``authorize(identity, action, resource, access)`` is the only place that
decides; the HTTP API and the MCP server both call it (or ``require``, which
raises). The rules, in order:

1. a resource owned by a principal the identity is not scoped to is *hidden*:
   the caller gets "not found" whatever it tried, so a tenant cannot learn
   that another tenant's quarantine exists;
2. the role must hold the action: ``tenant`` reads, appeals and comments on
   its own principals' quarantines; ``agent`` reads, comments, proposes and
   files appeals, and may release, approve, deny, extend, pause, resume or
   change policy only if ``AccessPolicy.agent_grants`` names the action;
   ``sre`` reviews and acts; ``admin`` also manages tokens.

Tokens are ``gk_<id>.<secret>`` with 256 random bits of secret; Redis keeps
only their SHA-256 (a fast hash is enough for random, high-entropy secrets)
under ``<prefix>tok:h:<sha256>``, and ``<prefix>tok:id:<id>`` points at it so
a token can be listed and revoked by id. Nothing caches a lookup: a revoked
token fails on its next request.

>>> tenant = Identity(token_id="t1", role=Role.TENANT, principals=("User:tenant-a",))
>>> authorize(tenant, Action.QUARANTINE_READ, Resource("quarantine", "q-1", "User:tenant-a")).allowed
True
>>> authorize(tenant, Action.QUARANTINE_READ, Resource("quarantine", "q-2", "User:tenant-b")).hidden
True
>>> authorize(tenant, Action.QUARANTINE_RELEASE, Resource("quarantine", "q-1", "User:tenant-a")).allowed
False
>>> agent = Identity(token_id="a1", role=Role.AGENT)
>>> authorize(agent, Action.QUARANTINE_RELEASE).allowed
False
>>> authorize(agent, Action.QUARANTINE_RELEASE, access=AccessPolicy.of(["quarantine:release"])).allowed
True
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Iterable

from guardian.errors import (AuthenticationError, AuthorizationError, ConfigError, NotFoundError,
                             TemporaryError)


class Role(str, Enum):
    TENANT = "tenant"
    SRE = "sre"
    AGENT = "agent"
    ADMIN = "admin"


class Action(str, Enum):
    QUARANTINE_LIST = "quarantine:list"
    QUARANTINE_READ = "quarantine:read"
    QUARANTINE_COMMENT = "quarantine:comment"
    QUARANTINE_PROPOSE = "quarantine:propose"      # suggest an action for a human to approve
    QUARANTINE_APPROVE = "quarantine:approve"      # grant an appeal, or let an awaiting rung act
    QUARANTINE_DENY = "quarantine:deny"
    QUARANTINE_RELEASE = "quarantine:release"
    QUARANTINE_EXTEND = "quarantine:extend"
    APPEAL_FILE = "appeal:file"
    APPEAL_READ = "appeal:read"
    DECISIONS_READ = "decisions:read"
    PAUSE_READ = "pause:read"
    GUARDIAN_PAUSE = "guardian:pause"
    GUARDIAN_RESUME = "guardian:resume"
    POLICY_READ = "policy:read"
    POLICY_CHANGE = "policy:change"
    AUDIT_READ = "audit:read"
    TOKENS_MANAGE = "tokens:manage"


_READ = frozenset({Action.QUARANTINE_LIST, Action.QUARANTINE_READ, Action.APPEAL_READ, Action.DECISIONS_READ,
                   Action.PAUSE_READ, Action.POLICY_READ})
# What an agent may never do unless the access policy grants it explicitly.
AGENT_GRANTABLE = frozenset({Action.QUARANTINE_APPROVE, Action.QUARANTINE_DENY, Action.QUARANTINE_RELEASE,
                             Action.QUARANTINE_EXTEND, Action.GUARDIAN_PAUSE, Action.GUARDIAN_RESUME,
                             Action.POLICY_CHANGE})
ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.TENANT: _READ - {Action.POLICY_READ} | {Action.APPEAL_FILE, Action.QUARANTINE_COMMENT},
    Role.AGENT: _READ | {Action.APPEAL_FILE, Action.QUARANTINE_COMMENT, Action.QUARANTINE_PROPOSE},
    Role.SRE: frozenset(Action) - {Action.TOKENS_MANAGE, Action.POLICY_CHANGE},
    Role.ADMIN: frozenset(Action),
}
# Roles whose tokens may be scoped to principals (sre and admin always see everything).
SCOPABLE = frozenset({Role.TENANT, Role.AGENT})


def normalize_principal(value: str) -> str:
    """``tenant-a`` and ``User:tenant-a`` name the same principal; store the full form."""
    value = value.strip()
    if not value:
        raise ConfigError("a principal cannot be empty")
    return value if ":" in value else f"User:{value}"


@dataclass(frozen=True)
class AccessPolicy:
    """What the deployment grants beyond the roles: only the agent grants for now."""

    agent_grants: frozenset[Action] = frozenset()

    @classmethod
    def of(cls, agent_grants: Iterable[str] = ()) -> "AccessPolicy":
        grants = set()
        for name in agent_grants:
            try:
                action = Action(name)
            except ValueError:
                raise ConfigError(f"unknown action {name!r} in agent_grants; "
                                  f"known: {', '.join(a.value for a in Action)}") from None
            if action not in AGENT_GRANTABLE:
                raise ConfigError(f"{action.value} cannot be granted to agents; grantable: "
                                  f"{', '.join(sorted(a.value for a in AGENT_GRANTABLE))}")
            grants.add(action)
        return cls(frozenset(grants))


@dataclass(frozen=True)
class Identity:
    """Who is calling, as its token says. ``principals`` empty = not scoped (sees every tenant)."""

    token_id: str
    role: Role
    principals: tuple[str, ...] = ()
    name: str = ""

    @property
    def scoped(self) -> bool:
        return bool(self.principals)

    @property
    def label(self) -> str:
        """What the ledger records as ``by``."""
        return f"{self.role.value}:{self.name or self.token_id}"

    def sees(self, principal: str | None) -> bool:
        """May this identity learn that a record owned by ``principal`` exists?"""
        return not self.scoped or (principal is not None and principal in self.principals)


@dataclass(frozen=True)
class Resource:
    kind: str                     # "quarantine", "appeal", "guardian", ...
    id: str = ""
    principal: str | None = None  # the owner; None = not owned by a tenant


@dataclass(frozen=True)
class AuthzDecision:
    allowed: bool
    hidden: bool      # the resource must look absent to this caller (404, never 403)
    reason: str


def authorize(identity: Identity, action: Action, resource: Resource | None = None,
              access: AccessPolicy = AccessPolicy()) -> AuthzDecision:
    """The one decision: may ``identity`` do ``action`` on ``resource``? Pure."""
    if resource is not None and resource.principal is not None and not identity.sees(resource.principal):
        return AuthzDecision(False, True, f"{resource.kind} {resource.id} is not visible to this token")
    if resource is not None and resource.principal is None and identity.scoped and resource.kind == "quarantine":
        # A quarantine with no principal belongs to no tenant: scoped tokens never see it.
        return AuthzDecision(False, True, f"{resource.kind} {resource.id} is not visible to this token")
    allowed = ROLE_ACTIONS[identity.role]
    if action in allowed and not (identity.role is Role.AGENT and action in AGENT_GRANTABLE):
        return AuthzDecision(True, False, f"role {identity.role.value} may {action.value}")
    if identity.role is Role.AGENT and action in AGENT_GRANTABLE and action in access.agent_grants:
        return AuthzDecision(True, False, f"the access policy grants agents {action.value}")
    return AuthzDecision(False, False, f"role {identity.role.value} may not {action.value}")


def require(identity: Identity, action: Action, resource: Resource | None = None,
            access: AccessPolicy = AccessPolicy()) -> None:
    """``authorize`` that raises: ``NotFoundError`` when hidden, ``AuthorizationError`` when refused."""
    d = authorize(identity, action, resource, access)
    if d.hidden:
        kind = resource.kind if resource is not None else "resource"
        rid = resource.id if resource is not None else ""
        raise NotFoundError(f"no {kind} {rid}".strip())
    if not d.allowed:
        raise AuthorizationError(d.reason)


# ---------------------------------------------------------------- tokens

TOKEN_RE = re.compile(r"^gk_([0-9a-f]{12})\.([A-Za-z0-9_-]{20,128})$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """What Redis keeps about a token (never the token itself)."""

    id: str
    role: Role
    principals: tuple[str, ...] = ()
    name: str = ""
    created_at: float = 0.0
    created_by: str = ""

    def identity(self) -> Identity:
        return Identity(token_id=self.id, role=self.role, principals=self.principals, name=self.name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["role"] = self.role.value
        d["principals"] = list(self.principals)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TokenInfo":
        return cls(id=d["id"], role=Role(d["role"]), principals=tuple(d.get("principals") or ()),
                   name=d.get("name", ""), created_at=float(d.get("created_at", 0.0)),
                   created_by=d.get("created_by", ""))


@dataclass
class TokenStore:
    """Bearer tokens in Redis, hashed. ``client`` is a ``redis.Redis``."""

    client: Any
    prefix: str = "guardian:"
    _ids_key: str = field(init=False)

    def __post_init__(self) -> None:
        self._ids_key = f"{self.prefix}tok:ids"

    def _hkey(self, digest: str) -> str:
        return f"{self.prefix}tok:h:{digest}"

    def _idkey(self, token_id: str) -> str:
        return f"{self.prefix}tok:id:{token_id}"

    def _call(self, fn: Any) -> Any:
        import redis

        try:
            return fn()
        except redis.RedisError as exc:
            raise TemporaryError(f"redis: {exc}") from exc

    def create(self, role: Role | str, principals: Iterable[str] = (), name: str = "",
               created_by: str = "", now: float = 0.0) -> tuple[str, TokenInfo]:
        """Issue a token; returns (the token, shown once, and what is stored)."""
        role = Role(role)
        scoped = tuple(sorted({normalize_principal(p) for p in principals}))
        if role is Role.TENANT and not scoped:
            raise ConfigError("a tenant token needs at least one principal (--tenant)")
        if scoped and role not in SCOPABLE:
            raise ConfigError(f"{role.value} tokens see every tenant; only tenant and agent tokens take --tenant")
        token_id = secrets.token_hex(6)
        token = f"gk_{token_id}.{secrets.token_urlsafe(32)}"
        info = TokenInfo(id=token_id, role=role, principals=scoped, name=name, created_at=now,
                         created_by=created_by)
        digest = hash_token(token)

        def write() -> None:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.set(self._hkey(digest), json.dumps(info.to_dict(), sort_keys=True))
                pipe.set(self._idkey(token_id), digest)
                pipe.sadd(self._ids_key, token_id)
                pipe.execute()

        self._call(write)
        return token, info

    def authenticate(self, token: str | None) -> Identity:
        """The identity of a presented token; ``AuthenticationError`` if absent, malformed or revoked."""
        if not token:
            raise AuthenticationError("a bearer token is required")
        if not TOKEN_RE.match(token):
            raise AuthenticationError("the bearer token is malformed")
        raw = self._call(lambda: self.client.get(self._hkey(hash_token(token))))
        if raw is None:
            raise AuthenticationError("the bearer token is unknown or revoked")
        return TokenInfo.from_dict(json.loads(raw)).identity()

    def get(self, token_id: str) -> TokenInfo | None:
        digest = self._call(lambda: self.client.get(self._idkey(token_id)))
        if digest is None:
            return None
        raw = self._call(lambda: self.client.get(self._hkey(digest.decode())))
        return TokenInfo.from_dict(json.loads(raw)) if raw else None

    def revoke(self, token_id: str) -> bool:
        """Delete the token; True if it existed. Its next request fails."""
        digest = self._call(lambda: self.client.get(self._idkey(token_id)))
        if digest is None:
            return False

        def delete() -> None:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self._hkey(digest.decode()), self._idkey(token_id))
                pipe.srem(self._ids_key, token_id)
                pipe.execute()

        self._call(delete)
        return True

    def list(self) -> list[TokenInfo]:
        ids = sorted(i.decode() for i in self._call(lambda: self.client.smembers(self._ids_key)))
        return [info for i in ids if (info := self.get(i)) is not None]
