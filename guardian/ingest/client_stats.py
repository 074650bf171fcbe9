"""Source 3: librdkafka statistics JSON (``statistics.interval.ms``) that clients publish to a topic.

A client forwards each ``stats_cb`` payload unchanged to
``TopicSettings.client_stats`` (``StatsForwarder`` does it for confluent-kafka
clients), optionally with a ``principal`` header (``User:<name>``) because the
statistics do not carry the SASL user. ``ClientStatsDecoder`` is pure: one
payload in, samples for (principal, client_id) out.

The statistics are cumulative per client instance; rates come from
successive payloads of the same instance (its ``name`` plus the forwarder's
``instance`` header). A restarted client (``age`` went down) starts again
from zero. Mapping:

=========================  ===============================================
tx/rx message bytes        produce / fetch byte rate (``txmsg_bytes``, ``rxmsg_bytes``)
requests                   request rate (sum of brokers' ``tx``) and produce/fetch request rates (``req``)
errors                     error rate (brokers' ``txerrs + rxerrs + req_timeouts``)
retries                    retry rate (brokers' ``txretries``)
connects                   connection creation rate (brokers' ``connects``)
queue time                 mean ``int_latency`` (us -> ms), weighted by count
throttle                   mean broker ``throttle`` (ms), weighted by count
=========================  ===============================================
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import orjson

from guardian.errors import DecodeError
from guardian.ingest.rates import CounterRates
from guardian.model.samples import Metric, Sample, Workload

SOURCE = "librdkafka"
MAX_STATS_BYTES = 4_000_000
PRINCIPAL_HEADER = "principal"
INSTANCE_HEADER = "instance"


def _window_mean(brokers: list[Mapping[str, Any]], key: str) -> float | None:
    """Count-weighted mean of a per-broker window statistic (``avg`` and ``cnt``)."""
    total = weight = 0.0
    for b in brokers:
        win = b.get(key)
        if isinstance(win, Mapping):
            cnt = win.get("cnt") or 0
            avg = win.get("avg")
            if cnt and isinstance(avg, (int, float)):
                total += avg * cnt
                weight += cnt
    return total / weight if weight else None


class ClientStatsDecoder:
    """Decodes successive statistics payloads into samples; keeps per-instance counter state."""

    def __init__(self, cluster: str = "default", stale_after_s: float = 600.0) -> None:
        self.cluster = cluster
        self.rates = CounterRates(stale_after_s=stale_after_s)
        self._age: dict[tuple, float] = {}

    def decode(self, payload: bytes | str, principal: str | None = None,
               instance: str | None = None) -> list[Sample]:
        if payload is None or len(payload) > MAX_STATS_BYTES:
            raise DecodeError("client statistics missing or too large")
        try:
            d = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"client statistics are not JSON: {exc}") from exc
        if not isinstance(d, dict) or not isinstance(d.get("client_id"), str):
            raise DecodeError("client statistics lack client_id")
        ts, age = d.get("time"), d.get("age")
        if not isinstance(ts, (int, float)) or not isinstance(age, (int, float)):
            raise DecodeError("client statistics lack time/age")
        ts = float(ts)
        # librdkafka's `time` is whole seconds; `age` (us since creation) refines it for rates.
        client_id = d["client_id"]
        kind = d.get("type", "")
        w = Workload(principal=principal or None, client_id=client_id or None)
        inst = (principal, client_id, d.get("name", ""), instance)
        prev_age = self._age.get(inst)
        restarted = prev_age is not None and age < prev_age
        self._age[inst] = age
        clock = age / 1e6  # monotonic seconds of this instance: exact intervals between payloads

        brokers = [b for b in (d.get("brokers") or {}).values() if isinstance(b, Mapping)]

        def total(key: str) -> float:
            return float(sum(b.get(key, 0) or 0 for b in brokers))

        def req(name: str) -> float:
            return float(sum((b.get("req") or {}).get(name, 0) or 0 for b in brokers))

        counters: dict[Metric, float] = {
            Metric.REQUEST_RATE: total("tx"),
            Metric.ERROR_RATE: total("txerrs") + total("rxerrs") + total("req_timeouts"),
            Metric.RETRY_RATE: total("txretries"),
            Metric.CONNECTION_CREATION_RATE: total("connects"),
        }
        if kind == "producer":
            counters[Metric.PRODUCE_BYTE_RATE] = float(d.get("txmsg_bytes", 0) or 0)
            counters[Metric.PRODUCE_REQUEST_RATE] = req("Produce")
        elif kind == "consumer":
            counters[Metric.FETCH_BYTE_RATE] = float(d.get("rxmsg_bytes", 0) or 0)
            counters[Metric.FETCH_REQUEST_RATE] = req("Fetch")
        out: list[Sample] = []
        labels = {"client_type": kind} if kind else {}
        for metric, value in counters.items():
            if restarted:  # the new instance's counters started at zero at age zero
                self.rates.forget((inst, metric))
                self.rates.observe((inst, metric), 0.0, 0.0)
            rate = self.rates.observe((inst, metric), clock, value)
            if rate is not None and math.isfinite(rate):
                out.append(Sample(ts, w, metric, rate, SOURCE, self.cluster, labels))
        queue_us = _window_mean(brokers, "int_latency")
        if queue_us is not None:
            out.append(Sample(ts, w, Metric.QUEUE_TIME, queue_us / 1000.0, SOURCE, self.cluster, labels))
        throttle = _window_mean(brokers, "throttle")
        if throttle is not None:
            out.append(Sample(ts, w, Metric.THROTTLE_TIME, float(throttle), SOURCE, self.cluster, labels))
        return out


def headers_dict(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers or []:
        if v is not None:
            out[k] = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return out


class StatsForwarder:
    """A ``stats_cb`` for a confluent-kafka client that forwards its statistics to the stats topic.

    ``conf["stats_cb"] = StatsForwarder(producer, topic, principal="User:tenant-a")`` with
    ``statistics.interval.ms`` set. The forwarding producer may use other credentials
    than the client (a sidecar's, say); the principal header says whose traffic it is.
    """

    def __init__(self, producer: Any, topic: str, principal: str | None = None,
                 instance: str | None = None, on_error: Callable[[Exception], None] | None = None) -> None:
        import os
        import socket

        self.producer = producer
        self.topic = topic
        self.headers = [(INSTANCE_HEADER, (instance or f"{socket.gethostname()}:{os.getpid()}").encode())]
        if principal:
            self.headers.append((PRINCIPAL_HEADER, principal.encode()))
        self.on_error = on_error

    def __call__(self, stats_json: str) -> None:
        try:
            client_id = orjson.loads(stats_json).get("client_id", "")
            self.producer.produce(self.topic, value=stats_json.encode(), key=str(client_id).encode(),
                                  headers=self.headers)
            self.producer.poll(0)
        except Exception as exc:  # noqa: BLE001 - a stats callback must never break the client
            if self.on_error:
                self.on_error(exc)
