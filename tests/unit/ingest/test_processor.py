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
    assert out.dead_letter is None and rec.batches == [BATCH]
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
        dl = out.dead_letter
        assert dl is not None and dl.reason == reason, (reason, dl)
        assert dl.value == (value or b"") and dl.partition == 1 and dl.offset == offset
        headers = dict(dl.headers())
        assert headers[DLQ_REASON] == reason.encode() and headers[DLQ_OFFSET] == str(offset).encode()
    assert reg.get_sample_value("guardian_ingest_dead_letters_total", {"reason": "json"}) == 2
    assert reg.get_sample_value("guardian_ingest_samples_total", {"source": "prometheus"}) in (None, 0.0)


def test_a_failing_stage_dead_letters_the_record_and_the_next_one_goes_on() -> None:
    proc, reg = make(Exploding())
    out = proc.handle(encode_batch(BATCH), W.key.encode(), "m", 0, 7)
    assert out.dead_letter is not None and out.dead_letter.reason == "stage"
    assert "model state corrupt" in out.dead_letter.detail
    proc.stage = Recorder()
    assert proc.handle(encode_batch(BATCH), W.key.encode(), "m", 0, 8).dead_letter is None


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
    assert [o.dead_letter.reason if o.dead_letter else len(o.batch) for o in outs] == [3, "json", 3]
    assert outs[1].dead_letter.offset == 8
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
    assert [o.dead_letter.reason for o in outs] == ["stage", "stage"]
    assert "model state corrupt" in outs[0].dead_letter.detail
    rec = Recorder()
    assert [len(o.batch) for o in make(rec)[0].handle_many([good, good])] == [3, 3] and len(rec.batches) == 2
