"""GuardianMetrics: naming rules, bounded labels, injected registry and clock.

Pure: no Redis (the ledger collector is exercised against the real Redis in
tests/integration/observability), only its description is read here.
"""

from __future__ import annotations

import random
import re
import string
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from guardian.model.detection import Severity, Signature
from guardian.model.quarantine import Outcome
from guardian.errors import ConflictError, DecodeError, NotLeaderError, PermanentError, TemporaryError
from guardian.metrics import (ACTIONS, APPEAL_STATES, CHANNELS, DEAD_LETTER_REASONS, EFFECT_RESULTS, ERROR_CLASSES,
                              OTHER, OUTCOMES, SEVERITIES, SIGNATURES, SOURCES, GuardianMetrics, LedgerCollector,
                              error_class)

AREAS = ("build", "ingest", "detector", "engine", "actuator", "escalation", "api", "ledger")
# The last name token is the unit: a base unit, a counted thing, or a 0/1 state.
UNITS = ("seconds", "bytes", "ratio", "info", "total", "messages",
         "quarantines", "appeals", "records", "workloads",
         "up", "held", "paused")
NAME = re.compile(r"^guardian_(%s)_[a-z0-9_]+$" % "|".join(AREAS))


def families(metrics: GuardianMetrics):
    """Every family the registry exposes, plus the ledger collector's (described, not collected)."""
    return list(metrics.registry.collect()) + list(LedgerCollector._families())


@pytest.fixture
def metrics() -> GuardianMetrics:
    return GuardianMetrics(CollectorRegistry(), clock=lambda: 1_000_000.0, component="test")


def test_names_follow_guardian_area_name_unit(metrics: GuardianMetrics) -> None:
    fams = families(metrics)
    assert len(fams) >= 20
    for fam in fams:
        assert NAME.match(fam.name), fam.name
        base = fam.name + ("_total" if fam.type == "counter" else "")
        assert base.rsplit("_", 1)[1] in UNITS, f"{base}: last token is not a unit"
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds"), fam.name
        assert fam.documentation.strip(), f"{fam.name} has no help text"


def test_label_names_are_the_bounded_ones(metrics: GuardianMetrics) -> None:
    allowed = {"source", "reason", "signature", "severity", "tenant", "outcome", "action", "actuator", "error",
               "operation", "channel", "result", "route", "method", "status", "state", "version", "component",
               "topic", "partition"}
    metrics.observe_request("/v1/x", "GET", 200, 0.1)
    metrics.observe_sequestered("quota", 3.0)
    metrics.observe_actuator_error("quota", TemporaryError("x"))
    for fam in metrics.registry.collect():
        for sample in fam.samples:
            assert set(sample.labels) - {"le"} <= allowed, (fam.name, sample.labels)


def _garbage(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits + "-_:/. {}\n\"") for _ in range(rng.randint(0, 40)))


def test_label_values_stay_bounded_under_garbage() -> None:
    rng = random.Random(7)
    m = GuardianMetrics(CollectorRegistry(), max_tenants=20, max_routes=10)
    n = 3000
    for i in range(n):
        g = _garbage(rng)
        wl = {"principal": f"User:{g}", "client_id": f"c-{i}"}
        m.observe_samples(rng.randint(1, 9), source=g)
        m.observe_dead_letter(g)
        m.observe_detection(SimpleNamespace(signature=rng.choice([g, *Signature]),
                                            severity=rng.choice([g, *Severity]), workload=wl))
        m.observe_decision(SimpleNamespace(outcome=rng.choice([g, *Outcome]), workload=wl))
        m.observe_sequestered(g, rng.random() * 100)
        m.observe_actuator_error(g, rng.choice([ValueError("x"), TemporaryError("x"), ConflictError("x")]))
        with pytest.raises(KeyError):
            with m.time_actuator(rng.choice([g, "quota"]), rng.choice([g, "apply"])):
                raise KeyError(g)
        m.observe_notification(g, rng.random() < 0.5)
        m.observe_request(f"/v1/{g}/{i}", g or "GET", rng.randint(100, 599), 0.01)
        m.observe_appeal(g)
        m.observe_throttle_effect(rng.choice([g, *EFFECT_RESULTS]))

    values: dict[str, set[str]] = {}
    series = 0
    for fam in m.registry.collect():
        for sample in fam.samples:
            series += 1
            for k, v in sample.labels.items():
                values.setdefault(k, set()).add(v)
    bounds = {
        "source": set(SOURCES) | {OTHER}, "reason": set(DEAD_LETTER_REASONS) | {OTHER},
        "signature": set(SIGNATURES) | {OTHER}, "severity": set(SEVERITIES) | {OTHER},
        "outcome": set(OUTCOMES) | {OTHER}, "action": set(ACTIONS) | {OTHER}, "actuator": set(ACTIONS) | {OTHER},
        "error": set(ERROR_CLASSES), "channel": set(CHANNELS) | {OTHER}, "result": {"ok", "failed"} | set(EFFECT_RESULTS) | {OTHER},
        "state": set(APPEAL_STATES) | {OTHER}, "status": {"1xx", "2xx", "3xx", "4xx", "5xx"},
        "operation": {"observe", "apply", "verify", "revert", OTHER},
    }
    for label, domain in bounds.items():
        assert values[label] <= domain, (label, values[label] - domain)
    assert len(values["tenant"]) <= 20 + 2          # first 20 tenants, plus "none" and "other"
    assert OTHER in values["tenant"]
    assert len(values["route"]) <= 10 + 1
    # 3000 distinct garbage inputs per label produced a bounded number of series.
    assert series < 3000


