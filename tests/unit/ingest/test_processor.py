"""The processor core: good records reach the stage, every bad one becomes a dead letter with a reason."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry

from guardian.ingest.codec import encode_batch

from guardian.model.samples import SampleBatch
from guardian.ingest.processor import (DLQ_OFFSET, DLQ_REASON, LimitStage, MetricsProcessor, ProcessorMetrics,
                                       SampleStage)
from guardian.model.samples import Metric, Workload

W = Workload(principal="User:tenant-a", client_id="writer")
BATCH = SampleBatch(W, (Metric.PRODUCE_BYTE_RATE, Metric.REQUEST_RATE, Metric.PRODUCE_BYTE_RATE),
                    (1.0, 1.0, 2.0), (5_000.0, 3.0, 50_000.0), source="prometheus")


class Recorder:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def process(self, batch: SampleBatch):
        self.batches.append(batch)
        return []


class Exploding:
    def process(self, batch: SampleBatch):
        raise RuntimeError("model state corrupt")


def make(stage: SampleStage):
    registry = CollectorRegistry()
    return MetricsProcessor(stage, ProcessorMetrics(registry)), registry


def test_good_record_reaches_the_stage_and_is_counted() -> None:
    rec = Recorder()
    proc, reg = make(rec)
    out = proc.handle(encode_batch(BATCH), W.key.encode(), "guardian.metrics", 2, 41)
    assert not out.dead_letters and rec.batches == [BATCH] and out.batches == [BATCH]
    assert reg.get_sample_value("guardian_ingest_samples_total", {"source": "prometheus"}) == 3
    assert reg.get_sample_value("guardian_ingest_records_total") == 1


def test_limit_stage_detections_explain_themselves_and_are_replay_stable() -> None:
    proc, reg = make(LimitStage({"produce_byte_rate": 10_000}))
    out = proc.handle(encode_batch(BATCH), W.key.encode(), "m", 0, 0)
    assert len(out.detections) == 1
    d = out.detections[0]
    assert (d.metric, d.observed, d.baseline, d.ratio, d.workload) == (
        "produce_byte_rate", 50_000.0, 10_000.0, 5.0, W.as_dict())
    assert d.severity.value == "high"
    again = proc.handle(encode_batch(BATCH), W.key.encode(), "m", 0, 0)
    assert again.detections[0].id == d.id
    assert reg.get_sample_value("guardian_detector_detections_total") == 2


def test_bad_records_become_dead_letters_with_reason_and_origin() -> None:
    proc, reg = make(Recorder())
    good = encode_batch(BATCH)
    wrong_type = orjson.dumps({**orjson.loads(good), "x": ["1", "2", "3"]})
    cases = [(b"\xff\xfegarbage", W.key.encode(), "json"), (good[: len(good) // 2], W.key.encode(), "json"),
             (wrong_type, W.key.encode(), "type"), (None, None, "empty"),
             (good, b"principal=User:someone-else", "key"), (b"{" + b" " * 1_000_001 + b"}", None, "size")]
    for offset, (value, key, reason) in enumerate(cases):
        out = proc.handle(value, key, "guardian.metrics", 1, offset)
        assert len(out.dead_letters) == 1 and not out.batches, (reason, out)
        dl = out.dead_letters[0]
        assert dl.reason == reason, (reason, dl)
        assert dl.value == (value or b"") and dl.partition == 1 and dl.offset == offset
        headers = dict(dl.headers())
        assert headers[DLQ_REASON] == reason.encode() and headers[DLQ_OFFSET] == str(offset).encode()
    assert reg.get_sample_value("guardian_ingest_dead_letters_total", {"reason": "json"}) == 2
    assert reg.get_sample_value("guardian_ingest_samples_total", {"source": "prometheus"}) in (None, 0.0)


def test_a_failing_stage_dead_letters_the_record_and_the_next_one_goes_on() -> None:
    proc, reg = make(Exploding())
    out = proc.handle(encode_batch(BATCH), W.key.encode(), "m", 0, 7)
    [dl] = out.dead_letters
    assert dl.reason == "stage" and "model state corrupt" in dl.detail and dl.value == encode_batch(BATCH)
    proc.stage = Recorder()
    assert proc.handle(encode_batch(BATCH), W.key.encode(), "m", 0, 8).dead_letters == []


def test_dead_letter_larger_than_the_dlq_allows_is_cut_and_says_how_long_it_was() -> None:
    from guardian.ingest.processor import DLQ_MAX_VALUE_BYTES, DLQ_ORIGINAL_SIZE, DeadLetter

    big = b"x" * (DLQ_MAX_VALUE_BYTES + 5)
    dl = DeadLetter("size", "too big", big, None, "guardian.metrics", 0, 9)
    assert dl.payload() == big[:DLQ_MAX_VALUE_BYTES]
    assert dict(dl.headers())[DLQ_ORIGINAL_SIZE] == str(len(big)).encode()
    small = DeadLetter("json", "bad", b"{", None, "guardian.metrics", 0, 10)
    assert small.payload() == b"{" and DLQ_ORIGINAL_SIZE not in dict(small.headers())


def test_a_chunk_goes_to_the_stage_in_one_call_with_each_records_outcome() -> None:
    """``handle_many``: one ``process_many`` call per chunk (issue 16: the detectors' cost is per call);
    a bad record is still its own dead letter, and the counters are those of record-by-record handling."""
    from guardian.ingest.stage import DetectorStage
    from guardian.detectors.pipeline import DetectorPipeline

    calls: list[int] = []

    class Chunked(DetectorStage):
        def process_many(self, batches):
            calls.append(len(batches))
            return super().process_many(batches)

    good = (encode_batch(BATCH), W.partition_key.encode(), "guardian.metrics", 0, 7)
    bad = (b"{not json", W.partition_key.encode(), "guardian.metrics", 0, 8)
    proc, reg = make(Chunked(DetectorPipeline(clock=lambda: 0.0)))
    outs = proc.handle_many([good, bad, good])
    assert calls == [2]
    assert [[dl.reason for dl in o.dead_letters] or [len(b) for b in o.batches] for o in outs] == [[3], ["json"], [3]]
    assert outs[1].dead_letters[0].offset == 8
    assert reg.get_sample_value("guardian_ingest_records_total") == 3
    assert reg.get_sample_value("guardian_ingest_samples_total", {"source": "prometheus"}) == 6
    assert reg.get_sample_value("guardian_ingest_dead_letters_total", {"reason": "json"}) == 1


def test_a_failing_chunked_stage_dead_letters_the_chunk_and_a_stage_without_chunks_gets_records() -> None:
    class ExplodingChunks:
        def process(self, batch):
            raise AssertionError("not called")

        def process_many(self, batches):
            raise RuntimeError("model state corrupt")

    good = (encode_batch(BATCH), W.partition_key.encode(), "guardian.metrics", 0, 7)
    outs = make(ExplodingChunks())[0].handle_many([good, good])
    assert [[dl.reason for dl in o.dead_letters] for o in outs] == [["stage"], ["stage"]]
    assert "model state corrupt" in outs[0].dead_letters[0].detail
    rec = Recorder()
    assert [len(o.batches[0]) for o in make(rec)[0].handle_many([good, good])] == [3, 3] and len(rec.batches) == 2


def _pack(*bodies: bytes) -> bytes:
    return b'{"v":2,"b":[' + b",".join(bodies) + b"]}"


READER = SampleBatch(Workload(principal="User:tenant-a", client_id="reader"), (Metric.PRODUCE_BYTE_RATE,),
                     (3.0,), (70_000.0,), source="prometheus")


def test_a_pack_reaches_the_stage_batch_by_batch_and_its_bad_batches_are_their_own_dead_letters() -> None:
    """A tenant's pack (issue 16): its good batches are used; a malformed batch and another tenant's batch
    are dead letters of their own bytes, so nothing of the pack is lost and the rest goes on."""
    rec = Recorder()
    proc, reg = make(rec)
    stranger = encode_batch(SampleBatch(Workload(principal="User:tenant-b", client_id="x"), (Metric.REQUEST_RATE,),
                                        (1.0,), (1.0,)))
    wrong = orjson.dumps({**orjson.loads(encode_batch(READER)), "x": ["1"]})
    out = proc.handle(_pack(encode_batch(BATCH), wrong, stranger, encode_batch(READER)), W.partition_key.encode(),
                      "guardian.metrics", 3, 12)
    assert rec.batches == [BATCH, READER] and out.batches == [BATCH, READER]
    assert [(dl.reason, dl.value, dl.offset) for dl in out.dead_letters] == [("type", wrong, 12), ("key", stranger, 12)]
    assert reg.get_sample_value("guardian_ingest_records_total") == 1
    assert reg.get_sample_value("guardian_ingest_samples_total", {"source": "prometheus"}) == 4
    assert reg.get_sample_value("guardian_ingest_dead_letters_total", {"reason": "key"}) == 1


def test_a_chunk_of_packs_is_one_stage_call_and_a_failing_stage_dead_letters_each_batch_on_its_own() -> None:
    from guardian.detectors.pipeline import DetectorPipeline
    from guardian.ingest.codec import decode_batch
    from guardian.ingest.stage import DetectorStage

    calls: list[int] = []

    class Chunked(DetectorStage):
        def process_many(self, batches):
            calls.append(len(batches))
            return super().process_many(batches)

    pack = (_pack(encode_batch(BATCH), encode_batch(READER)), W.partition_key.encode(), "guardian.metrics", 0, 7)
    single = (encode_batch(BATCH), W.partition_key.encode(), "guardian.metrics", 0, 8)
    outs = make(Chunked(DetectorPipeline(clock=lambda: 0.0)))[0].handle_many([pack, single])
    assert calls == [3] and [o.batches for o in outs] == [[BATCH, READER], [BATCH]]

    class ExplodingChunks:
        def process(self, batch):
            raise AssertionError("not called")

        def process_many(self, batches):
            raise RuntimeError("model state corrupt")

    outs = make(ExplodingChunks())[0].handle_many([pack, single])
    assert [[dl.reason for dl in o.dead_letters] for o in outs] == [["stage", "stage"], ["stage"]]
    # each batch of the pack on its own (a version-1 record), the single record as it came
    assert [decode_batch(dl.value) for dl in outs[0].dead_letters] == [BATCH, READER]
    assert outs[1].dead_letters[0].value == single[0] and not any(o.batches for o in outs)
