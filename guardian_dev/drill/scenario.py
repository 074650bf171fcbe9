"""Drill scenario files: who runs which clients at what rates, and how the runaway runs away.

A scenario is YAML (examples: ``configs/scenarios/drill-*.yaml``), validated
here; unknown keys are rejected with the file and the key::

    name: drill-runaway-producer
    description: one producer steps to 40x its rate among steady and bursty peers
    repeats: 3                      # incidents in one run (each with a fresh runaway client-id)
    phases: {warmup_s: 15, before_s: 30, during_s: 30, after_s: 15}
    broker: {io_threads: 1, network_threads: 1}   # the drill's own broker, with this capacity
    guardian:                       # the guardian-on run only; omit a key for the shipped default
      detectors: {tiers: {produce_byte_rate: {warm_n: 20}}}   # guardian.detectors.config overrides
      policy: {max_throttled_traffic_share: 1.0}              # default policy overrides
    tenants:
      - name: tenant-b
        role: benign
        clients:
          - {kind: producer, count: 2, rate: 200, size: 1000}
          - {kind: producer, rate: 100, size: 1000, pattern: bursty, burst_factor: 3, burst_s: 2, burst_every_s: 10}
          - {kind: perf-producer, rate: 300, size: 500}        # Kafka's ProducerPerformance
          - {kind: perf-consumer}                              # Kafka's ConsumerPerformance
      - name: tenant-a
        role: runaway
        clients:
          - {kind: producer, rate: 50, size: 10000, runaway: {pattern: step, factor: 40}}

Client kinds: ``producer`` and ``consumer`` (confluent-kafka, every message's
latency recorded), ``perf-producer`` / ``perf-consumer`` (Kafka's own
ProducerPerformance / ConsumerPerformance from the kafka-tools jar; their
5 s interval reports are recorded), ``group`` (``members`` consumers in one
group), ``admin`` (creates topics; the partition storm) and ``provision`` (a
benign tenant's deploy step ``rate`` times a second: create a topic and
produce its first record; its latency is the control plane's harm).

Tenant roles: ``benign`` (steady neighbours, whose latency is the measure),
``runaway`` (a client with ``runaway:``, which must be throttled) and ``surge``
(a client with ``surge:``, a benign change a user would fear: the guardian may
watch it but must never throttle it). A scenario has runaways or surges, not
both; ``Scenario.expect`` says which (``throttle`` or ``watch``).

Patterns (``runaway.pattern`` / ``surge.pattern``), applied from ``before_s``
into each repeat for ``during_s``:

* ``step``: the rate multiplied by ``factor`` at once;
* ``ramp``: the rate grows linearly to ``factor`` over ``ramp_s``;
* ``retry_storm``: ``factor`` times the messages, each its own request
  (``linger.ms=0``), resending the same payloads like a client retrying in a
  tight loop;
* ``rewind``: a consumer seeks back to the beginning every ``every_s`` and
  re-reads the topic (prefilled with ``prefill_mb``) as fast as it can;
* ``rebalance_storm``: the group's members leave and re-join every ``every_s``;
* ``partition_storm``: topics of ``partitions`` partitions created at
  ``rate`` topics/s (deleted afterwards);
* ``rolling_restart`` (surge only): the ``count`` producers go down one by one,
  ``every_s`` apart, for ``down_s`` each, and come back with the same
  client-id sending their backlog at ``factor`` x the rate;
* ``deploy`` (surge only): ``topics`` topics of ``partitions`` partitions created
  in one request every ``every_s`` (a Streams app's internal topics; deleted
  afterwards), or with ``spread_s`` one topic at a time over that many seconds
  (a Terraform apply).

``broker:`` states the capacity of the drill's own local broker
(``guardian_dev.kafka.BrokerCapacity``: I/O and network threads, request
queue, fsync interval, the broker's compression codec, a memory limit and a
disk read rate); without it the drill
uses the usual broker (the environment's, else ``guardian-dev up``'s).

Pure: parsing and validation only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from guardian.errors import ConfigError

Pattern = Literal["step", "ramp", "retry_storm", "rewind", "rebalance_storm", "partition_storm", "rolling_restart",
                  "deploy"]
_PATTERN_KINDS: dict[str, tuple[str, ...]] = {
    "step": ("producer", "consumer"), "ramp": ("producer",), "retry_storm": ("producer",),
    "rewind": ("consumer",), "rebalance_storm": ("group",), "partition_storm": ("admin",),
    "rolling_restart": ("producer",), "deploy": ("admin",),
}
# what only a benign surge does (a restart, a deploy's topics), and all a surge may do: also a backfill
# (step) and a launch (ramp)
SURGE_ONLY = ("rolling_restart", "deploy")
SURGE_PATTERNS = ("step", "ramp", *SURGE_ONLY)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Runaway(_Strict):
    """How a client's traffic changes at the incident's onset (a runaway's, or a benign surge's)."""

    pattern: Pattern
    factor: float = Field(default=20.0, gt=0)     # step, ramp, retry_storm; rolling_restart: catch-up rate
    ramp_s: float = Field(default=20.0, gt=0)     # ramp
    every_s: float = Field(default=5.0, gt=0)     # rewind, rebalance_storm; rolling_restart, deploy: between them
    down_s: float = Field(default=3.0, ge=0)      # rolling_restart: how long each client is gone
    prefill_mb: float = Field(default=50.0, ge=0)  # rewind
    partitions: int = Field(default=20, ge=1)     # partition_storm, deploy: of each topic
    topics: int = Field(default=10, ge=1, le=1000)  # deploy: topics created at once
    # deploy: one request per topic, spread evenly over this many seconds, as a Terraform apply creates
    # them one by one (so two or three Admin-API polls see one deploy); 0: all in one request
    spread_s: float = Field(default=0.0, ge=0)
    rate: float = Field(default=2.0, gt=0)        # partition_storm: topics/s

    @model_validator(mode="after")
    def _spread_fits(self) -> "Runaway":
        if self.spread_s and self.spread_s >= self.every_s:
            raise ValueError(f"spread_s ({self.spread_s:g}) must be less than every_s ({self.every_s:g}): "
                             "one deploy ends before the next begins")
        return self


class Client(_Strict):
    kind: Literal["producer", "consumer", "perf-producer", "perf-consumer", "group", "admin", "provision"]
    count: int = Field(default=1, ge=1, le=50)
    rate: float = Field(default=100.0, ge=0)      # messages/s (producers); consumers read what comes
    size: int = Field(default=1000, ge=1, le=1_000_000)   # bytes per message
    partitions: int = Field(default=3, ge=1)      # of the client's topic
    start_s: float = Field(default=0.0, ge=0)     # after the run starts
    pattern: Literal["steady", "bursty"] = "steady"
    burst_factor: float = Field(default=3.0, gt=0)
    burst_s: float = Field(default=2.0, gt=0)
    burst_every_s: float = Field(default=10.0, gt=0)
    members: int = Field(default=3, ge=1, le=20)  # group
    # the ``count`` instances share one client-id, as an application's replicas do (one workload,
    # ``count`` connections); otherwise each instance has its own
    shared_client_id: bool = False
    linger_ms: int | None = Field(default=None, ge=0)             # producer linger.ms (default 5; retry storm 0)
    batch_bytes: int | None = Field(default=None, ge=1)           # producer batch.size (librdkafka's default)
    # producer payloads: "repeated" sends one random payload over and over, which a batch compresses to
    # almost nothing; "random" makes each message new random bytes, which do not compress, so a broker
    # that recompresses batches (``broker.compression_type``) spends real I/O-thread time on every byte
    payload: Literal["repeated", "random"] = "repeated"
    topic: str | None = None                      # default <tenant>.drill-<client index>
    client_id: str | None = None                  # default derived from the kind and index
    runaway: Runaway | None = None
    surge: Runaway | None = None                  # a benign change the guardian must not throttle

    @model_validator(mode="after")
    def _kind_fits(self) -> "Client":
        if self.runaway is not None and self.surge is not None:
            raise ValueError("a client has a runaway or a surge, not both")
        change = self.change
        if change is not None and self.kind not in _PATTERN_KINDS[change.pattern]:
            raise ValueError(f"pattern {change.pattern} needs a client of kind "
                             f"{' or '.join(_PATTERN_KINDS[change.pattern])}, not {self.kind}")
        if self.runaway is not None and self.runaway.pattern in SURGE_ONLY:
            raise ValueError(f"{self.runaway.pattern} is a surge pattern (a restart, a deploy: benign), not a runaway")
        if self.surge is not None and self.surge.pattern not in SURGE_PATTERNS:
            raise ValueError(f"a surge is one of {', '.join(SURGE_PATTERNS)}, not {self.surge.pattern}")
        return self

    @property
    def change(self) -> Runaway | None:
        """What this client does at each incident's onset (runaway or surge), or None."""
        return self.runaway or self.surge


