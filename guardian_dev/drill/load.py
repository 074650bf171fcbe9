"""Load from real clients: confluent-kafka producers and consumers, and Kafka's perf tools.

Every client runs in its own thread (the perf tools in a JVM subprocess; the
producers whose rate changes, runaways and surges, in a Python process of their
own, ``ChildProducers``) and writes what it saw into a ``Recorder``: one ``(time, bytes, latency_s)`` per
acknowledged message (producers: ``Message.latency()``, from ``produce()``
to the broker's ack; consumers: from the record's timestamp to its arrival)
and the perf tools' interval reports. Rates follow a ``rate_fn(now)`` so the
runner can step, ramp or burst them. Nothing here decides anything; the
runner reads the recorders afterwards.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

RateFn = Callable[[float], float]


@dataclass(frozen=True)
class ChangedRate:
    """A runaway's or surge's rate (messages/s) at time ``t``: ``base`` until ``onset``, then ``factor`` x
    at once (``step``, and every other pattern that changes the rate) or growing linearly to it over
    ``ramp_s`` (``ramp``). Plain data, so ``ChildProducers`` can hand it to another process.

        >>> r = ChangedRate(base=10, onset=100, pattern="ramp", factor=5, ramp_s=20)
        >>> r(99), r(110), r(200)
        (10, 30.0, 50.0)
    """

    base: float
    onset: float
    pattern: str
    factor: float
    ramp_s: float = 0.0

    def __call__(self, t: float) -> float:
        if t < self.onset:
            return self.base
        if self.pattern == "ramp":
            return self.base * (1.0 + (self.factor - 1.0) * min(1.0, (t - self.onset) / self.ramp_s))
        return self.base * self.factor


@dataclass
class Recorder:
    name: str
    tenant: str
    role: str              # benign | runaway
    kind: str              # producer | consumer | perf-producer | perf-consumer | group | admin
    workload: dict[str, str] = field(default_factory=dict)   # principal + client_id or group
    acks: list[tuple[float, int, float]] = field(default_factory=list)
    perf: list[dict[str, float]] = field(default_factory=list)
    errors: int = 0
    last_error: str = ""
    events: list[tuple[float, str]] = field(default_factory=list)
    started_at: float | None = None
    stopped_at: float | None = None


def sasl_conf(bootstrap: str, user: str, password: str) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": user, "sasl.password": password}


class _Client(threading.Thread):
    def __init__(self, rec: Recorder, stop: threading.Event, start_at: float, end_at: float) -> None:
        super().__init__(name=f"load-{rec.name}", daemon=True)
        self.rec, self.stop, self.start_at, self.end_at = rec, stop, start_at, end_at

    def _wait_start(self) -> bool:
        while time.time() < self.start_at:
            if self.stop.wait(min(0.2, self.start_at - time.time())):
                return False
        self.rec.started_at = time.time()
        return True

    def _running(self) -> bool:
        return not self.stop.is_set() and time.time() < self.end_at


def payloads(size: int, fresh: bool = False) -> Callable[[], bytes]:
    """What a producer sends: one random ``size``-byte payload every time, or (``fresh``) new random
    bytes for each message.

    A batch of copies of one payload compresses to almost nothing (each copy matches the one before
    it), so a broker that recompresses batches (``compression.type`` other than the producer's) does
    little work for it: gzip-9 runs at ~270 MB/s on such a batch on the project's 2-core machine. Fresh
    random bytes do not compress, and the same gzip-9 runs at ~46 MB/s: every byte costs the broker's
    I/O thread real time, as a busy production broker's bytes do.

    The random bytes are drawn once per size (``random_pool``), ``RANDOM_POOL_BYTES`` of them, and
    cycled: a recompressing codec's window (gzip 32 KB, lz4 and snappy 64 KB, zstd a few MB) never
    reaches back to a payload's last use, so the broker's cost is that of fresh bytes, but the client's
    is a list lookup. Drawing them per message made the drill's storms expensive to run on the shared
    machine: the 1-broker retry storm's process, throttled, took 30-60 % of a core drawing 48 MB/s of
    random bytes into its queue, and the others' latency paid for that CPU, not for the broker.
    """
    if fresh:
        pool = random_pool(size)
        at = itertools.count()
        return lambda: pool[next(at) % len(pool)]
    one = os.urandom(size)
    return lambda: one


RANDOM_POOL_BYTES = 16 << 20
_pools: dict[int, list[bytes]] = {}
_pools_lock = threading.Lock()


def random_pool(size: int) -> list[bytes]:
    """``RANDOM_POOL_BYTES`` of distinct random ``size``-byte payloads (64 to 65,536 of them), drawn once per process."""
    with _pools_lock:
        pool = _pools.get(size)
        if pool is None:
            count = min(65_536, max(64, -(-RANDOM_POOL_BYTES // max(size, 1))))
            pool = _pools[size] = [os.urandom(size) for _ in range(count)]
        return pool


# Each producer's local queue. A throttled runaway fills it, then waits (``BufferError``). At 64 MB each
# the retry storm's 24 producers grew their process to 1.3 GB over the 20 s after the throttle, and the
# page faults of 48 MB/s of new queue took 20-30 % of a core (top: mostly system time) on the 2 cores the
# broker and the benign clients share; at 16 MB it is full in 2-8 s. The broker sees the same offer either
# way: whatever is queued is more than a throttle lets through.
QUEUE_KBYTES = 16384


class ProducerClient(_Client):
    """Produces ``size``-byte messages at ``rate_fn(now)`` messages/s (at most 1 s of backlog).

    Every message is the same random payload, unless ``fresh_payloads`` (see ``payloads``).
    """

    def __init__(self, rec: Recorder, conf: dict[str, Any], topic: str, rate_fn: RateFn, size: int,
                 stop: threading.Event, start_at: float, end_at: float, linger_ms: int = 5,
                 extra: dict[str, Any] | None = None, fresh_payloads: bool = False, drain_s: float = 15.0) -> None:
        super().__init__(rec, stop, start_at, end_at)
        self.drain_s = drain_s   # at the end, how long the backlog may still be sent before it is dropped
        self.conf = {**conf, "linger.ms": linger_ms, "acks": "all", "message.timeout.ms": 30000,
                     "queue.buffering.max.kbytes": QUEUE_KBYTES, **(extra or {})}
        self.topic, self.rate_fn, self.size = topic, rate_fn, size
        self.fresh_payloads = fresh_payloads

    def spec(self) -> dict[str, Any]:
        """This producer as plain data, for ``ChildProducers`` (its rate must be a ``ChangedRate``)."""
        assert isinstance(self.rate_fn, ChangedRate), "only a ChangedRate crosses to another process"
        return {"name": self.rec.name, "conf": self.conf, "topic": self.topic, "rate": asdict(self.rate_fn),
                "size": self.size, "start_at": self.start_at, "end_at": self.end_at,
                "fresh_payloads": self.fresh_payloads, "drain_s": self.drain_s}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], rec: Recorder, stop: threading.Event) -> "ProducerClient":
        client = cls(rec, {}, spec["topic"], ChangedRate(**spec["rate"]), spec["size"], stop, spec["start_at"],
                     spec["end_at"], fresh_payloads=spec["fresh_payloads"], drain_s=spec["drain_s"])
        client.conf = spec["conf"]   # as built in the parent (linger, acks, extra and all)
        return client

    def run(self) -> None:
        from confluent_kafka import Producer

        if not self._wait_start():
            return
        rec = self.rec
        acks = rec.acks

        dropping = False

        def delivered(err: Any, msg: Any) -> None:
            if dropping:
                return
            if err is not None:
                rec.errors += 1
                rec.last_error = str(err)
            else:
                acks.append((time.time(), len(msg.value() or b""), msg.latency() or 0.0))

        p = Producer(self.conf)
        payload = payloads(self.size, self.fresh_payloads)
        sent, target, last = 0, 0.0, time.monotonic()
        try:
            while self._running():
                now = time.monotonic()
                rate = max(0.0, self.rate_fn(time.time()))
                target = min(target + rate * (now - last), sent + max(rate, 1.0))
                last = now
                while sent < int(target):
                    try:
                        p.produce(self.topic, payload(), on_delivery=delivered)
                        sent += 1
                    except BufferError:
                        p.poll(0.05)   # the local queue is full (e.g. throttled): the app waits
                        break
                # wait for acks, not a fixed sleep: a delivery report is served (and its latency, which
                # runs until it is served, taken) as soon as the broker answers, so the recorded
                # latency is the broker's and not this loop's 20 ms tick
                p.poll(0.02)
        finally:
            if p.flush(self.drain_s):
                # what is still queued is a throttled runaway's backlog: a stopped application drops it
                # (purged, not counted as errors) instead of librdkafka warning about it on the terminal
                dropping = True
                p.purge()
                p.flush(1)
            rec.stopped_at = time.time()


class ChildProducers(threading.Thread):
    """Producers run in a Python process of their own (``python -m guardian_dev.drill.child``), their
    acks streamed back into their recorders here.

    The drill measures the benign tenants' latency from this process. A runaway producer sending 20 MB/s
    of fresh random payloads, or 24 connections resending in a loop, took 62 % of a core here and
    competed for this process's GIL with the benign clients' delivery callbacks; in its own process it
    competes only for the machine, as another team's application does. The child stops when ``stop`` is
    set (or this process goes away: its stdin closes), each producer as ``ProducerClient`` does.
    """

    def __init__(self, producers: list[ProducerClient], stop: threading.Event, log_path: Path) -> None:
        super().__init__(name=f"load-child-{len(producers)}", daemon=True)
        self.producers, self.stop, self.log_path = producers, stop, log_path
        self.recs = [p.rec for p in producers]
        self.returncode: int | None = None

    def run(self) -> None:
        import sys

        with open(self.log_path, "ab") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "guardian_dev.drill.child"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=log_file, text=True)
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps({"clients": [p.spec() for p in self.producers]}) + "\n")
            proc.stdin.flush()

            def tell_stop() -> None:
                self.stop.wait()
                try:
                    proc.stdin.write("stop\n")   # type: ignore[union-attr]
                    proc.stdin.flush()            # type: ignore[union-attr]
                except (BrokenPipeError, ValueError, OSError):
                    pass   # the child has finished

            threading.Thread(target=tell_stop, name="load-child-stop", daemon=True).start()
            for line in proc.stdout:
                self._apply(json.loads(line))
            self.returncode = proc.wait()
        if self.returncode:
            for rec in self.recs:
                rec.errors += 1
                rec.last_error = f"the producers' process exited with {self.returncode}; see {self.log_path}"

    def _apply(self, msg: dict[str, Any]) -> None:
        rec = self.recs[msg["i"]]
        rec.acks.extend((t, n, lat) for t, n, lat in msg["acks"])
        rec.errors, rec.last_error = msg["errors"], msg["last_error"]
        rec.started_at, rec.stopped_at = msg["started_at"], msg["stopped_at"]


class ConsumerClient(_Client):
    """Reads a topic; with ``rewind_every`` returning a period it seeks back to the beginning that often."""

    def __init__(self, rec: Recorder, conf: dict[str, Any], topic: str, group: str, stop: threading.Event,
                 start_at: float, end_at: float, rewind_every: Callable[[float], float | None] | None = None,
                 offset_reset: str = "latest") -> None:
        super().__init__(rec, stop, start_at, end_at)
        self.conf = {**conf, "group.id": group, "auto.offset.reset": offset_reset, "enable.auto.commit": True,
                     "auto.commit.interval.ms": 1000, "fetch.max.bytes": 52428800}
        self.topic, self.rewind_every = topic, rewind_every

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        if not self._wait_start():
            return
        c = Consumer(self.conf)
        c.subscribe([self.topic])
        last_rewind = 0.0
        try:
            while self._running():
                now = time.time()
                period = self.rewind_every(now) if self.rewind_every else None
                if period and now - last_rewind >= period:
                    parts = c.assignment()
                    if parts:
                        for tp in parts:
                            c.seek(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))
                        last_rewind = now
                        self.rec.events.append((now, "rewind"))
                msgs = c.consume(1000, timeout=0.2)
                arrived = time.time()
                for m in msgs:
                    if m.error():
                        self.rec.errors += 1
                        self.rec.last_error = str(m.error())
                        continue
                    ts = m.timestamp()[1] / 1000.0
                    self.rec.acks.append((arrived, len(m.value() or b""), max(0.0, arrived - ts)))
        except Exception as exc:  # noqa: BLE001 - e.g. a seek before assignment settles: record, stop
            self.rec.errors += 1
            self.rec.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("consumer %s stopped: %s", self.rec.name, exc)
        finally:
            c.close()
            self.rec.stopped_at = time.time()


class GroupClient(_Client):
    """``members`` consumers in one group; while ``churn_every(now)`` gives a period, one member
    leaves and a new one joins that often (each change is a rebalance). All members share one
    client-id (``client.id`` of ``conf``), as the replicas of one application do."""

    def __init__(self, rec: Recorder, conf: dict[str, Any], topic: str, group: str, members: int,
                 stop: threading.Event, start_at: float, end_at: float,
                 churn_every: Callable[[float], float | None]) -> None:
        super().__init__(rec, stop, start_at, end_at)
        self.conf = {**conf, "group.id": group, "auto.offset.reset": "latest", "session.timeout.ms": 10000,
                     "heartbeat.interval.ms": 1000}
        self.topic, self.members, self.churn_every = topic, members, churn_every

    def run(self) -> None:
        from confluent_kafka import Consumer

        if not self._wait_start():
            return
        consumers = []
        for i in range(self.members):
            c = Consumer(self.conf)
            c.subscribe([self.topic])
            consumers.append(c)
        last_churn = time.time()
        try:
            while self._running():
                for c in consumers:
                    for m in c.consume(200, timeout=0.05):
                        if not m.error():
                            self.rec.acks.append((time.time(), len(m.value() or b""), 0.0))
                now = time.time()
                period = self.churn_every(now)
                if period and now - last_churn >= period:
                    old = consumers.pop(0)
                    old.close()
                    c = Consumer(self.conf)
                    c.subscribe([self.topic])
                    consumers.append(c)
                    last_churn = now
                    self.rec.events.append((now, "churn"))
        finally:
            for c in consumers:
                c.close()
            self.rec.stopped_at = time.time()


def _record_creates(rec: Recorder, futures: Iterable[Any], partitions: int) -> None:
    """Wait for each topic of a CreateTopics request: an ack per topic created, an error per one refused."""
    for fut in futures:
        try:
            fut.result(timeout=30)
            rec.acks.append((time.time(), partitions, 0.0))
        except Exception as exc:  # noqa: BLE001 - a refused create is data for the report
            rec.errors += 1
            rec.last_error = str(exc)


class TopicStormClient(_Client):
    """Creates topics named ``prefix-<n>`` of ``partitions`` partitions at ``rate_fn(now)`` topics/s, one at a
    time, as a script in a loop does: at most 1 s of backlog (a throttled create delays the next one; it
    does not queue a burst for when the throttle lifts), and nothing after ``end_at``."""

    def __init__(self, rec: Recorder, conf: dict[str, Any], prefix: str, partitions: int, rate_fn: RateFn,
                 stop: threading.Event, start_at: float, end_at: float) -> None:
        super().__init__(rec, stop, start_at, end_at)
        self.conf, self.prefix, self.partitions, self.rate_fn = conf, prefix, partitions, rate_fn
        self.created: list[str] = []

    def run(self) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        if not self._wait_start():
            return
        admin = AdminClient(self.conf)
        target, last = 0.0, time.monotonic()
        try:
            while self._running():
                now = time.monotonic()
                rate = self.rate_fn(time.time())
                target = min(target + rate * (now - last), len(self.created) + max(rate, 1.0))
                last = now
                while len(self.created) < int(target) and self._running():
                    name = f"{self.prefix}-{len(self.created)}"
                    self.created.append(name)
                    _record_creates(self.rec, admin.create_topics([NewTopic(name, self.partitions, 1)]).values(),
                                    self.partitions)
                time.sleep(0.05)
        finally:
            self.rec.stopped_at = time.time()


class DeployClient(_Client):
    """Creates ``topics`` topics named ``prefix-<k>-<i>`` of ``partitions`` partitions at each of ``times``:
    in one CreateTopics request (a Streams app's internal topics), or with ``spread_s`` one request per
    topic spread evenly over that many seconds (a Terraform apply creating them one by one). A benign
    burst of creations, which the guardian may watch but must not throttle."""

    def __init__(self, rec: Recorder, conf: dict[str, Any], prefix: str, topics: int, partitions: int,
                 times: list[float], stop: threading.Event, start_at: float, end_at: float,
                 spread_s: float = 0.0) -> None:
        super().__init__(rec, stop, start_at, end_at)
        self.conf, self.prefix, self.topics, self.partitions, self.times = conf, prefix, topics, partitions, times
        self.spread_s = spread_s
        self.created: list[str] = []

    def run(self) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        if not self._wait_start():
            return
        admin = AdminClient(self.conf)
        try:
            for k, at in enumerate(self.times):
                names = [f"{self.prefix}-{k}-{i}" for i in range(self.topics)]
                requests = [names] if not self.spread_s else [[n] for n in names]
                for i, request in enumerate(requests):
                    due = at + i * self.spread_s / len(requests)
                    if self.stop.wait(max(0.0, due - time.time())) or not self._running():
                        return
                    self.created += request
                    futures = admin.create_topics([NewTopic(n, self.partitions, 1) for n in request]).values()
                    _record_creates(self.rec, futures, self.partitions)
        finally:
            self.rec.stopped_at = time.time()


def first_record(producer: Any, topic: str, deadline: float) -> None:
    """Produce one record to a new topic until it is acked (its leader may not be known yet); TimeoutError
    at ``deadline``."""
    while True:
        outcome: list[Any] = []
        producer.produce(topic, b"first", on_delivery=lambda err, msg: outcome.append(err))
        producer.flush(max(0.1, deadline - time.time()))
        if outcome and outcome[0] is None:
            return
        if time.time() >= deadline:
            raise TimeoutError(f"no ack for the first record of {topic}: {outcome[0] if outcome else 'none'}")
        time.sleep(0.01)


class ProvisionClient(_Client):
    """A benign tenant's deploy step, ``rate`` times a second: create a one-partition topic
    ``prefix-<n>`` and produce its first record (acks=all). The recorded latency is the whole step,
    from the create request to the record's ack: what a controller or a broker busy creating other
    tenants' partitions delays (the harm of a partition storm, which no produce latency shows)."""

    def __init__(self, rec: Recorder, conf: dict[str, Any], prefix: str, rate: float, stop: threading.Event,
                 start_at: float, end_at: float) -> None:
        super().__init__(rec, stop, start_at, end_at)
        self.conf, self.prefix, self.period = conf, prefix, 1.0 / max(rate, 1e-3)
        self.created: list[str] = []

    def run(self) -> None:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient, NewTopic

        if not self._wait_start():
            return
        admin = AdminClient(self.conf)
        producer = Producer({**self.conf, "acks": "all", "linger.ms": 0, "message.timeout.ms": 30000})
        try:
            while self._running():
                began = time.time()
                name = f"{self.prefix}-{len(self.created)}"
                self.created.append(name)
                try:
                    admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=30)
                    first_record(producer, name, began + 30)
                    self.rec.acks.append((time.time(), 0, time.time() - began))
                except Exception as exc:  # noqa: BLE001 - a failed step is data for the report
                    self.rec.errors += 1
                    self.rec.last_error = f"{type(exc).__name__}: {exc}"
                self.stop.wait(max(0.0, self.period - (time.time() - began)))
        finally:
            producer.flush(5)
            self.rec.stopped_at = time.time()


# ------------------------------------------------------------------------------- Kafka's perf tools

_PERF_INTERVAL = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg "
                            r"latency, ([\d.]+) ms max latency")
