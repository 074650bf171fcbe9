"""Dashboards and alert rules only query metrics that exist, and the committed JSON is what the code renders.

Pure: renders the dashboards in memory and reads the rule file. Whether every
query returns data from a real Prometheus is tests/integration/observability.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from dashboards import render
from guardian.metrics import GuardianMetrics, LedgerCollector

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "helm" / "guardian" / "files" / "alerts" / "guardian-alerts.yaml"
METRIC = re.compile(r"\b((?:guardian|kafka)_[a-z0-9_]+)\b")
# The broker's per-(user, client-id) quota sensors (guardian/ingest/jmx_rules.yaml) the tenant view reads.
BROKER_METRICS = {"kafka_server_quota_byte_rate", "kafka_server_quota_throttle_time", "kafka_server_quota_request_time"}


def exposed_names() -> set[str]:
    fams = list(GuardianMetrics(CollectorRegistry()).registry.collect()) + list(LedgerCollector._families())
    names = set()
    for fam in fams:
        if fam.type == "counter":
            names.add(fam.name + "_total")
        elif fam.type == "histogram":
            names.update(fam.name + s for s in ("_bucket", "_count", "_sum"))
        else:
            names.add(fam.name)
    return names


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r]


@pytest.mark.parametrize("name", sorted(render.DASHBOARDS))
def test_dashboard_queries_use_only_existing_metrics(name: str) -> None:
    doc = render.render(render.DASHBOARDS[name])
    queries = render.prometheus_queries(doc)
    assert len(queries) >= 10
    known = exposed_names() | BROKER_METRICS
    for where, expr in queries:
        used = set(METRIC.findall(expr))
        assert used, f"{where}: no metric in {expr!r}"
        assert used <= known, f"{where}: unknown metric(s) {used - known}"


@pytest.mark.parametrize("name", sorted(render.DASHBOARDS))
def test_every_panel_queries_the_templated_prometheus(name: str) -> None:
    doc = render.render(render.DASHBOARDS[name])
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert panels
    for p in panels:
        assert p["targets"], p["title"]
        assert all(t["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for t in p["targets"]), p["title"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    kinds = {a["datasource"]["type"] for a in doc["annotations"]["list"]}
    assert kinds == {"prometheus", "yesoreyeram-infinity-datasource"}   # decisions: metrics and the API feed


def test_tenant_view_is_templated_by_tenant() -> None:
    doc = render.render(render.DASHBOARDS["guardian-tenant-view"])
    assert "tenant" in [v["name"] for v in doc["templating"]["list"]]
    for where, expr in render.prometheus_queries(doc):
        assert "$tenant" in expr, f"{where} ignores the tenant: {expr}"


def test_committed_json_is_what_the_code_renders() -> None:
    assert render.main(["--check"]) == 0, "run: python -m dashboards.render"


def test_alert_rules_use_only_existing_metrics() -> None:
    rules = alert_rules()
    assert len(rules) >= 8
    known = exposed_names()
    for rule in rules:
        used = set(METRIC.findall(rule["expr"]))
        assert used and used <= known, (rule["alert"], used - known)
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
