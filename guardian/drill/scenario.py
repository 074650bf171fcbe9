"""Drill scenario files: who runs which clients at what rates, and how the runaway runs away.

A scenario is YAML (examples: ``configs/scenarios/drill-*.yaml``), validated
here; unknown keys are rejected with the file and the key::

    name: drill-runaway-producer
    description: one producer steps to 40x its rate among steady and bursty peers
    repeats: 3                      # incidents in one run (each with a fresh runaway client-id)
    phases: {before_s: 30, during_s: 30, after_s: 15}
    guardian:                       # the guardian-on run only
      scrape_interval_s: 1          # metric resolution
      detectors: {tiers: {produce_byte_rate: {warm_n: 20}}}   # detectors.config overrides
      policy: {max_throttled_traffic_share: 1.0, evidence_s: 4}
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
group) and ``admin`` (creates topics; the partition storm).

Runaway patterns (``runaway.pattern``), applied from ``before_s`` into each
repeat for ``during_s``:

* ``step``: the rate multiplied by ``factor`` at once;
* ``ramp``: the rate grows linearly to ``factor`` over ``ramp_s``;
* ``retry_storm``: ``factor`` times the messages, each its own request
  (``linger.ms=0``), resending the same payloads like a client retrying in a
  tight loop;
* ``rewind``: a consumer seeks back to the beginning every ``every_s`` and
  re-reads the topic (prefilled with ``prefill_mb``) as fast as it can;
* ``rebalance_storm``: the group's members leave and re-join every ``every_s``;
* ``partition_storm``: topics of ``partitions`` partitions created at
  ``rate`` topics/s (deleted afterwards).

Pure: parsing and validation only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from guardian.errors import ConfigError

Pattern = Literal["step", "ramp", "retry_storm", "rewind", "rebalance_storm", "partition_storm"]
_PATTERN_KINDS: dict[str, tuple[str, ...]] = {
    "step": ("producer", "consumer"), "ramp": ("producer",), "retry_storm": ("producer",),
    "rewind": ("consumer",), "rebalance_storm": ("group",), "partition_storm": ("admin",),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Runaway(_Strict):
    pattern: Pattern
    factor: float = Field(default=20.0, gt=0)     # step, ramp, retry_storm
    ramp_s: float = Field(default=20.0, gt=0)     # ramp
    every_s: float = Field(default=5.0, gt=0)     # rewind, rebalance_storm
    prefill_mb: float = Field(default=50.0, ge=0)  # rewind
    partitions: int = Field(default=20, ge=1)     # partition_storm
    rate: float = Field(default=2.0, gt=0)        # partition_storm: topics/s


class Client(_Strict):
    kind: Literal["producer", "consumer", "perf-producer", "perf-consumer", "group", "admin"]
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
    topic: str | None = None                      # default <tenant>.drill-<client index>
    client_id: str | None = None                  # default derived from the kind and index
    runaway: Runaway | None = None

    @model_validator(mode="after")
    def _kind_fits(self) -> "Client":
        if self.runaway is not None and self.kind not in _PATTERN_KINDS[self.runaway.pattern]:
            raise ValueError(f"pattern {self.runaway.pattern} needs a client of kind "
                             f"{' or '.join(_PATTERN_KINDS[self.runaway.pattern])}, not {self.kind}")
        return self


class Tenant(_Strict):
    name: str
    role: Literal["benign", "runaway"] = "benign"
    clients: list[Client]

    @model_validator(mode="after")
    def _runaway_role(self) -> "Tenant":
        has = any(c.runaway for c in self.clients)
        if self.role == "runaway" and not has:
            raise ValueError(f"tenant {self.name} has role runaway but no client with a runaway pattern")
        if self.role == "benign" and has:
            raise ValueError(f"tenant {self.name} is benign but has a runaway client")
        return self


class Phases(_Strict):
    before_s: float = Field(default=30.0, gt=0)
    during_s: float = Field(default=30.0, gt=0)
    after_s: float = Field(default=15.0, ge=0)

    @property
    def window_s(self) -> float:
        return self.before_s + self.during_s + self.after_s


class PolicyOverrides(_Strict):
    """Applied to the default policy for the guardian-on run (so the drill says what it changed)."""

    max_throttled_traffic_share: float | None = Field(default=None, gt=0)
    max_concurrent_quarantines: int | None = Field(default=None, ge=1)
    evidence_s: float | None = Field(default=None, ge=0)   # the first rung's
    multiple_of_baseline: float | None = Field(default=None, gt=0)
    floor: float | None = Field(default=None, ge=0)


class GuardianOptions(_Strict):
    scrape_interval_s: float = Field(default=1.0, gt=0)
    admin_interval_s: float = Field(default=2.0, gt=0)
    detectors: dict[str, Any] = Field(default_factory=dict)
    policy: PolicyOverrides = Field(default_factory=PolicyOverrides)
    policy_file: str | None = None    # instead of the default policy


class Scenario(_Strict):
    name: str
    description: str = ""
    repeats: int = Field(default=3, ge=1, le=20)
    phases: Phases = Field(default_factory=Phases)
    guardian: GuardianOptions = Field(default_factory=GuardianOptions)
    tenants: list[Tenant]

    @model_validator(mode="after")
    def _one_runaway(self) -> "Scenario":
        if not any(t.role == "runaway" for t in self.tenants):
            raise ValueError("a drill needs at least one runaway tenant")
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError(f"tenant names repeat: {names}")
        return self

    @property
    def duration_s(self) -> float:
        return self.repeats * self.phases.window_s


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
