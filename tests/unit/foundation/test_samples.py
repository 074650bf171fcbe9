from __future__ import annotations

import math

from guardian.clients.kafka_admin import QuotaEntity
from guardian.model.samples import METRICS_BY_NAME, Metric, Sample, Workload


def test_workload_key_uses_narrowest_identity_and_ignores_broker() -> None:
    w = Workload(principal="User:tenant-a", client_id="orders", broker="1")
    assert w.key == "principal=User:tenant-a|client_id=orders"
    assert w.tenant == "tenant-a"
    assert Workload().key == "cluster"


def test_every_metric_has_a_unit_and_round_trips_by_name() -> None:
    for metric in Metric:
        assert metric.unit
        assert METRICS_BY_NAME[metric.value] is metric


def test_sample_finiteness() -> None:
    w = Workload(principal="User:a")
    assert Sample(1.0, w, Metric.REQUEST_RATE, 3.0).is_finite()
    assert not Sample(1.0, w, Metric.REQUEST_RATE, math.nan).is_finite()


def test_quota_entity_components() -> None:
    assert QuotaEntity.of(user="a").components() == [("user", "a")]
    assert QuotaEntity.of(user="a", client_id="c").components() == [("user", "a"), ("client-id", "c")]
    assert QuotaEntity.of(user=None, client_id=None).components() == [("user", None), ("client-id", None)]
    assert QuotaEntity.of(client_id="c").components() == [("client-id", "c")]
    assert str(QuotaEntity.of(user=None, client_id="c")) == "user=<default>,client-id=c"