class Tenant(_Strict):
    name: str
    # benign: steady neighbours; runaway: must be throttled; surge: a benign change (backfill, launch,
    # rolling restart) the guardian may watch but must never throttle
    role: Literal["benign", "runaway", "surge"] = "benign"
    clients: list[Client]

    @model_validator(mode="after")
    def _role_fits(self) -> "Tenant":
        runaway, surge = any(c.runaway for c in self.clients), any(c.surge for c in self.clients)
        if self.role == "runaway" and not runaway:
            raise ValueError(f"tenant {self.name} has role runaway but no client with a runaway pattern")
        if self.role == "surge" and not surge:
            raise ValueError(f"tenant {self.name} has role surge but no client with a surge")
        if self.role != "runaway" and runaway:
            raise ValueError(f"tenant {self.name} is {self.role} but has a runaway client")
        if self.role != "surge" and surge:
            raise ValueError(f"tenant {self.name} is {self.role} but has a surge client")
        return self


class Phases(_Strict):
    # the benign clients (and the perf tools' JVMs) start this long before the first repeat, so
    # their start-up stays out of the first incident's baseline
    warmup_s: float = Field(default=0.0, ge=0)
    before_s: float = Field(default=30.0, gt=0)
    during_s: float = Field(default=30.0, gt=0)
    after_s: float = Field(default=15.0, ge=0)
    # how long each repeat's fresh runaway (or surge) client has run at its base rate when its incident
    # starts (default: before_s). A client younger than the detectors' warm_n samples is judged as a new
    # one (against its peers, at cold_ratio); an established application that runs away is older
    client_age_s: float | None = Field(default=None, gt=0)

    @property
    def window_s(self) -> float:
        return self.before_s + self.during_s + self.after_s

    @property
    def age_s(self) -> float:
        return self.before_s if self.client_age_s is None else self.client_age_s

    @model_validator(mode="after")
    def _age_fits(self) -> "Phases":
        if self.age_s > self.warmup_s + self.before_s:
            raise ValueError(f"client_age_s {self.age_s:g} is longer than warmup_s + before_s "
                             f"({self.warmup_s + self.before_s:g}): the first repeat's client cannot start before the run")
        return self


