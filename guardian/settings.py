"""The one settings object.

Sources, highest precedence first: explicit keyword arguments, environment
variables ``GUARDIAN_<SECTION>__<KEY>`` (plus the conventional
``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``), then defaults. Unknown keys in
any section are rejected. Nothing is built at import time: call
``GuardianSettings()`` where the wiring needs it.

Secrets (the SASL password, the Redis URL, which may carry a password, the
API token and the escalation channels' URLs, keys and tokens) are
``SecretStr``: ``repr``, ``str`` and ``model_dump`` show ``**********``;
only the code that sends one calls ``.get_secret_value()``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from guardian.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = ""           # admin listener; empty = the embedded dev broker
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SASL_PLAINTEXT | SASL_SSL | SSL
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr = SecretStr("")
    ssl_ca_location: str | None = None
    metrics_url: str = ""                 # Prometheus endpoint of the broker(s), comma-separated
    cluster: str = "default"

    def client_config(self) -> dict[str, Any]:
        """librdkafka configuration for the guardian's own clients."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers,
                                "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf

    def kafka_python_config(self) -> dict[str, Any]:
        """The same connection for kafka-python's clients (keyword arguments, without the bootstrap servers)."""
        conf: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username or "",
                        sasl_plain_password=self.sasl_password.get_secret_value())
        if self.ssl_ca_location:
            conf["ssl_cafile"] = self.ssl_ca_location
        return conf


class RedisSettings(_Section):
    url: SecretStr = SecretStr("")  # redis://[:password@]host:port/db; required outside the dev stack
    prefix: str = "guardian:"  # key prefix of the ledger (quarantines, tokens, audit)


class TopicSettings(_Section):
    metrics: str = "guardian.metrics"
    metrics_dlq: str = "guardian.metrics.dlq"
    detections: str = "guardian.detections"
    decisions: str = "guardian.decisions"
    telemetry: str = "guardian.telemetry"
    broker_metrics: str = "guardian.broker-metrics"
    client_stats: str = "guardian.client-stats"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=-1)  # -1 = broker default
    retention_ms: int = Field(default=24 * 3600 * 1000, ge=60_000)


class IngestSettings(_Section):
    """Collectors and stream processors started by `guardian run` (guardian/ingest)."""

    collectors: list[str] = Field(default_factory=lambda: ["scrape", "admin", "client-stats"])
    # Metric resolution. The detectors count samples (a client is established after warm_n = 120, the first
    # rung wants 10 s of evidence) and every containment figure (drills, replay) is at 1 s and 2 s; sizing
    # for larger clusters is in the README ("Metric resolution and sizing")
    scrape_interval_s: float = Field(default=1.0, gt=0)
    admin_interval_s: float = Field(default=2.0, gt=0)
    app_id: str = "guardian-ingest"                 # faust app id = the processors' consumer group
    processing_guarantee: str = "exactly_once"      # exactly_once | at_least_once
    # samples a metrics record holds at most; a tenant's batches of one scrape are packed into as few
    # records as that allows (the worker's cost is per record: docs/BENCHMARKS.md, "Packed records").
    # pack_records=false writes one batch a record, which workers from before packs read: for a rolling
    # upgrade that starts with the collectors
    max_batch_samples: int = Field(default=1000, ge=1)
    pack_records: bool = True
    # the worker hands the detectors up to this many records at once, waiting at most chunk_wait_s for
    # them: the detectors' cost is per call, so one record a call held a core to ~6,000 samples/s
    chunk_records: int = Field(default=1000, ge=1)
    chunk_wait_s: float = Field(default=0.05, gt=0)
    owner_prefixes: list[str] = Field(default_factory=list)  # "<tenant>." names -> User:<tenant>
    metrics_port: int = 0                           # processor /metrics port; 0 = not served


class StateSettings(_Section):
    """Detector state saved per partition of the metrics topic to the ledger's Redis, so a worker that
    restarts or takes over a partition resumes its workloads warm (guardian/ingest/state.py)."""

    enabled: bool = True
    interval_s: float = Field(default=30.0, gt=0)          # sample time between two saves of a partition
    ttl_s: int = Field(default=24 * 3600, ge=60)           # a snapshot not rewritten for this long expires
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)  # a bigger snapshot is not written (logged)


class ViewSettings(_Section):
    """The shared cluster view: each worker publishes its part of the engine's inputs (broker pressure,
    cluster traffic, followed client rates) to the ledger's Redis, and the engine merges every live
    worker's (guardian/policy/view.py, guardian/ingest/view.py). Off: the engine reads only its own
    process's stage, which is the whole cluster with one worker only."""

    enabled: bool = True
    interval_s: float = Field(default=1.0, gt=0)     # sample time between two publications of a worker's view
    ttl_s: float = Field(default=10.0, ge=1)         # a view not republished for this long is gone (a dead worker)
    cache_s: float = Field(default=0.5, ge=0)        # the engine rereads the views at most this often
    retry_s: float = Field(default=10.0, gt=0)       # after a Redis error a worker stops publishing this long


