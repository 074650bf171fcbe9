"""librdkafka statistics into samples: rates between payloads, restarts, principal, bad payloads."""

from __future__ import annotations

import orjson
import pytest

from guardian.errors import DecodeError
from guardian.ingest.client_stats import ClientStatsDecoder, headers_dict
from guardian.model.samples import Metric


def stats(age_s: float, txmsg_bytes: int, tx: int, retries: int = 0, errs: int = 0, produce_reqs: int = 0,
          kind: str = "producer", time_s: int = 1_795_665_923) -> bytes:
    broker = {"name": "b:9092/1", "nodeid": 1, "tx": tx, "txerrs": errs, "rxerrs": 0, "req_timeouts": 0,
              "txretries": retries, "connects": 1, "req": {"Produce": produce_reqs, "Fetch": 0},
              "int_latency": {"avg": 4000, "cnt": 10}, "throttle": {"avg": 0, "cnt": 0}}
    bootstrap = {"name": "b:9092/bootstrap", "nodeid": -1, "tx": 2, "txerrs": 0, "txretries": 0, "connects": 1,
                 "req": {"Metadata": 2}, "int_latency": {"avg": 0, "cnt": 0}}
    return orjson.dumps({"name": "app#producer-1", "client_id": "orders-writer", "type": kind,
                         "time": time_s, "age": int(age_s * 1e6), "txmsg_bytes": txmsg_bytes,
                         "rxmsg_bytes": 0, "brokers": {"b1": broker, "b0": bootstrap}})


def get(samples, metric):
    return [s.value for s in samples if s.metric is metric]


def test_rates_between_successive_payloads_with_principal() -> None:
    d = ClientStatsDecoder(cluster="c1")
    first = d.decode(stats(1.0, 1000, 10), principal="User:tenant-a")
    assert get(first, Metric.QUEUE_TIME) == [4.0]    # us -> ms, weighted by count
    assert not get(first, Metric.PRODUCE_BYTE_RATE)  # a rate needs two payloads
    out = d.decode(stats(3.0, 201_000, 50, retries=4, errs=2, produce_reqs=20), principal="User:tenant-a")
    assert get(out, Metric.PRODUCE_BYTE_RATE) == [pytest.approx(100_000.0)]
    assert get(out, Metric.REQUEST_RATE) == [pytest.approx(20.0)]     # (50+2) - (10+2) over 2 s
    assert get(out, Metric.RETRY_RATE) == [pytest.approx(2.0)]
    assert get(out, Metric.ERROR_RATE) == [pytest.approx(1.0)]
    assert get(out, Metric.PRODUCE_REQUEST_RATE) == [pytest.approx(10.0)]
    s = out[0]
    assert s.workload.key == "principal=User:tenant-a|client_id=orders-writer"
    assert s.source == "librdkafka" and s.cluster == "c1" and s.labels == {"client_type": "producer"}
    assert not get(out, Metric.THROTTLE_TIME)  # no throttle observations in the window


def test_a_restarted_client_counts_from_zero() -> None:
    d = ClientStatsDecoder()
    d.decode(stats(100.0, 10_000_000, 1000))
    out = d.decode(stats(2.0, 4000, 10))   # age went down: a new instance, 4000 bytes in 2 s
    assert get(out, Metric.PRODUCE_BYTE_RATE) == [pytest.approx(2000.0)]


def test_instances_are_kept_apart() -> None:
    d = ClientStatsDecoder()
    d.decode(stats(1.0, 0, 0), instance="pod-1")
    d.decode(stats(1.0, 50_000, 0), instance="pod-2")
    out = d.decode(stats(2.0, 1000, 0), instance="pod-1")
    assert get(out, Metric.PRODUCE_BYTE_RATE) == [pytest.approx(1000.0)]


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"client_id": "x"}', b'{"time": 1, "age": 1}'])
def test_bad_payloads_raise_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        ClientStatsDecoder().decode(payload)


def test_headers_dict_decodes_bytes() -> None:
    assert headers_dict([("principal", b"User:a"), ("x", None)]) == {"principal": "User:a"}
    assert headers_dict(None) == {}
