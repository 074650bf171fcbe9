"""Topic specs follow TopicSettings."""

from __future__ import annotations

from guardian.settings import TopicSettings
from guardian.clients.topics import topic_specs


def test_specs_follow_settings() -> None:
    t = TopicSettings(metrics="m", partitions=12, retention_ms=3_600_000, replication_factor=3)
    specs = {s.name: s for s in topic_specs(t)}
    assert set(specs) == {"m", t.metrics_dlq, t.detections, t.decisions, t.telemetry, t.client_stats}
    assert specs["m"].partitions == 12 and specs["m"].replication_factor == 3
    assert specs["m"].config["retention.ms"] == "3600000"
    # the audit trail keeps one order and lives at least a week; the DLQ is kept long enough to look at
    assert specs[t.decisions].partitions == 1
    assert int(specs[t.decisions].config["retention.ms"]) >= 7 * 24 * 3600 * 1000
    assert int(specs[t.metrics_dlq].config["retention.ms"]) >= 7 * 24 * 3600 * 1000
