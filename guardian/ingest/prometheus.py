"""Source 1: broker metrics from a Prometheus text endpoint (the JMX exporter, Strimzi, MSK).

``PrometheusSampler`` is pure: text and a timestamp in, samples out. It knows
the exporter names in ``guardian/ingest/jmx_rules.yaml``:

* per (user, client-id) quota sensors, already windowed rates on the broker:
  ``kafka_server_quota_byte_rate{request=Produce|Fetch}``,
  ``kafka_server_quota_request_time`` (percent of a thread),
  ``kafka_server_quota_throttle_time`` (ms), keyed by ``User:<user>`` + client-id;
* cumulative counters turned into rates here (see ``rates.CounterRates``):
  per-topic ``kafka_server_brokertopicmetrics_*_total``, per-request-type
  ``kafka_network_requestmetrics_requests_total`` / ``errors_total`` and the
  group coordinator's completed-rebalance count;
* gauges: connection creation rate per listener, and global topic and
  partition counts whose growth gives creation rates;
* broker pressure (``guardian.ingest.pressure``): the request-handler idle
  share over the last few seconds from the idle meter's count (``HandlerIdle``),
  network-thread idle (the least idle data-plane thread over the last few seconds,
  from each thread's io-wait time: ``NetworkIdle``; Kafka's average gauge only where
  those are missing), p99 request queue and total time for
  Produce and FetchConsumer, Produce and Fetch purgatory sizes and
  under-replicated partitions, all as broker-level samples.

A restart of the target (``process_start_time_seconds`` moved) or a counter
that went down restarts that counter's rate from zero instead of producing a
negative or huge rate. ``PrometheusScraper`` adds the HTTP edge: every broker's page is fetched at
once and parsed in URL order.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Callable, Iterable, Iterator
from urllib.parse import urlparse

from guardian.errors import TemporaryError
from guardian.ingest.pressure import PURGATORIES, REQUEST_LABELS, HandlerIdle, NetworkIdle, clamp_ratio
from guardian.ingest.rates import CounterRates
from guardian.model.samples import Metric, Sample, Workload

log = logging.getLogger(__name__)

SOURCE = "prometheus"

_QUOTA_GAUGES: dict[tuple[str, str], Metric] = {
    ("kafka_server_quota_byte_rate", "Produce"): Metric.PRODUCE_BYTE_RATE,
    ("kafka_server_quota_byte_rate", "Fetch"): Metric.FETCH_BYTE_RATE,
    ("kafka_server_quota_request_time", "Request"): Metric.REQUEST_TIME_SHARE,
    ("kafka_server_quota_throttle_time", "Produce"): Metric.THROTTLE_TIME,
    ("kafka_server_quota_throttle_time", "Fetch"): Metric.THROTTLE_TIME,
    ("kafka_server_quota_throttle_time", "Request"): Metric.THROTTLE_TIME,
}

# Per-topic broker meters (kafka.server BrokerTopicMetrics), summed per metric. The broker plugin
# reads the same meters by name; the exporter names them kafka_server_brokertopicmetrics_<name>_total.
TOPIC_METERS: dict[str, Metric] = {
    "BytesInPerSec": Metric.PRODUCE_BYTE_RATE,
    "BytesOutPerSec": Metric.FETCH_BYTE_RATE,
    "TotalProduceRequestsPerSec": Metric.PRODUCE_REQUEST_RATE,
    "TotalFetchRequestsPerSec": Metric.FETCH_REQUEST_RATE,
    "FailedProduceRequestsPerSec": Metric.ERROR_RATE,
    "FailedFetchRequestsPerSec": Metric.ERROR_RATE,
}
# Sample names without the exporter's ``_total``.
_TOPIC_COUNTERS: dict[str, Metric] = {
    f"kafka_server_brokertopicmetrics_{name.removesuffix('PerSec').lower()}": metric
    for name, metric in TOPIC_METERS.items()
}
_REQUESTS = "kafka_network_requestmetrics_requests"
_ERRORS = "kafka_network_requestmetrics_errors"
_REBALANCES = "kafka_server_group_coordinator_group_completed_rebalance_count"
_CONNECTIONS = "kafka_server_socket_connection_creation_rate"
_COUNT_GAUGES = {"kafka_controller_globaltopiccount": Metric.TOPIC_CREATION_RATE,
                 "kafka_controller_globalpartitioncount": Metric.PARTITION_CREATION_RATE}
_START_TIME = "process_start_time_seconds"
# Broker pressure (names from jmx_rules.yaml).
_HANDLER_IDLE = "kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent"   # Count, a counter
_HANDLER_IDLE_MEAN = "kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_meanrate"
_NETWORK_IDLE = "kafka_network_socketserver_networkprocessoravgidlepercent"
_IO_WAIT = "kafka_server_socket_io_wait_time_ns"   # per listener and network thread, cumulative ns
_P99: dict[str, Metric] = {"kafka_network_requestmetrics_requestqueuetimems": Metric.REQUEST_QUEUE_TIME_P99,
                           "kafka_network_requestmetrics_totaltimems": Metric.REQUEST_TOTAL_TIME_P99}
_P99_QUANTILES = frozenset({"99thPercentile", "0.99"})
_PURGATORY = "kafka_server_delayedoperationpurgatory_purgatorysize"
_URP = "kafka_server_replicamanager_underreplicatedpartitions"


def _strip_total(name: str) -> str:
    return name[:-6] if name.endswith("_total") else name


# One sample line of the text format: name, optional {labels}, value, optional timestamp.
_LINE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*")
_PAIR_TEXT = r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*'
_PAIR = re.compile(_PAIR_TEXT)
_LABELS = re.compile(f"(?:{_PAIR_TEXT},)*(?:{_PAIR_TEXT})?[ \t]*")   # the whole label body, nothing else
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value: str) -> str:
    return re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], value) if "\\" in value else value


def text_samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample line of a Prometheus text page, in order.

    A small parser for what exporters serve (``# HELP``/``# TYPE`` lines skipped, label values
    unescaped, a timestamp ignored). ``prometheus_client``'s parser, which this replaces on the
    scrape path, took ~40 us a line: 1.7 s of a core per scrape of a broker with 10,000 clients
    (docs/BENCHMARKS.md, "Scale"). A line this one cannot read goes to that parser on its own.

    >>> list(text_samples('# TYPE x gauge\\nx{a="1",b="q\\\\"t",} 2.5\\ny NaN 1795000000000\\n'))
    [('x', {'a': '1', 'b': 'q"t'}, 2.5), ('y', {}, nan)]
    """
    for line in text.splitlines():
        if not line or line[0] == "#" or line.isspace():
            continue
        m = _LINE.fullmatch(line)
        if m is None or (m.group(2) and not _LABELS.fullmatch(m.group(2))):
            yield from _slow_samples(line)
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            yield from _slow_samples(line)
            continue
        body = m.group(2)
        yield m.group(1), {k: _unescape(v) for k, v in _PAIR.findall(body)} if body else {}, value


