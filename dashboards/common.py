"""Shared pieces: datasource references, template variables, query and annotation builders.

Every Prometheus query goes through ``prom()`` so panels stay one line each.
The SDK's ``AnnotationQuery`` models only the built-in Grafana annotation
target, so ``PromAnnotation`` and ``DecisionsApiAnnotation`` below extend it
with the Prometheus and Infinity (JSON API) fields Grafana reads.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

PROM = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Grafana's Infinity plugin pointed at the guardian API (base URL and bearer token set on the datasource).
INFINITY_TYPE = "yesoreyeram-infinity-datasource"
DECISIONS_API = dm.DataSourceRef(type_val=INFINITY_TYPE, uid="${decisions_api}")

# Decision outcomes worth a mark on the timeline (the engine acted, or will once a human approves).
ACTING_OUTCOMES = "quarantined|escalated|awaiting_approval|escalation_awaiting_approval|shadow|capped"


def increase_all(selector: str, window: str) -> str:
    """``increase`` that also counts series born inside ``window``.

    A labelled counter appears with its first increment already in it (a
    tenant's first quarantine shows up as a new series at 1), and ``increase``
    cannot see that step. A series absent ``window`` ago started from 0, so its
    whole value is the increase: take it from ``S unless S offset window``, and
    ``increase`` for the series that existed before.
    """
    return f"(({selector} unless {selector} offset {window}) or increase({selector}[{window}]))"


def prom(expr: str, legend: str = "", ref: str = "A", instant: bool = False,
         table: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(PROM)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    else:
        q = q.range()
    if table:
        q = q.format(pm.PromQueryFormat.TABLE)
    return q


def prometheus_datasource_variable() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def decisions_api_variable() -> db.DatasourceVariable:
    return (db.DatasourceVariable("decisions_api").label("Guardian API (Infinity)").type(INFINITY_TYPE)
            .description("An Infinity datasource whose URL is the guardian API and whose bearer token "
                         "has the sre role; feeds the decision timeline annotations."))


class _AnnotationWithExtras(dm.AnnotationQuery):
    """An ``AnnotationQuery`` that also serialises datasource-specific fields."""

    def __init__(self, extras: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.extras = extras

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload.update(self.extras)
        return payload


class PromAnnotation(cogbuilder.Builder[dm.AnnotationQuery]):
    """A Prometheus annotation: one mark per step where ``expr`` returns a series."""

    def __init__(self, name: str, expr: str, title: str, tags: str, color: str, step: str = "30s",
                 text: str = "") -> None:
        self._internal = _AnnotationWithExtras(
            {"expr": expr, "step": step, "titleFormat": title, "tagKeys": tags, "textFormat": text,
             "useValueForTime": False},
            name=name, datasource=PROM, enable=True, icon_color=color)

    def build(self) -> dm.AnnotationQuery:
        return self._internal


class DecisionsApiAnnotation(cogbuilder.Builder[dm.AnnotationQuery]):
    """The API's decisions feed (``GET /v1/decisions?from&to``) through the Infinity datasource.

    ``from``/``to`` are Grafana's range in epoch milliseconds; the feed returns a
    JSON list of ``{time, timeEnd, title, text, tags}`` (Grafana's annotation fields).
    """

    def __init__(self, name: str, color: str, extra_params: dict[str, str] | None = None) -> None:
        params = [{"key": "from", "value": "${__from}"}, {"key": "to", "value": "${__to}"}]
        params += [{"key": k, "value": v} for k, v in (extra_params or {}).items()]
        target = {
            "refId": "Decisions", "type": "json", "source": "url", "parser": "backend", "format": "table",
            "url": "/v1/decisions", "url_options": {"method": "GET", "params": params},
            "root_selector": "",
            "columns": [
                {"selector": "time", "text": "time", "type": "timestamp_epoch"},
                {"selector": "timeEnd", "text": "timeEnd", "type": "timestamp_epoch"},
                {"selector": "title", "text": "title", "type": "string"},
                {"selector": "text", "text": "text", "type": "string"},
                {"selector": "tags", "text": "tags", "type": "string"},
            ],
        }
        self._internal = _AnnotationWithExtras({"target": target}, name=name, datasource=DECISIONS_API,
                                               enable=True, icon_color=color)

    def build(self) -> dm.AnnotationQuery:
        return self._internal


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in steps]))
