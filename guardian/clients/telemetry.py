"""KIP-714 client-metrics subscriptions: the CLIENT_METRICS config resources (type 16).

A subscription tells matching clients which metrics to push and how often;
the broker plugin forwards what they push. Edge I/O through kafka-python's
admin client (confluent-kafka has no CLIENT_METRICS resource type).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from guardian.errors import PermanentError, TemporaryError

# Prefixes every KIP-714 client (Java, librdkafka) understands.
DEFAULT_METRICS = ("org.apache.kafka.producer.", "org.apache.kafka.consumer.")
MATCH_KEYS = ("client_instance_id", "client_id", "client_software_name", "client_software_version",
              "client_source_address", "client_source_port")


@dataclass
class Subscription:
    name: str
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    interval_ms: int = 5000
    match: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        for key in self.match:
            if key not in MATCH_KEYS:
                raise PermanentError(f"unknown match key {key!r}; known: {', '.join(MATCH_KEYS)}")
        if not 100 <= self.interval_ms <= 3_600_000:
            raise PermanentError("interval_ms must be between 100 and 3600000")
        return {"metrics": ",".join(self.metrics), "interval.ms": str(self.interval_ms),
                "match": ",".join(f"{k}={v}" for k, v in self.match.items())}


class TelemetrySubscriptions:
    def __init__(self, bootstrap_servers: str, **kafka_python_config) -> None:
        import kafka.errors as kerr
        from kafka.admin import KafkaAdminClient

        try:
            self._admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                           client_id="guardian-telemetry-admin", **kafka_python_config)
        except kerr.NoBrokersAvailable as exc:
            raise TemporaryError(f"no Kafka broker answers at {bootstrap_servers}: {exc}") from exc

    def close(self) -> None:
        self._admin.close()

    def __enter__(self) -> "TelemetrySubscriptions":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subscribe(self, sub: Subscription, wait_s: float = 15.0) -> None:
        """Create or update ``sub``; returns once the broker lists it (KRaft applies configs asynchronously)."""
        from kafka.admin import ConfigResource, ConfigResourceType

        res = ConfigResource(ConfigResourceType.CLIENT_METRICS, sub.name, configs=sub.configs())
        self._check(self._admin.alter_configs([res], raise_on_unknown=False, incremental=True), sub.name)
        self._wait(lambda: any(s.name == sub.name and s.interval_ms == sub.interval_ms for s in self.list()),
                   wait_s, f"subscription {sub.name} to appear")

    def unsubscribe(self, name: str) -> None:
        from kafka.admin import ConfigResource, ConfigResourceType

        res = ConfigResource(ConfigResourceType.CLIENT_METRICS, name,
                             configs={"metrics": None, "interval.ms": None, "match": None})
        self._check(self._admin.reset_configs([res], raise_on_unknown=False, incremental=True), name)
        self._wait(lambda: all(s.name != name for s in self.list()), 15.0, f"subscription {name} to go")

    @staticmethod
    def _wait(done, wait_s: float, what: str) -> None:
        import time

        deadline = time.monotonic() + wait_s
        while not done():
            if time.monotonic() > deadline:
                raise TemporaryError(f"the broker did not apply the change in {wait_s:.0f}s: waiting for {what}")
            time.sleep(0.2)

    def list(self) -> list[Subscription]:
        from kafka.admin import ConfigResource, ConfigResourceType

        names = self._admin.list_config_resources([ConfigResourceType.CLIENT_METRICS]).get("client_metrics", [])
        if not names:
            return []
        described = self._admin.describe_configs([ConfigResource(ConfigResourceType.CLIENT_METRICS, n)
                                                  for n in names], config_filter="all")
        out = []
        for name, configs in described.get("client_metrics", {}).items():
            values = {k: (v.get("value") if isinstance(v, dict) else v) for k, v in configs.items()}
            metrics = [m for m in (values.get("metrics") or "").split(",") if m]
            match = dict(p.split("=", 1) for p in (values.get("match") or "").split(",") if "=" in p)
            out.append(Subscription(name, metrics, int(values.get("interval.ms") or 0), match))
        return sorted(out, key=lambda s: s.name)

    @staticmethod
    def _check(result: dict, name: str) -> None:
        for per_type in result.values():
            for res_name, outcome in per_type.items():
                if isinstance(outcome, Exception) or (outcome is not None and getattr(outcome, "errno", 0)):
                    raise PermanentError(f"client-metrics subscription {res_name or name}: {outcome}")