def _slow_samples(line: str) -> Iterator[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        for family in text_string_to_metric_families(line + "\n"):
            for s in family.samples:
                yield s.name, s.labels, s.value
    except ValueError:
        log.debug("unreadable exporter line skipped: %.200s", line)


class PrometheusSampler:
    """Turns successive scrapes of one or more targets into samples. Keeps counter state."""

    def __init__(self, cluster: str = "default", stale_after_s: float = 600.0) -> None:
        self.cluster = cluster
        self.rates = CounterRates(stale_after_s=stale_after_s)
        self.handler_idle = HandlerIdle(stale_after_s=stale_after_s)
        self.network_idle = NetworkIdle(stale_after_s=stale_after_s)
        self._start_times: dict[str, float] = {}
        self._counts: dict[tuple[str, str], tuple[float, float]] = {}

    def samples_from_text(self, text: str, ts: float, target: str) -> list[Sample]:
        """All samples one scrape of ``target`` (a broker name) yields at time ``ts``."""
        out: list[Sample] = []
        counters: dict[tuple, float] = {}   # (metric, workload, labels) -> summed cumulative value
        connections: dict[str, float] = {}
        restarted = False
        idle_count: float | None = None
        idle_mean: float | None = None
        network_avg: float | None = None
        io_wait: dict[tuple[str, str], float] = {}
        broker = Workload(broker=target)
        for name, labels, value in text_samples(text):
            if name.startswith("kafka_server_quota_"):
                metric = _QUOTA_GAUGES.get((name, labels.get("request", "")))
                if metric is None or not math.isfinite(value):
                    continue  # NaN = the broker's window holds no observation yet
                user, cid = labels.get("user", ""), labels.get("client_id", "")
                w = Workload(principal=f"User:{user}" if user else None, client_id=cid or None,
                             broker=target)
                extra = {"request": labels["request"]} if metric is Metric.THROTTLE_TIME else {}
                out.append(self._sample(ts, w, metric, value, extra))
                continue
            base = _strip_total(name)
            if base in _TOPIC_COUNTERS:
                topic = labels.get("topic")
                w = Workload(topic=topic, broker=target) if topic else broker
                k = (_TOPIC_COUNTERS[base], w, ())
                counters[k] = counters.get(k, 0.0) + value
            elif base == _REQUESTS:
                k = (Metric.REQUEST_RATE, broker, (("request", labels.get("request", "")),))
                counters[k] = counters.get(k, 0.0) + value
            elif base == _ERRORS and labels.get("error", "NONE") != "NONE":
                k = (Metric.ERROR_RATE, broker, (("request", labels.get("request", "")),))
                counters[k] = counters.get(k, 0.0) + value
            elif name == _REBALANCES:
                counters[(Metric.REBALANCE_RATE, broker, ())] = value
            elif name == _CONNECTIONS and math.isfinite(value):
                listener = labels.get("listener", "")
                connections[listener] = connections.get(listener, 0.0) + value
            elif name in _COUNT_GAUGES:
                rate = self._growth(target, name, ts, value)
                if rate is not None:
                    out.append(self._sample(ts, broker, _COUNT_GAUGES[name], rate))
            elif name == _START_TIME:
                prev = self._start_times.get(target)
                restarted = prev is not None and value != prev
                self._start_times[target] = value
            elif base == _HANDLER_IDLE:
                idle_count = value
            elif name == _HANDLER_IDLE_MEAN:
                idle_mean = value
            elif name == _NETWORK_IDLE:
                network_avg = clamp_ratio(value)
            elif base == _IO_WAIT and math.isfinite(value):
                io_wait[(labels.get("listener", ""), labels.get("network_processor", ""))] = value
            elif name in _P99:
                request = REQUEST_LABELS.get(labels.get("request", ""))
                if request and labels.get("quantile") in _P99_QUANTILES and math.isfinite(value):
                    out.append(self._sample(ts, broker, _P99[name], value, {"request": request}))
            elif name == _PURGATORY:
                operation = labels.get("delayedoperation", "")
                if operation in PURGATORIES and math.isfinite(value):
                    out.append(self._sample(ts, broker, Metric.PURGATORY_SIZE, value, {"operation": operation}))
            elif name == _URP and math.isfinite(value):
                out.append(self._sample(ts, broker, Metric.UNDER_REPLICATED_PARTITIONS, value))
        if restarted:
            log.info("target %s restarted; counter rates restart from zero", target)
        for (metric, w, extra), total in counters.items():
            if not math.isfinite(total):
                continue
            rate = self.rates.observe((target, metric, w, extra), ts, total, restarted=restarted)
            if rate is not None:
                out.append(self._sample(ts, w, metric, rate, dict(extra)))
        for listener, value in connections.items():
            out.append(self._sample(ts, broker, Metric.CONNECTION_CREATION_RATE, value, {"listener": listener}))
        if idle_count is not None:
            ratio = self.handler_idle.observe(target, ts, idle_count, idle_mean, restarted=restarted)
            if ratio is not None:
                out.append(self._sample(ts, broker, Metric.REQUEST_HANDLER_IDLE, ratio))
        network = self.network_idle.observe(target, ts, io_wait, restarted=restarted) if io_wait else network_avg
        if network is not None:
            out.append(self._sample(ts, broker, Metric.NETWORK_PROCESSOR_IDLE, network))
        self.rates.forget_stale(ts)
        self.handler_idle.forget_stale(ts)
        self.network_idle.forget_stale(ts)
        return out

    def _growth(self, target: str, name: str, ts: float, value: float) -> float | None:
        """Creations per second from a count gauge: net growth, never negative (deletions are not creations)."""
        prev = self._counts.get((target, name))
        self._counts[(target, name)] = (ts, value)
        if prev is None or ts <= prev[0] or not math.isfinite(value):
            return None
        return max(0.0, value - prev[1]) / (ts - prev[0])

    def _sample(self, ts: float, w: Workload, metric: Metric, value: float,
                labels: dict[str, str] | None = None) -> Sample:
        return Sample(ts=ts, workload=w, metric=metric, value=float(value), source=SOURCE,
                      cluster=self.cluster, labels=labels or {})


def target_name(url: str) -> str:
    """A broker name for a metrics URL: its host:port."""
    return urlparse(url).netloc or url


class _Fetcher:
    """GETs every URL at once, one thread per URL (up to ``MAX_FETCH_THREADS``), and gives each
    URL's text with the time it arrived, or its HTTP error, in URL order.

    An exporter takes 0.1-0.5 s to serve a page (seconds for 10,000 clients); one after another,
    three brokers' pages made a 1 s scrape cycle last 1.04 s on average and a verification read
    cost each broker's time in turn. At once, a cycle costs the slowest page, not their sum.
    """

    MAX_FETCH_THREADS = 16

    def __init__(self, urls: list[str], timeout_s: float, clock: Callable[[], float]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import httpx

        self.urls, self.clock = urls, clock
        self._http = httpx.Client(timeout=timeout_s, limits=httpx.Limits(max_connections=len(urls)))
        self._pool = ThreadPoolExecutor(max_workers=min(len(urls), self.MAX_FETCH_THREADS),
                                        thread_name_prefix="guardian-scrape")

    def _get(self, url: str) -> tuple[str, float] | Exception:
        import httpx

        try:
            resp = self._http.get(url)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            return exc
        return resp.text, self.clock()

    def fetch(self) -> list[tuple[str, tuple[str, float] | Exception]]:
        if len(self.urls) == 1:
            return [(self.urls[0], self._get(self.urls[0]))]
        return list(zip(self.urls, self._pool.map(self._get, self.urls)))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.close()


def _urls(urls: Iterable[str]) -> list[str]:
    out = [u.strip() for u in urls if u.strip()]
    if not out:
        from guardian.errors import ConfigError

        raise ConfigError("no Prometheus metrics URL configured (GUARDIAN_KAFKA__METRICS_URL / KAFKA_METRICS_URL)")
    return out


class PrometheusScraper:
    """Scrapes every URL (at once) and returns the samples; HTTP errors become ``TemporaryError``."""

    def __init__(self, urls: Iterable[str], cluster: str = "default",
                 clock: Callable[[], float] | None = None, timeout_s: float = 10.0) -> None:
        import time

        self.urls = _urls(urls)
        self.sampler = PrometheusSampler(cluster=cluster)
        self.clock = clock or time.time
        self._fetcher = _Fetcher(self.urls, timeout_s, lambda: self.clock())

    def close(self) -> None:
        self._fetcher.close()

    def scrape(self) -> list[Sample]:
        out: list[Sample] = []
        failures: list[str] = []
        for url, got in self._fetcher.fetch():   # parsed here, in URL order: the sampler keeps state
            if isinstance(got, Exception):
                failures.append(f"{url}: {got}")
                continue
            text, ts = got
            out.extend(self.sampler.samples_from_text(text, ts, target_name(url)))
        if failures and not out:
            raise TemporaryError("no metrics endpoint answered: " + "; ".join(failures), delay=5.0)
        for failure in failures:
            log.warning("scrape failed: %s", failure)
        return out


# The quota key that bounds each per-client quota gauge (``ClientRates``).
QUOTA_KEY_GAUGES: dict[str, tuple[str, str]] = {
    "producer_byte_rate": ("kafka_server_quota_byte_rate", "Produce"),
    "consumer_byte_rate": ("kafka_server_quota_byte_rate", "Fetch"),
    "request_percentage": ("kafka_server_quota_request_time", "Request"),
}


def client_rate_from_text(text: str, user: str, client_id: str | None, key: str) -> float | None:
    """One broker's rate of one client for quota ``key`` (its quota sensor), or None when it has no
    sensor or no observation yet. ``client_id`` None: the user-level sensor (empty client-id tag). Pure.

    >>> text = 'kafka_server_quota_byte_rate{request="Produce",user="a",client_id="x",} 512.0\\n'
    >>> client_rate_from_text(text, "a", "x", "producer_byte_rate"), client_rate_from_text(text, "a", "y", "producer_byte_rate")
    (512.0, None)
    """
    from prometheus_client.parser import text_string_to_metric_families

    try:
        name, request = QUOTA_KEY_GAUGES[key]
    except KeyError:
        from guardian.errors import PermanentError

        raise PermanentError(f"no per-client sensor measures {key!r}; known: {', '.join(QUOTA_KEY_GAUGES)}") from None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if (s.name == name and s.labels.get("request") == request and s.labels.get("user") == user
                    and (s.labels.get("client_id") or None) == client_id):
                return s.value if math.isfinite(s.value) else None
    return None


class ClientRates:
    """One client's rate on every broker, read from each broker's exporter: the ``rates`` reader of
    ``guardian.actuators.quota.QuotaActuator`` (``measure`` sums it into the client's cluster-wide rate).

    The broker's quota sensor is its own windowed rate (the quota window, 11 x 1 s by default),
    the same figure the broker throttles on. Brokers without a sensor for the client are left out.
    """

    def __init__(self, urls: Iterable[str], timeout_s: float = 5.0) -> None:
        import time

        self.urls = _urls(urls)
        self._fetcher = _Fetcher(self.urls, timeout_s, time.time)

    def close(self) -> None:
        self._fetcher.close()

    def __call__(self, user: str, client_id: str | None, key: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for url, got in self._fetcher.fetch():
            if isinstance(got, Exception):
                # a broker left out would make the sum look like a throttle that works
                raise TemporaryError(f"metrics of {target_name(url)} unreadable: {got}", delay=2.0) from got
            value = client_rate_from_text(got[0], user, client_id, key)
            if value is not None:
                out[target_name(url)] = value
        return out
