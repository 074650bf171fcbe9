"""The tenant view: one tenant's quarantines, detections, decisions and Kafka traffic.

Templated by ``$tenant`` (the principal's name without ``User:``); the
broker panels read the JMX exporter's per-(user, client-id) quota sensors, so
a tenant sees its own traffic, its quota throttle time and what the guardian
did about it on one screen.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (ACTING_OUTCOMES, PROM, DecisionsApiAnnotation, PromAnnotation,
                               decisions_api_variable, increase_all, prom, prometheus_datasource_variable,
                               thresholds)

UID = "guardian-tenant-view"
T = 'tenant=~"$tenant"'
U = 'user=~"$tenant"'


def _series(title: str, unit: str = "none", description: str = "", span: int = 12) -> timeseries.Panel:
    return (timeseries.Panel().title(title).description(description).unit(unit).height(8).span(span)
            .fill_opacity(10).line_width(1))


def _stat(title: str, expr: str, unit: str = "none", description: str = "",
          steps: tuple[tuple[float | None, str], ...] = ((None, "green"),)) -> stat.Panel:
    return (stat.Panel().title(title).description(description).unit(unit).height(4).span(6)
            .with_target(prom(expr, instant=True))
            .graph_mode(cm.BigValueGraphMode.NONE).color_mode(cm.BigValueColorMode.BACKGROUND)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            .thresholds(thresholds(*steps)))


def tenant_variable() -> db.QueryVariable:
    return (db.QueryVariable("tenant").label("Tenant").datasource(PROM)
            .query({"query": "label_values(guardian_detector_detections_total, tenant)", "refId": "tenants"})
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .regex("^(?!none$|other$).*")
            .multi(False).include_all(False))


def build() -> db.Dashboard:
    return (
        db.Dashboard("Kafka guardian: tenant view")
        .uid(UID)
        .tags(["guardian", "kafka", "tenant"])
        .description("What the guardian saw and did about one tenant, beside the tenant's own Kafka traffic.")
        .refresh("30s")
        .time("now-6h", "now")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .with_variable(prometheus_datasource_variable())
        .with_variable(decisions_api_variable())
        .with_variable(tenant_variable())
        # The feed shows what the datasource's token may see: give tenants a datasource with their own token.
        .annotation(DecisionsApiAnnotation("Decisions (API)", color="red"))
        .annotation(PromAnnotation(
            "Decisions (metrics)",
            "sum by (outcome) ("
            + increase_all(f'guardian_engine_decisions_total{{{T}, outcome=~"{ACTING_OUTCOMES}"}}', "$__interval")
            + ") > 0",
            title="{{outcome}}", tags="outcome", color="orange"))

        .with_row(db.Row("Quarantines"))
        .with_panel(_stat("Open quarantines", f"sum(max by (state) (guardian_ledger_tenant_quarantines{{{T}}}))",
                          steps=((None, "green"), (1, "orange"))))
        .with_panel(_stat("Under appeal", f'max(guardian_ledger_tenant_quarantines{{{T}, state="appealed"}})',
                          steps=((None, "green"), (1, "blue"))))
        .with_panel(_stat("Detections in range",
                          "sum(" + increase_all(f"guardian_detector_detections_total{{{T}}}", "$__range") + ")",
                          steps=((None, "green"), (1, "orange"))))
        .with_panel(_stat("Quarantines decided in range",
                          "sum(" + increase_all(f'guardian_engine_decisions_total{{{T}, outcome=~"quarantined|escalated"}}',
                                                "$__range") + ")",
                          steps=((None, "green"), (1, "red"))))
        .with_panel(_series("Quarantines by state", span=12)
                    .with_target(prom(f"max by (state) (guardian_ledger_tenant_quarantines{{{T}}})", "{{state}}")))
        .with_panel(_series("Detections by signature", "ops", span=12)
                    .with_target(prom(f"sum by (signature, severity) "
                                      f"(rate(guardian_detector_detections_total{{{T}}}[$__rate_interval]))",
                                      "{{signature}} ({{severity}})")))
        .with_panel(
            table.Panel().title("Decisions in range by outcome").height(8).span(24)
            .with_target(prom("sum by (outcome) " + increase_all(f"guardian_engine_decisions_total{{{T}}}", "$__range"),
                              instant=True, table=True)))

        .with_row(db.Row("Kafka traffic (broker quota sensors)"))
        .with_panel(_series("Produce byte rate by client-id", "Bps", span=12)
                    .with_target(prom(f'sum by (client_id) (kafka_server_quota_byte_rate{{{U}, request="Produce"}})',
                                      "{{client_id}}")))
        .with_panel(_series("Fetch byte rate by client-id", "Bps", span=12)
                    .with_target(prom(f'sum by (client_id) (kafka_server_quota_byte_rate{{{U}, request="Fetch"}})',
                                      "{{client_id}}")))
        .with_panel(_series("Quota throttle time by client-id", "ms", span=12,
                            description="Average time the broker delayed this tenant's responses to hold a quota "
                                        "(the guardian's throttle shows up here).")
                    .with_target(prom(f"max by (client_id, request) (kafka_server_quota_throttle_time{{{U}}})",
                                      "{{client_id}} {{request}}")))
        .with_panel(_series("Request time share by client-id", "percent", span=12)
                    .with_target(prom(f"sum by (client_id) (kafka_server_quota_request_time{{{U}}})",
                                      "{{client_id}}")))
    )
