"""The wire codec: round trips, and every way a record can be wrong names its reason."""

from __future__ import annotations

import math

import orjson
import pytest

from guardian.errors import DecodeError
from guardian.ingest.codec import (MAX_RECORD_BYTES, MAX_SAMPLES_PER_BATCH, SCHEMA_VERSION, BatchDecodeError,
                                   SampleBatch, decode_batch, encode_batch, group_samples)
from guardian.model.samples import Metric, Sample, Workload

W = Workload(principal="User:tenant-a", client_id="writer", broker="b1:9092")


def _batch(n: int = 3, **kw) -> SampleBatch:
    return SampleBatch(workload=W, metrics=(Metric.PRODUCE_BYTE_RATE,) * n,
                       ts=tuple(1000.0 + i for i in range(n)), values=tuple(float(i * 10) for i in range(n)),
                       source="prometheus", cluster="c1", **kw)


def _doc(**override) -> bytes:
    doc = orjson.loads(encode_batch(_batch()))
    doc.update(override)
    return orjson.dumps(doc)


def test_round_trip_keeps_every_field() -> None:
    batch = _batch(5, labels={"request": "Produce"})
    back = decode_batch(encode_batch(batch))
    assert back == batch
    samples = list(back)
    assert len(samples) == 5
    assert samples[2] == Sample(ts=1002.0, workload=W, metric=Metric.PRODUCE_BYTE_RATE, value=20.0,
                                source="prometheus", cluster="c1", labels={"request": "Produce"})
    assert back.key == W.key == "principal=User:tenant-a|client_id=writer"


def test_integers_decode_as_numbers_and_version_is_written() -> None:
    data = _doc(x=[1, 2, 3])
    assert orjson.loads(data)["v"] == SCHEMA_VERSION
    assert decode_batch(data).values == (1, 2, 3)


@pytest.mark.parametrize("data, reason", [
    (b"\x00\x01garbage", "json"),
    (b'{"v": 1, "m": ["produce_byte_rate"], "t": [1', "json"),      # truncated
    (b"[1, 2]", "shape"),
    (b'{"v": 1, "w": {}, "m": ["request_rate"], "t": [1.0], "x": [NaN]}', "json"),
    (b'{"v": 1, "w": {}, "m": ["request_rate"], "t": [1.0], "x": [1e400]}', "json"),  # would be inf
    (b'"just a string"', "shape"),
])
def test_malformed_bytes(data: bytes, reason: str) -> None:
    with pytest.raises(BatchDecodeError) as exc:
        decode_batch(data)
    assert exc.value.reason == reason


@pytest.mark.parametrize("override, reason", [
    ({"v": 2}, "version"),
    ({"v": "1"}, "version"),
    ({"v": True}, "version"),
    ({"m": ["produce_byte_rate", "warp_drive_rate", "produce_byte_rate"]}, "metric"),
    ({"m": [1, 2, 3]}, "type"),
    ({"m": []}, "shape"),
    ({"x": [1.0, "2.0", 3.0]}, "type"),
    ({"x": [1.0, None, 3.0]}, "type"),
    ({"x": [1.0, True, 3.0]}, "type"),
    ({"x": [1.0, 2.0]}, "shape"),
    ({"t": "1000"}, "shape"),
    ({"w": {"principal": "User:a", "rack": "r1"}}, "workload"),
    ({"w": {"principal": 7}}, "type"),
    ({"w": ["User:a"]}, "shape"),
    ({"l": {"request": 5}}, "type"),
    ({"src": ""}, "type"),
    ({"extra": 1}, "shape"),
])
def test_invalid_fields_name_their_reason(override: dict, reason: str) -> None:
    with pytest.raises(BatchDecodeError) as exc:
        decode_batch(_doc(**override))
    assert exc.value.reason == reason
    assert isinstance(exc.value, DecodeError)


def test_oversized_record_is_rejected_before_parsing() -> None:
    data = b'{"v": 1, "pad": "' + b"x" * MAX_RECORD_BYTES + b'"}'
    with pytest.raises(BatchDecodeError) as exc:
        decode_batch(data)
    assert exc.value.reason == "size"


def test_too_many_samples_is_rejected_both_ways() -> None:
    n = MAX_SAMPLES_PER_BATCH + 1
    with pytest.raises(BatchDecodeError):
        encode_batch(_batch(n))
    data = orjson.dumps({"v": 1, "w": {}, "m": ["request_rate"] * n, "t": [1.0] * n, "x": [1.0] * n})
    with pytest.raises(BatchDecodeError) as exc:
        decode_batch(data)
    assert exc.value.reason == "size"


def test_encoder_refuses_non_finite_values() -> None:
    batch = SampleBatch(W, (Metric.THROTTLE_TIME,), (1.0,), (math.nan,))
    with pytest.raises(BatchDecodeError):
        encode_batch(batch)


def test_none_value_is_a_decode_error() -> None:
    with pytest.raises(BatchDecodeError) as exc:
        decode_batch(None)  # type: ignore[arg-type]
    assert exc.value.reason == "empty"


def test_group_samples_splits_by_workload_labels_and_size_and_drops_nan() -> None:
    other = Workload(principal="User:tenant-b", client_id="x")
    samples = [Sample(float(i), W, Metric.REQUEST_RATE, 1.0) for i in range(5)]
    samples += [Sample(1.0, other, Metric.REQUEST_RATE, 2.0),
                Sample(1.0, other, Metric.REQUEST_RATE, 3.0, labels={"request": "Fetch"}),
                Sample(2.0, other, Metric.THROTTLE_TIME, math.nan)]
    batches = group_samples(samples, max_batch=2)
    sizes = sorted((b.key, len(b), tuple(b.labels.items())) for b in batches)
    assert sizes == [
        (W.key, 1, ()), (W.key, 2, ()), (W.key, 2, ()),
        (other.key, 1, ()), (other.key, 1, (("request", "Fetch"),)),
    ]
    assert sum(len(b) for b in batches) == 7