def test_tenant_is_the_principal_name_and_first_seen_wins() -> None:
    m = GuardianMetrics(CollectorRegistry(), max_tenants=2)
    for tenant in ("tenant-a", "tenant-b", "tenant-c", "tenant-a"):
        m.observe_decision(SimpleNamespace(outcome=Outcome.QUARANTINED, workload={"principal": f"User:{tenant}"}))
    m.observe_decision(SimpleNamespace(outcome=Outcome.NO_POLICY, workload={}))
    got = {(s.labels["tenant"], s.labels["outcome"]): s.value for fam in m.registry.collect()
           if fam.name == "guardian_engine_decisions" for s in fam.samples if s.name.endswith("_total")}
    assert got == {("tenant-a", "quarantined"): 2.0, ("tenant-b", "quarantined"): 1.0,
                   ("other", "quarantined"): 1.0, ("none", "no_policy"): 1.0}


def test_metrics_live_on_the_injected_registry_only() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    GuardianMetrics(a)
    GuardianMetrics(b)          # a second instance on another registry does not clash
    assert a.get_sample_value("guardian_build_info", {"version": _version(a), "component": "engine"}) == 1.0
    assert not [f.name for f in REGISTRY.collect() if f.name.startswith("guardian_")]


def _version(registry: CollectorRegistry) -> str:
    return next(s.labels["version"] for f in registry.collect() if f.name == "guardian_build_info" for s in f.samples)


def test_error_class_is_the_nearest_guardian_error() -> None:
    class BatchDecodeError(DecodeError):   # like guardian.ingest.codec's, defined outside guardian.errors
        pass

    assert error_class(NotLeaderError("x")) == "NotLeaderError"
    assert error_class(BatchDecodeError("x")) == "DecodeError"
    assert error_class(PermanentError("x")) == "PermanentError"
    assert error_class(ValueError("x")) == "unexpected"
    assert error_class(TimeoutError) == "unexpected"


def test_ingest_lag_is_now_minus_newest_sample_at_scrape_time() -> None:
    now = [1000.0]
    m = GuardianMetrics(CollectorRegistry(), clock=lambda: now[0])
    assert m.registry.get_sample_value("guardian_ingest_lag_seconds") is None   # nothing processed yet
    m.observe_samples(10, "prometheus", newest_ts=990.0)
    m.observe_samples(10, "admin", newest_ts=950.0)      # an older batch does not move the newest back
    assert m.registry.get_sample_value("guardian_ingest_lag_seconds") == 10.0
    now[0] = 1100.0                                       # nothing new processed: lag grows
    assert m.registry.get_sample_value("guardian_ingest_lag_seconds") == 110.0
    assert m.registry.get_sample_value("guardian_ingest_samples_total", {"source": "admin"}) == 10.0


def test_lease_losses_count_held_to_not_held_changes() -> None:
    m = GuardianMetrics(CollectorRegistry())
    for held in (False, True, True, False, False, True, False):
        m.set_lease_held(held)
    assert m.registry.get_sample_value("guardian_engine_lease_losses_total") == 2.0
    assert m.registry.get_sample_value("guardian_engine_lease_held") == 0.0


def test_time_actuator_counts_errors_and_reraises(metrics: GuardianMetrics) -> None:
    with metrics.time_actuator("quota", "apply"):
        pass
    with pytest.raises(NotLeaderError):
        with metrics.time_actuator("quota", "apply"):
            raise NotLeaderError("lost it")
    r = metrics.registry
    assert r.get_sample_value("guardian_actuator_operation_duration_seconds_count",
                              {"actuator": "quota", "operation": "apply"}) == 2.0
    assert r.get_sample_value("guardian_actuator_errors_total",
                              {"actuator": "quota", "error": "NotLeaderError"}) == 1.0


def test_registration_does_no_ledger_io() -> None:
    class Unreachable:
        def __getattr__(self, name: str):
            raise AssertionError(f"ledger.{name} touched while registering")

    GuardianMetrics(CollectorRegistry(), ledger=Unreachable())  # type: ignore[arg-type]
