"""The wire codec: round trips, and every way a record can be wrong names its reason."""

from __future__ import annotations

import math

import orjson
import pytest

from guardian.errors import DecodeError
from guardian.ingest.codec import (MAX_RECORD_BYTES, MAX_SAMPLES_PER_BATCH, PACK_MAX_BYTES, PACK_VERSION,
                                   SCHEMA_VERSION, BatchDecodeError, SampleBatch, decode_batch, decode_record,
                                   encode_batch, group_samples, pack_records)
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


# --- packs: a tenant's batches in one record (version 2) ---------------------------------------------

A2 = Workload(principal="User:tenant-a", client_id="reader", broker="b2:9092")
B = Workload(principal="User:tenant-b", client_id="x")


def _of(workload: Workload, n: int = 2) -> SampleBatch:
    return SampleBatch(workload=workload, metrics=(Metric.REQUEST_RATE,) * n, ts=(1.0,) * n, values=(3.0,) * n)


def test_a_tenants_batches_share_a_record_keyed_by_the_tenant_and_come_back_in_order() -> None:
    batches = [_of(W), _of(B), _of(A2), _batch(4, labels={"request": "Produce"})]
    records = pack_records(batches)
    assert [(key, samples) for key, _, samples in records] == [(b"principal=User:tenant-a", 8),
                                                               (b"principal=User:tenant-b", 2)]
    back, rejected = decode_record(records[0][1])
    assert back == [batches[0], batches[2], batches[3]] and rejected == []
    assert orjson.loads(records[0][1])["v"] == PACK_VERSION
    # a record of one batch is that batch's version-1 record, byte for byte: every worker reads it
    assert records[1][1] == encode_batch(batches[1]) and decode_record(records[1][1]) == ([batches[1]], [])


def test_packs_keep_to_their_sample_and_byte_limits() -> None:
    batches = [_of(Workload(principal="User:tenant-a", client_id=f"c{i}"), 3) for i in range(10)]
    by_samples = pack_records(batches, max_samples=7)
    assert [s for _, _, s in by_samples] == [6, 6, 6, 6, 6]            # two batches of 3 a record
    assert [b for _, v, _ in by_samples for b in decode_record(v)[0]] == batches
    one = len(encode_batch(batches[0]))
    by_bytes = pack_records(batches, max_bytes=3 * one + 20)          # three bodies, commas and the head
    assert all(len(v) <= 3 * one + 20 for _, v, _ in by_bytes) and len(by_bytes) == 4
    assert [b for _, v, _ in by_bytes for b in decode_record(v)[0]] == batches
    big = _batch(5)
    assert pack_records([big, _of(W)], max_samples=5)[0][1] == encode_batch(big)   # a full batch goes alone
    # by default a pack stays under PACK_MAX_BYTES, room for its key under the producer's 1 MB
    wide = [SampleBatch(Workload(principal="User:tenant-a", client_id=f"{i:05d}" + "c" * 250), (Metric.REQUEST_RATE,),
                        (1.0,), (1.0,), labels={"request": "r" * 250}) for i in range(3000)]
    packs = pack_records(wide, max_samples=100_000)
    assert len(packs) > 1 and all(len(v) <= PACK_MAX_BYTES for _, v, _ in packs)
    assert sum(s for _, _, s in packs) == 3000


def test_a_bad_batch_of_a_pack_is_rejected_with_its_own_bytes_and_the_rest_is_used() -> None:
    good, other = encode_batch(_of(W)), encode_batch(_of(A2))
    wrong = orjson.dumps({**orjson.loads(good), "m": ["warp_drive_rate"] * 2})
    batches, rejected = decode_record(b'{"v":2,"b":[' + b",".join([good, wrong, b"7", other]) + b"]}")
    assert batches == [_of(W), _of(A2)]
    assert [(exc.reason, value) for exc, value in rejected] == [("metric", wrong), ("shape", b"7")]


@pytest.mark.parametrize("data, reason", [
    (b'{"v":2,"b":[]}', "shape"),
    (b'{"v":2,"b":{}}', "shape"),
    (b'{"v":2}', "shape"),
    (b'{"v":2,"b":[{"v":1}],"x":1}', "shape"),
    (b'{"v":3,"b":[]}', "version"),
    (b'{"v":"2","b":[]}', "version"),
    (b"[]", "shape"),
])
def test_a_pack_that_is_not_readable_as_a_whole_names_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BatchDecodeError) as exc:
        decode_record(data)
    assert exc.value.reason == reason


def test_a_pack_nested_in_a_pack_is_a_rejected_batch_and_decode_batch_reads_no_pack() -> None:
    inner = b'{"v":2,"b":[' + encode_batch(_of(W)) + b"]}"
    batches, rejected = decode_record(b'{"v":2,"b":[' + inner + b"]}")
    assert batches == [] and [exc.reason for exc, _ in rejected] == ["version"]
    with pytest.raises(BatchDecodeError) as exc:
        decode_batch(inner)
    assert exc.value.reason == "version"


def test_the_publisher_packs_unless_told_to_write_a_batch_a_record_for_older_workers() -> None:
    from guardian.ingest.publisher import SamplePublisher
    from guardian.settings import GuardianSettings

    batches = [_of(W), _of(A2), _of(B)]
    conf = {"bootstrap.servers": "127.0.0.1:9"}   # nothing is sent: records are built, not produced
    packed = SamplePublisher(conf, "m").records(batches)
    assert [(k, s) for k, _, s in packed] == [(b"principal=User:tenant-a", 4), (b"principal=User:tenant-b", 2)]
    assert GuardianSettings().ingest.pack_records is True
    old = GuardianSettings(ingest={"pack_records": False}).ingest.pack_records
    single = SamplePublisher(conf, "m", pack=old).records(batches)
    assert [v for _, v, _ in single] == [encode_batch(b) for b in batches]
    assert [k for k, _, _ in single] == [b"principal=User:tenant-a"] * 2 + [b"principal=User:tenant-b"]
