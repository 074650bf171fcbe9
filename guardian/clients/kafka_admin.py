"""Kafka admin I/O at the edge: client quotas, ACLs and topics.

confluent-kafka has no client-quota call, so quotas go through kafka-python's
protocol classes (AlterClientQuotas, key 49; DescribeClientQuotas, key 48).
Client-library errors become ``guardian.errors`` here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

from guardian.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

QUOTA_KEYS = ("producer_byte_rate", "consumer_byte_rate", "request_percentage",
              "controller_mutation_rate")

# DescribeClientQuotas match types.
MATCH_EXACT, MATCH_DEFAULT, MATCH_ANY = 0, 1, 2


@dataclass(frozen=True)
class QuotaEntity:
    """A client-quota entity. ``None`` for a name means the default entity of that type.

    Only the types present are part of the entity: ``QuotaEntity(user="a")`` is the
    plain user entity, ``QuotaEntity(user="a", client_id="c")`` the (user, client-id) pair.
    """

    user: str | None = None
    client_id: str | None = None
    has_user: bool = True
    has_client_id: bool = False

    @classmethod
    def of(cls, user: str | None = ..., client_id: str | None = ...) -> "QuotaEntity":  # type: ignore[assignment]
        """``...`` = type absent, ``None`` = default entity, a string = that name."""
        return cls(user=None if user is ... else user, client_id=None if client_id is ... else client_id,
                   has_user=user is not ..., has_client_id=client_id is not ...)

    def components(self) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        if self.has_user:
            out.append(("user", self.user))
        if self.has_client_id:
            out.append(("client-id", self.client_id))
        return out

    def __str__(self) -> str:
        return ",".join(f"{t}={'<default>' if n is None else n}" for t, n in self.components())


def _kafka_python_errors():
    import kafka.errors as kerr

    return kerr


class ClientQuotaAdmin:
    """Set and read client quotas through AlterClientQuotas / DescribeClientQuotas."""

    def __init__(self, bootstrap_servers: str, **kafka_python_config: Any) -> None:
        from kafka.admin import KafkaAdminClient

        kerr = _kafka_python_errors()
        try:
            self._admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                           client_id="guardian-quota-admin", **kafka_python_config)
        except kerr.NoBrokersAvailable as exc:
            raise TemporaryError(f"no Kafka broker answers at {bootstrap_servers}: {exc}") from exc

    def close(self) -> None:
        self._admin.close()

    def __enter__(self) -> "ClientQuotaAdmin":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self, entity: QuotaEntity) -> dict[str, float]:
        """The quota values set on exactly ``entity`` ({} when none)."""
        from kafka.protocol.admin import DescribeClientQuotasRequest as Req

        comps = [Req.ComponentData(entity_type=t, match_type=MATCH_DEFAULT if n is None else MATCH_EXACT,
                                   match=n) for t, n in entity.components()]
        resp = self._send(Req(components=comps, strict=True))
        if resp.error_code:
            raise self._error(resp.error_code, resp.error_message, f"describe quotas of {entity}")
        want = {(t, n) for t, n in entity.components()}
        for entry in resp.entries or []:
            got = {(e.entity_type, e.entity_name) for e in entry.entity}
            if got == want:
                return {v.key: float(v.value) for v in entry.values}
        return {}

    def alter(self, entity: QuotaEntity, set_values: dict[str, float] | None = None,
              remove: Iterable[str] = ()) -> None:
        """Set ``set_values`` and remove the ``remove`` keys on ``entity`` in one request."""
        from kafka.protocol.admin import AlterClientQuotasRequest as Req

        ops = [Req.EntryData.OpData(key=k, value=float(v), remove=False) for k, v in (set_values or {}).items()]
        ops += [Req.EntryData.OpData(key=k, value=0.0, remove=True) for k in remove]
        for op in ops:
            if op.key not in QUOTA_KEYS:
                raise PermanentError(f"unknown quota key {op.key!r}; known: {', '.join(QUOTA_KEYS)}")
        if not ops:
            return
        ents = [Req.EntryData.EntityData(entity_type=t, entity_name=n) for t, n in entity.components()]
        resp = self._send(Req(entries=[Req.EntryData(entity=ents, ops=ops)], validate_only=False))
        for entry in resp.entries:
            if entry.error_code:
                raise self._error(entry.error_code, entry.error_message, f"alter quotas of {entity}")

    def restore(self, entity: QuotaEntity, previous: dict[str, float]) -> None:
        """Make ``entity``'s quotas exactly ``previous`` (``{}`` = no quota at all)."""
        current = self.describe(entity)
        stale = [k for k in current if k not in previous]
        changed = {k: v for k, v in previous.items() if current.get(k) != v}
        self.alter(entity, changed, stale)

    def _send(self, request: Any) -> Any:
        kerr = _kafka_python_errors()
        admin = self._admin

        async def call():
            return await admin._manager.send(request)

        try:
            return admin._manager.run(call)
        except kerr.KafkaError as exc:
            if getattr(exc, "retriable", False):
                raise TemporaryError(f"quota request failed: {exc}") from exc
            raise PermanentError(f"quota request failed: {exc}") from exc

    @staticmethod
    def _error(code: int, message: str | None, what: str) -> Exception:
        kerr = _kafka_python_errors()
        err = kerr.for_code(code)
        text = f"{what}: {err.__name__}{': ' + message if message else ''}"
        return TemporaryError(text) if getattr(err, "retriable", False) else PermanentError(text)


class GroupMembers:
    """The client-ids of a consumer group's members now (DescribeGroups through confluent-kafka).

    The engine asks this when a group-level detection (a rebalance storm) must be throttled:
    the quota binds each member's (principal, client-id), not the whole principal.
    """

    def __init__(self, client_config: dict[str, Any], timeout_s: float = 10.0) -> None:
        from confluent_kafka.admin import AdminClient

        self.timeout_s = timeout_s
        self._admin = AdminClient(dict(client_config))

    def __call__(self, group: str) -> list[str]:
        from confluent_kafka import KafkaException

        t = self.timeout_s
        try:
            desc = self._admin.describe_consumer_groups([group], request_timeout=t)[group].result(timeout=t)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            text = f"describe group {group!r}: {err.str() if hasattr(err, 'str') else exc}"
            if err is not None and hasattr(err, "retriable") and err.retriable():
                raise TemporaryError(text) from exc
            raise PermanentError(text) from exc
        except Exception as exc:  # noqa: BLE001 - a timeout of the future: the broker may be back soon
            raise TemporaryError(f"describe group {group!r}: {type(exc).__name__}: {exc}") from exc
        return sorted({m.client_id for m in desc.members if m.client_id})