class PolicyOverrides(_Strict):
    """Applied to the default policy for the guardian-on run (so the drill says what it changed)."""

    max_throttled_traffic_share: float | None = Field(default=None, gt=0)
    max_concurrent_quarantines: int | None = Field(default=None, ge=1)
    evidence_s: float | None = Field(default=None, ge=0)   # the first rung's
    multiple_of_baseline: float | None = Field(default=None, gt=0)
    floor: float | None = Field(default=None, ge=0)


class BrokerOptions(_Strict):
    """A stated capacity for the drill's own local broker (``guardian_dev.kafka.BrokerCapacity``)."""

    io_threads: int = Field(default=1, ge=1, le=64)             # num.io.threads
    network_threads: int = Field(default=1, ge=1, le=64)        # num.network.threads
    queued_max_requests: int = Field(default=500, ge=1)         # queued.max.requests
    flush_interval_messages: int = Field(default=0, ge=0)       # log.flush.interval.messages (0: the OS's)
    # compression.type: "gzip" makes the broker recompress every batch the producers send uncompressed,
    # on its I/O thread (Kafka's default "producer" keeps the producer's codec and never does)
    compression_type: Literal["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"] = "producer"
    compression_gzip_level: int = Field(default=-1, ge=-1, le=9)  # compression.gzip.level (-1: default)
    # a memory limit per broker, page cache included (the heap is fixed at 512 MB, so what the JVM leaves of
    # the limit is the page cache), and a read rate for the disk under its data: a broker that reads a
    # rewound topic from a slow disk (Linux cgroup v1, root; 0: none)
    memory_mb: int = Field(default=0, ge=0)
    disk_read_mb_s: float = Field(default=0.0, ge=0)

    @field_validator("memory_mb")
    @classmethod
    def _room_beside_the_heap(cls, v: int) -> int:
        if v and v < 900:
            raise ValueError("memory_mb below 900 leaves the broker's JVM (512 MB heap and ~300 MB besides) no room")
        return v

    def dev_settings(self) -> dict[str, Any]:
        """The ``DevSettings`` keys (``kafka_*``) that give the dev stack's broker this capacity."""
        return {"kafka_io_threads": self.io_threads, "kafka_network_threads": self.network_threads,
                "kafka_queued_max_requests": self.queued_max_requests,
                "kafka_flush_interval_messages": self.flush_interval_messages,
                "kafka_compression_type": self.compression_type,
                "kafka_compression_gzip_level": self.compression_gzip_level,
                "kafka_memory_mb": self.memory_mb, "kafka_disk_read_mb_s": self.disk_read_mb_s}


