"""Tenant ACLs and login checks for the local broker (and for tests that add tenants)."""

from __future__ import annotations

import time

from guardian.errors import SetupError, TemporaryError


def tenant_acl_bindings(tenant: str) -> list:
    """ALLOW ALL on the tenant's own ``<tenant>.`` topic, group and transactional-id prefixes."""
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)

    principal = f"User:{tenant}"
    return [AclBinding(rtype, f"{tenant}.", ResourcePatternType.PREFIXED, principal, "*",
                       AclOperation.ALL, AclPermissionType.ALLOW)
            for rtype in (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID)]


def allow_tenant(bootstrap: str, tenant: str, timeout: float = 30.0) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_acls(tenant_acl_bindings(tenant), request_timeout=timeout)
    for binding, fut in futures.items():
        try:
            fut.result(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - converted at the edge
            raise TemporaryError(f"could not create ACL {binding}: {exc}") from exc


def tenant_config(sasl_bootstrap: str, user: str, password: str, **extra: object) -> dict:
    """librdkafka config for a tenant client on the SASL listener."""
    conf = {"bootstrap.servers": sasl_bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": password}
    conf.update(extra)
    return conf


def check_tenant_login(sasl_bootstrap: str, user: str, password: str, timeout: float = 30.0) -> None:
    """Wait until ``user`` authenticates on the SASL listener; raise SetupError when it never does."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[str] = []

    def on_error(err) -> None:
        errors.append(str(err))

    from guardian_dev.kafka import quiet_logger

    admin = AdminClient(tenant_config(sasl_bootstrap, user, password, error_cb=on_error, logger=quiet_logger()))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=3)
            return
        except KafkaException:
            time.sleep(0.5)
    raise SetupError(f"tenant {user} could not authenticate on {sasl_bootstrap}: "
                     f"{errors[-1] if errors else 'no answer'}")


def ensure_topics(bootstrap: str, topics: dict[str, int], timeout: float = 30.0) -> None:
    """Create the named topics (name -> partitions) unless they exist."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(t, n, 1) for t, n in topics.items() if t not in existing]
    for topic, fut in (admin.create_topics(wanted, operation_timeout=timeout).items() if wanted else []):
        try:
            fut.result(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - converted at the edge
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise TemporaryError(f"could not create topic {topic}: {exc}") from exc