_PERF_FINAL = re.compile(r"([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, "
                         r"(\d+) ms 99th, (\d+) ms 99.9th")


def perf_properties(path: Path, conf: dict[str, Any], client_id: str) -> Path:
    """A Java client properties file for a tenant on the SASL listener."""
    lines = [f"client.id={client_id}", f"security.protocol={conf['security.protocol']}",
             f"sasl.mechanism={conf['sasl.mechanism']}",
             "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
             f'username="{conf["sasl.username"]}" password="{conf["sasl.password"]}";']
    path.write_text("\n".join(lines) + "\n")
    return path


class PerfClient(_Client):
    """ProducerPerformance or ConsumerPerformance in a JVM, its reports parsed as they come."""

    def __init__(self, rec: Recorder, cmd: list[str], stop: threading.Event, start_at: float, end_at: float) -> None:
        super().__init__(rec, stop, start_at, end_at)
        self.cmd = cmd
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []

    def run(self) -> None:
        if not self._wait_start():
            return
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        header: list[str] | None = None
        try:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                line = line.strip()
                self.output.append(line)
                now = time.time()
                if (m := _PERF_INTERVAL.search(line)) is not None:
                    self.rec.perf.append({"ts": now, "records_per_s": float(m[2]), "mb_per_s": float(m[3]),
                                          "avg_latency_ms": float(m[4]), "max_latency_ms": float(m[5])})
                elif (m := _PERF_FINAL.search(line)) is not None:
                    self.rec.perf.append({"ts": now, "final": 1.0, "avg_latency_ms": float(m[1]),
                                          "max_latency_ms": float(m[2]), "p50_ms": float(m[3]),
                                          "p95_ms": float(m[4]), "p99_ms": float(m[5]), "p999_ms": float(m[6])})
                elif line.startswith("time,") and "nMsg.sec" in line:
                    header = [h.strip() for h in line.split(",")]
                elif header is not None and line[:4].isdigit() and "," in line:
                    row = dict(zip(header, (v.strip() for v in line.split(","))))
                    try:
                        self.rec.perf.append({"ts": now, "records_per_s": float(row.get("nMsg.sec", "nan")),
                                              "mb_per_s": float(row.get("MB.sec", "nan"))})
                    except ValueError:
                        pass
        finally:
            self.proc.wait()
            self.rec.stopped_at = time.time()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def producer_perf_cmd(java: str, lib: Path, bootstrap: str, topic: str, props: Path, rate: float,
                      size: int, seconds: float) -> list[str]:
    return [java, "-Xmx256m", "-cp", str(lib / "*"), "org.apache.kafka.tools.ProducerPerformance",
            "--topic", topic, "--num-records", str(max(1, int(rate * seconds))), "--record-size", str(size),
            "--throughput", str(rate), "--producer.config", str(props),
            "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all", "linger.ms=5"]


def consumer_perf_cmd(java: str, lib: Path, bootstrap: str, topic: str, props: Path, group: str) -> list[str]:
    return [java, "-Xmx256m", "-cp", str(lib / "*"), "org.apache.kafka.tools.ConsumerPerformance",
            "--bootstrap-server", bootstrap, "--topic", topic, "--group", group, "--messages", str(10**12),
            "--timeout", str(3_600_000), "--consumer.config", str(props), "--show-detailed-stats",
            "--reporting-interval", "5000"]