class GuardianOptions(_Strict):
    # None: the guardian's own default (1 s and 2 s); set one only with a comment saying why
    scrape_interval_s: float | None = Field(default=None, gt=0)
    admin_interval_s: float | None = Field(default=None, gt=0)
    detectors: dict[str, Any] = Field(default_factory=dict)
    policy: PolicyOverrides = Field(default_factory=PolicyOverrides)
    policy_file: str | None = None    # instead of the default policy


class Scenario(_Strict):
    name: str
    description: str = ""
    repeats: int = Field(default=3, ge=1, le=20)
    phases: Phases = Field(default_factory=Phases)
    guardian: GuardianOptions = Field(default_factory=GuardianOptions)
    # None: the usual broker (environment, else `guardian-dev up`'s); set: the drill's own local broker
    broker: BrokerOptions | None = None
    tenants: list[Tenant]

    @model_validator(mode="after")
    def _one_kind_of_incident(self) -> "Scenario":
        roles = {t.role for t in self.tenants}
        if not roles & {"runaway", "surge"}:
            raise ValueError("a drill needs a runaway tenant (to be throttled) or a surge tenant (to be left alone)")
        if {"runaway", "surge"} <= roles:
            raise ValueError("a drill has runaway tenants or surge tenants, not both: each is its own scenario")
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError(f"tenant names repeat: {names}")
        return self

    @property
    def duration_s(self) -> float:
        return self.phases.warmup_s + self.repeats * self.phases.window_s

    @property
    def expect(self) -> str:
        """``throttle`` (a runaway drill) or ``watch`` (a surge drill: a watch at most, never a throttle)."""
        return "watch" if any(t.role == "surge" for t in self.tenants) else "throttle"


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_scenario(data, str(path))


def parse_scenario(data: Any, where: str = "<scenario>") -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {loc}: {first['msg']}") from exc
