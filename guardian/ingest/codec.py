"""The wire format of ``guardian.metrics``: batches of samples, one workload each, packed by tenant.

A batch is a compact, versioned, columnar JSON object (orjson); a record holding one batch is that
object alone (version 1)::

    {"v": 1,                       # schema version
     "src": "prometheus",          # source name
     "cl": "default",              # cluster
     "w": {"principal": "User:a", "client_id": "x"},   # Workload.as_dict()
     "l": {"request": "Produce"},  # labels shared by every sample (optional)
     "m": ["produce_byte_rate", ...],   # metric names from the catalog
     "t": [1795665923.1, ...],      # unix seconds
     "x": [726186.37, ...]}         # values

Columns keep a record small (the workload is written once) and let a decoder
validate and hand the values on as arrays without building one object per
sample.

A record holding several batches of one tenant is a pack (version 2)::

    {"v": 2, "b": [<batch>, <batch>, ...]}     # each <batch> a version-1 object as above

The record key is the tenant (``Workload.partition_key``), so one stream-processor partition owns a
tenant; every batch of a pack must carry that key. Packing is what makes the Kafka path fast: the
stream processor's cost is per record (about 0.2 ms), and on a large cluster every client on every
broker is its own batch of a few samples. The collectors pack up to ``IngestSettings.max_batch_samples``
samples a record (``pack_records``).

Decoding is strict: any deviation raises ``DecodeError`` whose ``reason`` is
a short stable token (``"json"``, ``"version"``, ``"metric"`` ...), because
each bad record goes to the dead-letter topic with that reason. Pure code.
"""

from __future__ import annotations

import math
from typing import Iterable

import orjson

from guardian.errors import DecodeError
from guardian.model.samples import METRICS_BY_NAME, Metric, Sample, SampleBatch, Workload

SCHEMA_VERSION = 1
PACK_VERSION = 2
MAX_RECORD_BYTES = 1_000_000      # larger records are rejected, never parsed
PACK_MAX_BYTES = 900_000          # a pack's value: with its key, under the producer's and topic's 1 MB
MAX_SAMPLES_PER_BATCH = 20_000
MAX_LABEL_LEN = 256
_WORKLOAD_FIELDS = frozenset(("principal", "client_id", "group", "topic", "broker", "pod"))
_TOP_KEYS = frozenset(("v", "src", "cl", "w", "l", "m", "t", "x"))
_PACK_KEYS = frozenset(("v", "b"))
_PACK_HEAD, _PACK_TAIL = b'{"v":2,"b":[', b"]}"
_NUMBER = (int, float)


