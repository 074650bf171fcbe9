"""Is the cluster hurting, and who is using it? Pure: samples in, a ``Pressure`` snapshot out.

``ClusterPressure`` is fed every sample batch the detector stage sees. It keeps,
per broker:

* the latest broker-pressure signals (``guardian.model.samples.PRESSURE_METRICS``:
  request-handler and network-thread idle, Produce/Fetch p99 queue and total
  time, purgatory size, under-replicated partitions), and for each latency
  signal a learned normal (the mean of its first 30 s, then a slow EWMA that
  a pressure episode barely moves), so "p99 is 3x its normal" means something
  on any cluster;
* each client's latest load on that broker: its share of broker thread time
  (Kafka's ``request-time`` quota sensor, percent of one thread) and its bytes
  in and out, which is how harm is attributed to a workload.

``snapshot()`` is what the engine's harm test (``guardian.policy.harm``) reads.
With several stream-processor workers a process sees only part of this: the
broker-level samples all share one key (``cluster``), so one worker has every
broker's signals, while each principal's clients are on the worker owning its
partition. ``part()`` is what one worker publishes of it (its signals, normals,
per-broker totals of the loads it sees, and the loads of the principals asked
for), and ``merge_pressure`` makes the whole snapshot of all workers' parts
(``guardian.policy.view``); ``snapshot()`` is that merge of this one part.

Example (one broker, one client using most of its threads)::

    >>> from guardian.model.samples import Metric, Sample, Workload
    >>> p = ClusterPressure(clock=lambda: 100.0)
    >>> b = Workload(broker="b1")
    >>> c = Workload(principal="User:a", client_id="x", broker="b1")
    >>> p.observe([Sample(100.0, b, Metric.REQUEST_HANDLER_IDLE, 0.05),
    ...            Sample(100.0, c, Metric.REQUEST_TIME_SHARE, 90.0)])
    >>> snap = p.snapshot()
    >>> snap.brokers["b1"].signals["request_handler_idle"]
    0.05
    >>> snap.brokers["b1"].load_of(principal="User:a", client_ids=["x"]).request_time
    90.0
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Union

from guardian.model.samples import PRESSURE_METRICS, Metric, Sample, Workload

log = logging.getLogger(__name__)

# Latency signals get a learned normal; the others are read against absolute lines.
LATENCY_METRICS = frozenset({Metric.REQUEST_QUEUE_TIME_P99, Metric.REQUEST_TOTAL_TIME_P99})
_CLIENT_METRICS = {Metric.REQUEST_TIME_SHARE: "request_time", Metric.PRODUCE_BYTE_RATE: "bytes_in",
                   Metric.FETCH_BYTE_RATE: "bytes_out"}


def signal_name(metric: Metric, labels: dict[str, str]) -> str:
    """``request_total_time_p99:Produce``; signals without a request/operation label keep the metric name."""
    label = labels.get("request") or labels.get("operation")
    return f"{metric.value}:{label}" if label else metric.value


@dataclass(frozen=True)
class ClientLoad:
    """One client's (or the sum of several clients') load on one broker."""

    request_time: float = 0.0   # percent of one broker thread (Kafka's request-time sensor)
    bytes_in: float = 0.0       # produce bytes/s
    bytes_out: float = 0.0      # fetch bytes/s

    def __add__(self, other: "ClientLoad") -> "ClientLoad":
        return ClientLoad(self.request_time + other.request_time, self.bytes_in + other.bytes_in,
                          self.bytes_out + other.bytes_out)


Row = list   # a client's load as the shared view carries it: [client_id, request_time, bytes_in, bytes_out]
_Source = Union[dict[str, ClientLoad], list[Row]]


class ClientLoads(Mapping[tuple[str, str], ClientLoad]):
    """Client loads by (principal, client_id), held per principal and built one principal at a time.

    The engine asks for the loads of one detection's principal, while the workers' views carry every
    open tenant's clients: at 50,000 clients with 10 tenants open, building a ``ClientLoad`` for each
    of ~30,000 entries on every read was most of the engine's read of the view (docs/BENCHMARKS.md).
    So the view's rows stay as decoded from JSON until their principal is asked for. A principal's
    loads may come from several workers' parts (``union``): the first part's load of a client wins.
    A row that is not ``[client_id, number, number, number]`` is skipped and logged, as an unreadable
    view is.

        >>> loads = ClientLoads.from_rows({"User:a": [["x", 90.0, 1e6, 0.0], ["y", "bad"]]})
        >>> loads.principal("User:a")
        {'x': ClientLoad(request_time=90.0, bytes_in=1000000.0, bytes_out=0.0)}
        >>> dict(loads) == {("User:a", "x"): ClientLoad(90.0, 1e6, 0.0)}
        True
    """

    __slots__ = ("_sources", "_built")

    def __init__(self) -> None:
        self._sources: dict[str, list[_Source]] = {}         # principal -> its parts, in merge order
        self._built: dict[str, dict[str, ClientLoad]] = {}   # principal -> client_id -> load, when asked

    @classmethod
    def of(cls, loads: Mapping[tuple[str, str], ClientLoad]) -> "ClientLoads":
        """From a plain mapping (a worker's own loads)."""
        if isinstance(loads, ClientLoads):
            return loads
        out = cls()
        for (principal, client_id), load in loads.items():
            srcs = out._sources.setdefault(principal, [{}])
            srcs[0].setdefault(client_id, load)   # type: ignore[union-attr]
        return out

    @classmethod
    def from_rows(cls, rows: Mapping[str, list[Row]]) -> "ClientLoads":
        """From the view's wire form, principal -> rows; ``TypeError`` when that is not its shape (the
        rows themselves are read when their principal is asked for)."""
        out = cls()
        for principal, its in rows.items():
            if not isinstance(principal, str) or not isinstance(its, list):
                raise TypeError(f"client loads of {principal!r}: expected a list of rows, got {type(its).__name__}")
            out._sources[principal] = [its]
        return out

    @classmethod
    def union(cls, many: Iterable[Mapping[tuple[str, str], ClientLoad]]) -> "ClientLoads":
        """Every part's loads; a client in two parts keeps the first part's. Builds nothing."""
        out = cls()
        for part in many:
            for principal, srcs in cls.of(part)._sources.items():
                out._sources.setdefault(principal, []).extend(srcs)
        return out

    def principal(self, principal: str) -> dict[str, ClientLoad]:
        """Client-id -> load of ``principal``'s clients (built at the first ask, then kept)."""
        built = self._built.get(principal)
        if built is None:
            built, bad = {}, 0
            for src in self._sources.get(principal, ()):
                if isinstance(src, dict):
                    for client_id, load in src.items():
                        built.setdefault(client_id, load)
                    continue
                for row in src:
                    try:
                        client_id, rt, b_in, b_out = row
                        if not isinstance(client_id, str):
                            raise TypeError(client_id)
                        load = ClientLoad(float(rt), float(b_in), float(b_out))
                    except (TypeError, ValueError):
                        bad += 1
                        continue
                    built.setdefault(client_id, load)
            if bad:
                log.warning("%d unreadable client load rows of %s in the shared cluster view, skipped", bad, principal)
            self._built[principal] = built
        return built

    def rows(self) -> dict[str, list[Row]]:
        """The wire form (``from_rows``' input)."""
        return {p: [[c, load.request_time, load.bytes_in, load.bytes_out] for c, load in self.principal(p).items()]
                for p in self._sources}

    def __getitem__(self, key: tuple[str, str]) -> ClientLoad:
        return self.principal(key[0])[key[1]]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for principal in self._sources:
            for client_id in self.principal(principal):
                yield principal, client_id

    def __len__(self) -> int:
        return sum(len(self.principal(p)) for p in self._sources)

    def __repr__(self) -> str:
        return f"ClientLoads({dict(self)!r})"


@dataclass(frozen=True)
class BrokerPressure:
    broker: str
    ts: float                                          # newest pressure signal
    signals: dict[str, float]                          # signal_name -> latest value
    normals: dict[str, float]                          # latency signal_name -> learned normal (ms)
    clients: Mapping[tuple[str, str], ClientLoad]      # (principal, client_id) -> latest load
    total: ClientLoad = field(default_factory=ClientLoad)   # every client's load summed

    def __post_init__(self) -> None:
        # a plain mapping (tests, ``guardian.testing``) is grouped once, not at every ``load_of``
        object.__setattr__(self, "clients", ClientLoads.of(self.clients))

    def load_of(self, principal: str | None, client_ids: Iterable[str] | None = None) -> ClientLoad:
        """The load of these client-ids of ``principal``, or of all its clients when none are named
        (of every principal's when ``principal`` is None)."""
        wanted = set(client_ids or [])
        if principal is None:
            items: Iterable[tuple[str, ClientLoad]] = ((c, one) for (_, c), one in self.clients.items())
        else:
            items = ClientLoads.of(self.clients).principal(principal).items()   # grouped already
        load = ClientLoad()
        for c, one in items:
            if not wanted or c in wanted:
                load = load + one
        return load


@dataclass(frozen=True)
class Pressure:
    ts: float
    brokers: dict[str, BrokerPressure]


@dataclass(frozen=True)
class BrokerPart:
    """What one worker knows of a broker, as it publishes it: the signals with their sample times
    (freshness is judged when merging), the learned normals, the sum of the client loads it sees
    (fresh when published) and some of those loads."""

    ts: float                                       # newest signal, -inf without any
    signals: dict[str, tuple[float, float]]         # signal_name -> (ts, value)
    normals: dict[str, float]
    total: ClientLoad
    clients: Mapping[tuple[str, str], ClientLoad]


def merge_pressure(parts: Iterable[dict[str, BrokerPart]], now: float, stale_after_s: float) -> Pressure:
    """One ``Pressure`` snapshot from several workers' parts (broker -> ``BrokerPart``).

    Per broker, the signals and normals are those of the part with the newest signal (one worker
    owns the broker-level samples; after a rebalance the old owner's go stale), dropped when older
    than ``stale_after_s``; the totals add up (each worker sees other principals); the client loads
    are the union (a client in two parts, for a moment after a rebalance, keeps the first).
    """
    merged: dict[str, list[BrokerPart]] = {}
    for part in parts:
        for broker, b in part.items():
            merged.setdefault(broker, []).append(b)
    brokers: dict[str, BrokerPressure] = {}
    for broker, bs in merged.items():
        owner = max(bs, key=lambda b: b.ts)
        fresh = {n: v for n, (ts, v) in owner.signals.items() if now - ts <= stale_after_s}
        normals = {n: v for n, v in owner.normals.items() if n in fresh}
        total = ClientLoad()
        for b in bs:
            total = total + b.total
        clients = ClientLoads.union(b.clients for b in bs)
        brokers[broker] = BrokerPressure(broker=broker, ts=owner.ts, signals=fresh, normals=normals,
                                         clients=clients, total=total)
    return Pressure(ts=now, brokers=brokers)


class _Normal:
    """A latency signal's normal. For its first ``warm_s`` it is the plain mean of what was read and
    is not yet a normal (``warm`` is False: no line is drawn against it). Then a slow EWMA: while the
    value is far above it (``guard`` times) it learns ``slow_tau_s`` slowly, so a pressure episode
    does not become the normal in minutes. Given ``down_tau_s`` (queue times), a value below the
    normal is followed that fast: a wait for a handler thread is ~1 ms on a healthy broker, so its
    normal is the level it falls back to, and a startup or an incident kept for minutes in the broker's
    five-minute histogram must not hold it up (the 1-broker ramp drill: the first 30 s after the
    broker started averaged 25 ms, the healthy level was 4 ms, and 3x the normal that the 300 s
    average still held when the runaway came, 18 ms, was 54 ms). Total times keep the slow way down:
    they include each request's own work and the consumers' long polls, whose level moves with the
    traffic mix (a Fetch normal learned on a busy topic would turn its quiet long polls into pressure).

    The warm-up, which starts at the first reading above 0, is what keeps the first reading from
    becoming the anchor: a broker's histogram reads 0 until its first request, and with the guard an
    EWMA seeded there learned the real level (consumers' long polls: 500-900 ms) at the slow rate, so a
    normal of 46-63 ms was drawn under a Fetch p99 that had been ~800 ms all along, and every busy
    client looked like it explained that "pressure". (A guardian started before any consumer would
    otherwise have learned a Fetch normal of 0 from the empty histogram.)
    """

    __slots__ = ("value", "ts", "first", "n")

    def __init__(self) -> None:
        self.value: float | None = None
        self.ts = 0.0
        self.first = 0.0
        self.n = 0

    def warm(self, warm_s: float) -> bool:
        return self.value is not None and self.ts - self.first >= warm_s

    def update(self, ts: float, x: float, tau_s: float, slow_tau_s: float, guard: float, warm_s: float,
               down_tau_s: float | None = None) -> None:
        if self.value is None:
            if x <= 0.0:
                return   # a histogram that has seen no request (a quiet topic, a new broker): nothing to learn
            self.value, self.ts, self.first, self.n = x, ts, ts, 1
            return
        if not self.warm(warm_s):
            self.n += 1
            self.value += (x - self.value) / self.n
            self.ts = max(self.ts, ts)
            return
        dt = max(0.0, ts - self.ts)
        self.ts = max(self.ts, ts)
        if x > guard * self.value:
            tau = slow_tau_s
        elif x < self.value and down_tau_s is not None:
            tau = down_tau_s
        else:
            tau = tau_s
        alpha = 1.0 - math.exp(-dt / tau) if dt > 0 else 0.0
        self.value += alpha * (x - self.value)


class ClusterPressure:
    """Per-broker pressure signals and client loads, from the sample stream. See the module doc.

    ``stale_after_s``: a client load or signal not refreshed for this long is dropped from the
    snapshot. ``normal_warm_s``: a latency's normal is the mean of its first this many seconds, and
    only then is it published (no latency line before it). ``normal_tau_s`` / ``slow_tau_s``: how
    fast a latency's normal follows the value after that when it is near it / far above it (``guard`` times);
    ``queue_down_tau_s``: how fast a queue time's normal follows a value below it.

    The per-broker totals of the client loads are kept as samples arrive, and recomputed, with the
    stale loads dropped, every ``sweep_s``: a worker publishes its part every second, and walking
    every client for the totals each time cost 57 ms a second at 50,000 clients (docs/BENCHMARKS.md).
    So a load that went stale still counts in the totals for up to ``sweep_s`` more; the loads of
    the clients asked for are always filtered exactly.
    """

    def __init__(self, stale_after_s: float = 30.0, normal_tau_s: float = 300.0, slow_tau_s: float = 3600.0,
                 guard: float = 2.0, clock: Callable[[], float] = time.time, sweep_s: float = 5.0,
                 normal_warm_s: float = 30.0, queue_down_tau_s: float = 30.0) -> None:
        self.stale_after_s = stale_after_s
        self.queue_down_tau_s = queue_down_tau_s
        self.normal_warm_s = normal_warm_s
        self.sweep_s = sweep_s
        self.normal_tau_s = normal_tau_s
        self.slow_tau_s = slow_tau_s
        self.guard = guard
        self.clock = clock
        self._signals: dict[str, dict[str, tuple[float, float]]] = {}      # broker -> name -> (ts, value)
        self._normals: dict[str, dict[str, _Normal]] = {}
        self._clients: dict[str, dict[tuple[str, str], dict[str, tuple[float, float]]]] = {}
        self._totals: dict[str, dict[str, float]] = {}                        # broker -> load -> sum over _clients
        self._by_principal: dict[str, dict[str, set[tuple[str, str]]]] = {}   # broker -> principal -> keys
        self._swept = float("-inf")

    def observe(self, samples: Iterable[Sample] | Any) -> None:
        """Take a ``SampleBatch`` or any iterable of samples; anything not about pressure or load is skipped."""
        for s in samples:
            w = s.workload
            if w.broker is None or not (math.isfinite(s.value) and math.isfinite(s.ts)):
                continue
            if s.metric in PRESSURE_METRICS:
                if any(getattr(w, k) is not None for k in ("principal", "client_id", "group", "topic", "pod")):
                    continue
                name = signal_name(s.metric, s.labels)
                self._signals.setdefault(w.broker, {})[name] = (s.ts, float(s.value))
                if s.metric in LATENCY_METRICS:
                    normal = self._normals.setdefault(w.broker, {}).setdefault(name, _Normal())
                    normal.update(s.ts, float(s.value), self.normal_tau_s, self.slow_tau_s, self.guard,
                                  self.normal_warm_s,
                                  self.queue_down_tau_s if s.metric is Metric.REQUEST_QUEUE_TIME_P99 else None)
            elif s.metric in _CLIENT_METRICS and w.principal is not None and w.client_id is not None:
                clients = self._clients.setdefault(w.broker, {})
                key = (w.principal, w.client_id)
                slot = clients.get(key)
                if slot is None:
                    slot = clients[key] = {}
                    self._by_principal.setdefault(w.broker, {}).setdefault(w.principal, set()).add(key)
                name, value = _CLIENT_METRICS[s.metric], max(0.0, float(s.value))
                old = slot.get(name)
                totals = self._totals.setdefault(w.broker, {})
                totals[name] = totals.get(name, 0.0) + value - (old[1] if old is not None else 0.0)
                slot[name] = (s.ts, value)

    def part(self, principals: Iterable[str] | None = None) -> dict[str, BrokerPart]:
        """What this process knows, per broker: every signal and normal, the total of the fresh client
        loads, and the loads of ``principals``' clients (of every client when None)."""
        now = self.clock()
        if now - self._swept >= self.sweep_s:
            self._sweep(now)
        out: dict[str, BrokerPart] = {}
        for broker in set(self._signals) | set(self._clients):
            signals = dict(self._signals.get(broker, {}))
            newest = max((ts for ts, _ in signals.values()), default=float("-inf"))
            normals = {n: nm.value for n, nm in self._normals.get(broker, {}).items()
                       if nm.warm(self.normal_warm_s)}
            known = self._clients.get(broker, {})
            if principals is None:
                keys: Iterable[tuple[str, str]] = list(known)
            else:
                index = self._by_principal.get(broker, {})
                keys = [k for p in set(principals) for k in index.get(p, ())]
            clients: dict[tuple[str, str], ClientLoad] = {}
            for key in keys:
                vals = {k: v for k, (ts, v) in known[key].items() if now - ts <= self.stale_after_s}
                if vals:
                    clients[key] = ClientLoad(**vals)
            t = self._totals.get(broker, {})
            total = ClientLoad(t.get("request_time", 0.0), t.get("bytes_in", 0.0), t.get("bytes_out", 0.0))
            out[broker] = BrokerPart(ts=newest, signals=signals, normals=normals, total=total, clients=clients)
        return out

    def _sweep(self, now: float) -> None:
        """Drop the stale client loads (bounded memory: a client that went quiet is forgotten) and
        recompute the totals from what is left."""
        self._swept = now
        stale_after = self.stale_after_s
        for broker, clients in self._clients.items():
            totals: dict[str, float] = {}
            gone = []
            for key, parts in clients.items():
                stale = []
                for name, (ts, value) in parts.items():
                    if now - ts > stale_after:
                        stale.append(name)
                    else:
                        totals[name] = totals.get(name, 0.0) + value
                for name in stale:
                    del parts[name]
                if stale and not parts:
                    gone.append(key)
            for key in gone:
                del clients[key]
                self._unindex(broker, key)
            self._totals[broker] = totals

    def _unindex(self, broker: str, key: tuple[str, str]) -> None:
        keys = self._by_principal.get(broker, {}).get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_principal[broker][key[0]]

    def snapshot(self) -> Pressure:
        return merge_pressure([self.part()], self.clock(), self.stale_after_s)

    def forget(self, select: Callable[[Workload], bool]) -> None:
        """Drop what ``select`` accepts (its partition moved to another worker, which reports it now):
        a moved tenant's loads would otherwise count twice in the merged totals until they go stale."""
        for broker in list(self._signals):
            if select(Workload(broker=broker)):
                self._signals.pop(broker, None)
                self._normals.pop(broker, None)
        for broker, clients in self._clients.items():
            for key in [k for k in clients if select(Workload(principal=k[0], client_id=k[1], broker=broker))]:
                del clients[key]
                self._unindex(broker, key)
        self._swept = float("-inf")   # the totals are recomputed at the next part

    __call__ = snapshot
