"""The SRE review board: what the guardian holds now, what it decided, how fast, and whether it is healthy.

Ledger gauges (``guardian_ledger_*``) are exported by every process that
reads the ledger (engine and API), so panels take ``max`` across them, never
``sum``. Decisions appear on every time series as annotations: from the API's
decisions feed when the Infinity datasource is configured, and from
``guardian_engine_decisions_total`` otherwise.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (ACTING_OUTCOMES, DecisionsApiAnnotation, PromAnnotation, decisions_api_variable,
                               increase_all, prom, prometheus_datasource_variable, thresholds)

UID = "guardian-sre-review"


def _stat(title: str, expr: str, unit: str = "none", description: str = "",
          steps: tuple[tuple[float | None, str], ...] = ((None, "green"),)) -> stat.Panel:
    return (stat.Panel().title(title).description(description).unit(unit).height(4).span(4)
            .with_target(prom(expr, instant=True))
            .graph_mode(cm.BigValueGraphMode.NONE).color_mode(cm.BigValueColorMode.BACKGROUND)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            .thresholds(thresholds(*steps)))


def _series(title: str, unit: str = "none", description: str = "", span: int = 12) -> timeseries.Panel:
    return (timeseries.Panel().title(title).description(description).unit(unit).height(8).span(span)
            .fill_opacity(10).line_width(1))


def build() -> db.Dashboard:
    return (
        db.Dashboard("Kafka guardian: SRE review board")
        .uid(UID)
        .tags(["guardian", "kafka", "sre"])
        .description("Active quarantines, the decision timeline, top offenders, time to sequester, the appeal "
                     "backlog and the guardian's own health.")
        .refresh("30s")
        .time("now-6h", "now")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .with_variable(prometheus_datasource_variable())
        .with_variable(decisions_api_variable())
        .annotation(DecisionsApiAnnotation("Decisions (API)", color="red"))
        .annotation(PromAnnotation(
            "Decisions (metrics)",
            "sum by (outcome, tenant) ("
            + increase_all(f'guardian_engine_decisions_total{{outcome=~"{ACTING_OUTCOMES}"}}', "$__interval")
            + ") > 0",
            title="{{outcome}}", tags="outcome,tenant", color="orange", text="tenant {{tenant}}"))

        .with_row(db.Row("Now"))
        .with_panel(_stat("Active quarantines", "sum(max by (action) (guardian_ledger_active_quarantines))",
                          description="Enforcing quarantines (active or appealed, not dry-run), counted once "
                                      "per action kind they hold.",
                          steps=((None, "green"), (1, "orange"))))
        .with_panel(_stat("Awaiting approval", 'max(guardian_ledger_quarantines{state="awaiting_approval"})',
                          description="Quarantines whose rung needs a human before it acts.",
                          steps=((None, "green"), (1, "orange"))))
        .with_panel(_stat("Watching", 'max(guardian_ledger_quarantines{state="watching"})',
                          description="Runaways recorded but not acted on: no harm was seen when they were "
                                      "detected. Approve one to act; each becomes a quarantine by itself if "
                                      "it starts to hurt.",
                          steps=((None, "green"), (1, "blue"))))
        .with_panel(_stat("Appeal backlog", 'max(guardian_ledger_appeals{state="pending"})',
                          description="Appeals waiting for an SRE decision.",
                          steps=((None, "green"), (1, "orange"), (10, "red"))))
        .with_panel(_stat("Oldest pending appeal", "max(guardian_ledger_oldest_pending_appeal_age_seconds)", "s",
                          steps=((None, "green"), (3600, "orange"), (4 * 3600, "red"))))
        .with_panel(_stat("Engine holds the lease", "max(guardian_engine_lease_held)",
                          description="1 when some engine replica holds the action lease; 0 means nothing acts.",
                          steps=((None, "red"), (1, "green"))))
        .with_panel(_stat("Paused", "max(guardian_ledger_paused)",
                          description="1 while the global pause switch is on: detections are recorded, not acted on.",
                          steps=((None, "green"), (1, "red"))))

        .with_row(db.Row("Quarantines and decisions"))
        .with_panel(_series("Active quarantines by action", span=8)
                    .with_target(prom("max by (action) (guardian_ledger_active_quarantines)", "{{action}}")))
        .with_panel(
            bargauge.Panel().title("Open quarantines vs cap").height(8).span(4)
            .description("Open quarantines that count against the cap (not dry-run), against the configured cap.")
            .with_target(prom('sum(max by (state) (guardian_ledger_quarantines{state=~"active|appealed|awaiting_approval"}))',
                              "open", instant=True))
            .with_target(prom("max(guardian_engine_max_open_quarantines)", "cap", ref="B", instant=True))
            .orientation(cm.VizOrientation.HORIZONTAL))
        .with_panel(_series("Decisions by outcome", "ops", span=12,
                            description="What the engine decided about each detection.")
                    .with_target(prom("sum by (outcome) (rate(guardian_engine_decisions_total[$__rate_interval]))",
                                      "{{outcome}}")))
        .with_panel(_series("Open quarantines by state", span=12)
                    .with_target(prom("max by (state) (guardian_ledger_quarantines)", "{{state}}")))

        .with_row(db.Row("Top offenders"))
        .with_panel(
            bargauge.Panel().title("Top tenants by detections").height(8).span(8)
            .description("Tenants with the most detections in the dashboard's time range.")
            .with_target(prom("topk(10, sum by (tenant) "
                              + increase_all("guardian_detector_detections_total", "$__range") + ")",
                              "{{tenant}}", instant=True))
            .orientation(cm.VizOrientation.HORIZONTAL))
        .with_panel(
            table.Panel().title("Tenants holding quarantines now").height(8).span(8)
            .with_target(prom("topk(10, sum by (tenant) (max by (tenant, state) (guardian_ledger_tenant_quarantines)))",
                              instant=True, table=True)))
        .with_panel(
            table.Panel().title("Detections by signature and severity").height(8).span(8)
            .with_target(prom("sum by (signature, severity) "
                              + increase_all("guardian_detector_detections_total", "$__range"),
                              instant=True, table=True)))

        .with_row(db.Row("Time to sequester"))
        .with_panel(_series("Time to sequester (p50, p95)", "s", span=12,
                            description="From the first anomalous sample to the action verified on the cluster.")
                    .with_target(prom("histogram_quantile(0.5, sum by (le) "
                                      "(rate(guardian_engine_time_to_sequester_seconds_bucket[$__rate_interval])))",
                                      "p50"))
                    .with_target(prom("histogram_quantile(0.95, sum by (le) "
                                      "(rate(guardian_engine_time_to_sequester_seconds_bucket[$__rate_interval])))",
                                      "p95", ref="B")))
        .with_panel(
            stat.Panel().title("Time to sequester in range, p95 by action").height(8).span(12).unit("s")
            .with_target(prom("histogram_quantile(0.95, sum by (le, action) "
                              + increase_all("guardian_engine_time_to_sequester_seconds_bucket", "$__range") + ")",
                              "{{action}}", instant=True))
            .thresholds(thresholds((None, "green"), (30, "orange"), (120, "red"))))

        .with_row(db.Row("Appeals"))
        .with_panel(_series("Appeals by state", span=12)
                    .with_target(prom("max by (state) (guardian_ledger_appeals)", "{{state}}")))
        .with_panel(_series("Appeals filed and decided", "ops", span=12)
                    .with_target(prom("sum by (state) (rate(guardian_api_appeals_total[$__rate_interval]))",
                                      "{{state}}")))

        .with_row(db.Row("Guardian health"))
        .with_panel(_series("Samples decoded by source", "ops", span=8)
                    .with_target(prom("sum by (source) (rate(guardian_ingest_samples_total[$__rate_interval]))",
                                      "{{source}}")))
        .with_panel(_series("Ingest lag", "s", span=8,
                            description="Now minus the newest sample each worker processed.")
                    .with_target(prom("max by (instance) (guardian_ingest_lag_seconds)", "{{instance}}")))
        .with_panel(_series("Dead letters by reason", "ops", span=8)
                    .with_target(prom("sum by (reason) (rate(guardian_ingest_dead_letters_total[$__rate_interval]))",
                                      "{{reason}}")))
        .with_panel(_series("Actuator errors", "ops", span=8)
                    .with_target(prom("sum by (actuator, error) (rate(guardian_actuator_errors_total[$__rate_interval]))",
                                      "{{actuator}} {{error}}")))
        .with_panel(_series("Actuator operation p95", "s", span=8)
                    .with_target(prom("histogram_quantile(0.95, sum by (le, actuator, operation) "
                                      "(rate(guardian_actuator_operation_duration_seconds_bucket[$__rate_interval])))",
                                      "{{actuator}} {{operation}}")))
        .with_panel(_series("Escalation notifications", "ops", span=8)
                    .with_target(prom("sum by (channel, result) "
                                      "(rate(guardian_escalation_notifications_total[$__rate_interval]))",
                                      "{{channel}} {{result}}")))
        .with_panel(_series("Ledger reachable and audit outbox", span=24)
                    .with_target(prom("min(guardian_ledger_up)", "ledger up"))
                    .with_target(prom("max(guardian_ledger_outbox_records)", "outbox records", ref="B")))
    )