class BatchDecodeError(DecodeError):
    """A record is not a valid sample batch; ``reason`` names the first rule it broke."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def group_samples(samples: Iterable[Sample], max_batch: int = 1000) -> list[SampleBatch]:
    """Group samples into batches of one (workload, source, cluster, labels), at most ``max_batch`` each.

    Non-finite samples are dropped here, at the source: a missing value is not a sample.
    """
    groups: dict[tuple, list[Sample]] = {}
    for s in samples:
        if not s.is_finite():
            continue
        k = (s.workload, s.source, s.cluster, tuple(sorted(s.labels.items())))
        groups.setdefault(k, []).append(s)
    out: list[SampleBatch] = []
    for group in groups.values():
        for i in range(0, len(group), max_batch):
            out.append(SampleBatch.of(group[i:i + max_batch]))
    return out


def encode_batch(batch: SampleBatch) -> bytes:
    """The record value of ``batch``. Raises ``DecodeError`` if it could not be decoded back."""
    if len(batch) > MAX_SAMPLES_PER_BATCH:
        raise BatchDecodeError("size", f"{len(batch)} samples > {MAX_SAMPLES_PER_BATCH}")
    if not all(map(math.isfinite, batch.values)) or not all(map(math.isfinite, batch.ts)):
        raise BatchDecodeError("value", "a batch holds a non-finite number")
    doc: dict = {"v": SCHEMA_VERSION, "src": batch.source, "cl": batch.cluster,
                 "w": batch.workload.as_dict(), "m": [m.value for m in batch.metrics],
                 "t": list(batch.ts), "x": list(batch.values)}
    if batch.labels:
        doc["l"] = batch.labels
    try:
        data = orjson.dumps(doc)
    except TypeError as exc:
        raise BatchDecodeError("type", str(exc)) from exc
    if len(data) > MAX_RECORD_BYTES:
        raise BatchDecodeError("size", f"{len(data)} bytes > {MAX_RECORD_BYTES}")
    return data


def _text(value: object, what: str) -> str:
    if type(value) is not str or not value or len(value) > MAX_LABEL_LEN:
        raise BatchDecodeError("type", f"{what} must be a non-empty string of at most {MAX_LABEL_LEN} chars")
    return value


def _numbers(column: object, n: int, what: str) -> tuple[float, ...]:
    if type(column) is not list or len(column) != n:
        raise BatchDecodeError("shape", f"{what} must be a list of {n} numbers")
    for x in column:
        # bool is an int subclass; `type(...) in` rejects it, and strings, None and lists.
        # No finiteness check needed: orjson refuses NaN, Infinity and overflowing numbers.
        if type(x) not in _NUMBER:
            raise BatchDecodeError("type", f"{what} holds a {type(x).__name__}, not a number")
    return tuple(column)


def pack_records(batches: Iterable[SampleBatch], max_samples: int = 1000,
                 max_bytes: int = PACK_MAX_BYTES) -> list[tuple[bytes, bytes, int]]:
    """The records that carry ``batches``: ``(key, value, samples)`` each, a tenant's batches packed
    together up to ``max_samples`` samples and ``max_bytes`` bytes a record, in their order.

    A record of one batch is that batch's version-1 object, byte for byte; of several, a version-2 pack.
    Raises ``BatchDecodeError`` as ``encode_batch`` does."""
    by_key: dict[str, list[SampleBatch]] = {}
    for batch in batches:
        by_key.setdefault(batch.workload.partition_key, []).append(batch)
    room = max_bytes - len(_PACK_HEAD) - len(_PACK_TAIL)
    out: list[tuple[bytes, bytes, int]] = []
    for key, group in by_key.items():
        k = key.encode()
        bodies: list[bytes] = []
        size = samples = 0
        for batch in group:
            body = encode_batch(batch)
            if bodies and (samples + len(batch) > max_samples or size + len(body) + 1 > room):
                out.append((k, _pack(bodies), samples))
                bodies, size, samples = [], 0, 0
            bodies.append(body)
            size += len(body) + 1
            samples += len(batch)
        out.append((k, _pack(bodies), samples))
    return out


def _pack(bodies: list[bytes]) -> bytes:
    return bodies[0] if len(bodies) == 1 else _PACK_HEAD + b",".join(bodies) + _PACK_TAIL


def decode_record(data: bytes) -> tuple[list[SampleBatch], list[tuple[BatchDecodeError, bytes]]]:
    """Validate and decode one record value, a batch or a pack: ``(batches, rejected)``.

    ``rejected`` holds each batch of a pack that is not valid, with its reason and its own bytes (a
    version-1 record of it alone), so the rest of the pack is used and nothing is lost. A record that
    is not readable as a whole (not JSON, an unknown version, a malformed pack) raises
    ``BatchDecodeError``."""
    doc = _load(data)
    version = doc.get("v")
    if type(version) is int and version == SCHEMA_VERSION:
        return [_from_doc(doc)], []
    if type(version) is not int or version != PACK_VERSION:
        raise BatchDecodeError("version", f"schema version {version!r} is neither {SCHEMA_VERSION} (a batch) "
                                          f"nor {PACK_VERSION} (a pack)")
    _known_keys(doc, _PACK_KEYS, " in a pack")
    items = _non_empty_list(doc.get("b"), "a pack's b must be a non-empty list of batches")
    batches: list[SampleBatch] = []
    rejected: list[tuple[BatchDecodeError, bytes]] = []
    for item in items:
        try:
            if type(item) is not dict:
                raise BatchDecodeError("shape", f"a pack holds a {type(item).__name__}, not a batch")
            batches.append(_from_doc(item))
        except BatchDecodeError as exc:
            rejected.append((exc, orjson.dumps(item)))
    return batches, rejected


def decode_batch(data: bytes) -> SampleBatch:
    """Validate and decode one record value holding one batch (version 1). Raises ``BatchDecodeError``
    with a reason; a pack is read with ``decode_record``."""
    return _from_doc(_load(data))


def _load(data: bytes) -> dict:
    if data is None:
        raise BatchDecodeError("empty", "record has no value")
    if len(data) > MAX_RECORD_BYTES:
        raise BatchDecodeError("size", f"{len(data)} bytes > {MAX_RECORD_BYTES}")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BatchDecodeError("json", str(exc)) from exc
    if type(doc) is not dict:
        raise BatchDecodeError("shape", f"top level is a {type(doc).__name__}, not an object")
    return doc


def _known_keys(doc: dict, allowed: frozenset[str], where: str = "") -> None:
    unknown = doc.keys() - allowed
    if unknown:
        raise BatchDecodeError("shape", f"unknown keys {sorted(unknown)}{where}")


def _non_empty_list(value: object, message: str) -> list:
    if type(value) is not list or not value:
        raise BatchDecodeError("shape", message)
    return value


def _from_doc(doc: dict) -> SampleBatch:
    version = doc.get("v")
    if version != SCHEMA_VERSION or type(version) is not int:
        raise BatchDecodeError("version", f"schema version {version!r} is not {SCHEMA_VERSION}")
    _known_keys(doc, _TOP_KEYS)
    names = _non_empty_list(doc.get("m"), "m must be a non-empty list of metric names")
    n = len(names)
    if n > MAX_SAMPLES_PER_BATCH:
        raise BatchDecodeError("size", f"{n} samples > {MAX_SAMPLES_PER_BATCH}")
    by_name = METRICS_BY_NAME
    # Few distinct names per batch: validate each once, then map through a small dict.
    if not all(type(x) is str for x in names):
        raise BatchDecodeError("type", "metric names must be strings")
    lookup: dict[str, Metric] = {}
    for name in set(names):
        metric = by_name.get(name)
        if metric is None:
            raise BatchDecodeError("metric", f"{name!r} is not in the metric catalog")
        lookup[name] = metric
    metrics = tuple(map(lookup.__getitem__, names))
    ts = _numbers(doc.get("t"), n, "t")
    values = _numbers(doc.get("x"), n, "x")

    w = doc.get("w")
    if type(w) is not dict:
        raise BatchDecodeError("shape", "w must be an object of workload identity")
    bad = w.keys() - _WORKLOAD_FIELDS
    if bad:
        raise BatchDecodeError("workload", f"unknown workload fields {sorted(bad)}")
    workload = Workload(**{k: _text(v, f"workload {k}") for k, v in w.items()})

    labels = doc.get("l", {})
    if type(labels) is not dict:
        raise BatchDecodeError("shape", "l must be an object of string labels")
    for k, v in labels.items():
        _text(k, "label name")
        _text(v, f"label {k}")
    return SampleBatch(workload=workload, metrics=metrics, ts=ts, values=values,
                       source=_text(doc.get("src", "unknown"), "source"),
                       cluster=_text(doc.get("cl", "default"), "cluster"), labels=labels)