class DevSettings(_Section):
    home: Path = Field(default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "guardian")
    kafka_version: str = "4.1.1"
    brokers: int = Field(default=1, ge=1, le=9)   # `dev up --brokers N`: N combined broker+controller nodes
    # `dev up --controllers N`: N dedicated KRaft controllers, the brokers only brokers (0: combined nodes)
    controllers: int = Field(default=0, ge=0, le=3)
    tenants: list[str] = Field(default_factory=lambda: ["tenant-a", "tenant-b", "tenant-c"])
    # 0 = pick a free port at `guardian-dev up`
    kafka_port: int = 0
    kafka_sasl_port: int = 0
    kafka_controller_port: int = 0
    kafka_metrics_port: int = 0
    redis_port: int = 0
    start_timeout_s: float = 120.0
    # the local broker's capacity (server.properties); Kafka's defaults are 8, 3 and 500
    kafka_io_threads: int = Field(default=4, ge=1, le=64)          # num.io.threads: request handlers
    kafka_network_threads: int = Field(default=3, ge=1, le=64)     # num.network.threads: socket processors
    kafka_queued_max_requests: int = Field(default=500, ge=1)      # queued.max.requests: the request queue
    kafka_flush_interval_messages: int = Field(default=0, ge=0)    # log.flush.interval.messages; 0 = the OS's
    kafka_compression_type: str = "producer"                       # compression.type: the broker's codec
    kafka_compression_gzip_level: int = Field(default=-1, ge=-1, le=9)  # compression.gzip.level; -1 = default
    # each broker's memory limit (MB, its page cache included; heap fixed at 512 MB) and disk read rate
    # (MB/s); 0 = none. Linux cgroup v1 and root (guardian_dev/cgroups.py): the rewind drill's slow disk
    kafka_memory_mb: int = Field(default=0, ge=0)
    kafka_disk_read_mb_s: float = Field(default=0.0, ge=0)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    url: str = ""                   # the CLI's API base URL; empty = http://<host>:<port>
    token: SecretStr = SecretStr("")  # the CLI's bearer token
    rate_per_s: float = Field(default=10.0, gt=0)       # per token, token bucket refill
    burst: int = Field(default=40, ge=1)                # per token, bucket size
    agent_rate_per_s: float = Field(default=2.0, gt=0)  # agents get a smaller budget
    agent_burst: int = Field(default=10, ge=1)
    # Actions an agent token may do beyond read/comment/propose/appeal, e.g. ["quarantine:extend"].
    agent_grants: list[str] = Field(default_factory=list)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    audit_keep: int = Field(default=10_000, ge=0)       # recent request audit kept for GET /v1/audit
    scan_limit: int = Field(default=5_000, ge=1)        # most quarantines one list request (or the feed) looks at


class EscalationSettings(_Section):
    """Where `guardian run` sends escalations (guardian/escalation*.py); every channel is optional."""

    slack_webhook_url: SecretStr = SecretStr("")   # the URL is the credential
    webhook_url: str = ""           # signed generic webhook (HMAC-SHA256 with webhook_secret)
    webhook_secret: SecretStr = SecretStr("")
    pagerduty_routing_key: SecretStr = SecretStr("")
    pagerduty_url: str = ""         # empty = the PagerDuty Events v2 endpoint
    agent_url: str = ""
    agent_token: SecretStr = SecretStr("")
    events: list[str] | None = None  # engine events to escalate; None = all
    api_base_url: str = ""          # links in the summary (quarantine, appeal, release)
    dashboard_url: str = ""         # e.g. a Grafana URL with {id}


class KubernetesSettings(_Section):
    # Namespaces where tenant pods may be isolated; the engine looks for the pod that runs a
    # workload's client-id (annotations, docs/kubernetes.md) only here. Empty = nowhere.
    namespaces: list[str] = Field(default_factory=list)


class GuardianSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUARDIAN_", env_nested_delimiter="__",
                                      extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    dev: DevSettings = Field(default_factory=DevSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    view: ViewSettings = Field(default_factory=ViewSettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    policy_file: Path | None = None
    detector_file: Path | None = None   # YAML overriding guardian.detectors.config defaults (DetectorConfig.from_dict)

    @model_validator(mode="after")
    def _conventional_env(self) -> "GuardianSettings":
        # The conventional names fill in what GUARDIAN_* left empty.
        if not self.kafka.bootstrap_servers:
            self.kafka.bootstrap_servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        if not self.kafka.metrics_url:
            # every broker's exporter (`guardian-dev env`), else the one named
            self.kafka.metrics_url = os.environ.get("KAFKA_METRICS_URLS") or os.environ.get("KAFKA_METRICS_URL", "")
        if not self.redis.url.get_secret_value():
            self.redis.url = SecretStr(os.environ.get("REDIS_URL", ""))
        return self


def redis_url_for(settings: GuardianSettings) -> str:
    """The ledger's Redis: ``GUARDIAN_REDIS__URL`` or ``REDIS_URL``, never silently the dev stack's.

    The dev stack's tools (``guardian-dev env``, the demo and the drill) hand its URL over as
    ``REDIS_URL``; a production process without one stops with a ``ConfigError``."""
    url = settings.redis.url.get_secret_value()
    if not url:
        raise ConfigError("no Redis configured for the ledger: set GUARDIAN_REDIS__URL or REDIS_URL "
                          "(for the local dev stack: eval \"$(guardian-dev env)\")")
    return url
