"""A local KRaft broker (or a cluster of N) from Maven Central jars.

Each node is a combined broker+controller, three listeners: PLAINTEXT (the guardian's admin
listener; all-powerful, loopback only), SASL_PLAINTEXT with PLAIN users (the
tenants) and CONTROLLER. StandardAuthorizer with deny-by-default, each tenant
allowed on its own ``<tenant>.`` topic and group prefix. A very high default
(user, client-id) quota keeps per-client rate sensors alive, and the
Prometheus JMX exporter agent publishes them.

With ``brokers=N`` (``guardian-dev up --brokers 3``) there are N such nodes, each
with its own ports, data directory and JMX exporter, forming one controller
quorum of N voters. Combined nodes rather than a dedicated controller plus N
brokers: every node then runs the same role layout as the one-broker path (so
every exporter also publishes the controller gauges the scraper reads, and the
only difference under test is the number of brokers), the cluster costs N JVMs
instead of N+1 on a small shared machine, and a 3-voter quorum survives the
loss of one node. Internal topics get replication factor min(3, N) and min ISR
min(2, N).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import shutil
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from guardian_dev import cgroups, procs
from guardian.errors import ConfigError, SetupError

JMX_AGENT = ("io.prometheus.jmx", "jmx_prometheus_javaagent", "1.0.1")
LOG4J_VERSION = "2.24.3"
# A default quota no real client reaches: it only makes the broker keep per-client sensors.
SENSOR_QUOTA_BYTES = 1 << 40
SENSOR_QUOTA_REQUEST_PCT = 1_000_000.0  # percent of one I/O thread: never reached
ADMIN_USER = "admin"
MAX_BROKERS = 9  # a local cluster; each node is a JVM with up to 1 GiB of heap
MAX_CONTROLLERS = 3
CONTROLLER_ID_BASE = 100  # dedicated controllers are nodes 101, 102, ...; brokers 1, 2, ...

Progress = Callable[[str], None]


def _pom(version: str) -> str:
    deps = [("org.apache.kafka", "kafka_2.13", version), ("org.apache.kafka", "kafka-tools", version),
            ("org.slf4j", "slf4j-api", "1.7.36"),
            ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
            ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
            ("org.apache.logging.log4j", "log4j-api", LOG4J_VERSION), JMX_AGENT]
    body = "\n".join(f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
                     f"<version>{v}</version></dependency>" for g, a, v in deps)
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>guardian_dev</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{body}
  </dependencies>
</project>
"""


def check_java() -> str:
    java = shutil.which("java")
    if not java:
        raise SetupError("no `java` on PATH: the local Kafka broker needs a JDK 17 or newer "
                         "(Debian: apt-get install openjdk-17-jre-headless).")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        quoted = out.split('"')[1]
        major = int(quoted.split(".")[0] if not quoted.startswith("1.") else quoted.split(".")[1])
    except (IndexError, ValueError):
        return java
    if major < 17:
        raise SetupError(f"java {quoted} is too old: Kafka 4.x needs Java 17 or newer.")
    return java


def ensure_jars(home: Path, version: str, progress: Progress = lambda _: None) -> tuple[Path, Path]:
    """Resolve the broker's jars with Maven once; cached under ``home/kafka-<version>``.

    Returns (lib dir for the classpath, the JMX exporter agent jar).
    """
    root = home / f"kafka-{version}"
    lib, agent_dir = root / "lib", root / "agent"
    agent = agent_dir / f"{JMX_AGENT[1]}-{JMX_AGENT[2]}.jar"
    marker = root / ".complete"
    if marker.exists() and agent.exists():
        return lib, agent
    mvn = shutil.which("mvn")
    if not mvn:
        raise SetupError("no `mvn` on PATH: the local broker's jars come from Maven Central "
                         "(Debian: apt-get install maven).")
    check_java()
    root.mkdir(parents=True, exist_ok=True)
    (root / "pom.xml").write_text(_pom(version))
    shutil.rmtree(lib, ignore_errors=True)
    progress(f"resolving Kafka {version} jars from Maven Central into {root} (once) ...")
    proc = subprocess.run([mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={lib}",
                           "-DincludeScope=runtime"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise SetupError(f"Maven could not resolve Kafka {version}:\n{tail}")
    agent_dir.mkdir(exist_ok=True)
    # The agent is a shaded jar: keep it off the broker's classpath.
    shutil.move(str(lib / agent.name), agent)
    marker.write_text(version)
    return lib, agent


def quiet_logger() -> logging.Logger:
    """A logger for librdkafka clients whose connection errors during start-up are expected noise."""
    log = logging.getLogger("guardian_dev.rdkafka")
    log.propagate = False
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return log


@dataclass(frozen=True)
class BrokerCapacity:
    """How much the broker can do at once: its request-handler and network threads and its request queue.

    The defaults are the local broker's usual ones; the incident drill states a smaller capacity
    (one I/O and one network thread) so a runaway really hurts the tenants next to it.
    """

    io_threads: int = 4              # num.io.threads
    network_threads: int = 3         # num.network.threads
    queued_max_requests: int = 500   # queued.max.requests
    # log.flush.interval.messages: fsync every N appended messages (0: leave it to the OS, Kafka's
    # default); 1 makes each produce request wait for the disk, a disk-bound broker
    flush_interval_messages: int = 0
    # compression.type / compression.gzip.level: a broker that stores batches in another codec than the
    # producer's recompresses each one on its I/O thread ("producer", Kafka's default, never does)
    compression_type: str = "producer"
    compression_gzip_level: int = -1   # -1: the codec's default
    # a memory limit (MB) for each broker process, its page cache included, and a read rate (MB/s) for
    # the disk under its data (0: none; Linux cgroup v1, root: guardian_dev.cgroups). With a memory limit
    # the heap is fixed at 512 MB, so what is left of the limit is the broker's page cache.
    memory_mb: int = 0
    disk_read_mb_s: float = 0.0

    @classmethod
    def of(cls, recorded: dict[str, Any]) -> "BrokerCapacity":
        """The capacity a state file recorded; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in recorded.items() if k in known})

    @property
    def confined(self) -> bool:
        return bool(self.memory_mb or self.disk_read_mb_s)

    def properties(self) -> dict[str, str]:
        out = {"num.io.threads": str(self.io_threads), "num.network.threads": str(self.network_threads),
               "queued.max.requests": str(self.queued_max_requests), "compression.type": self.compression_type}
        if self.flush_interval_messages:
            out["log.flush.interval.messages"] = str(self.flush_interval_messages)
        if self.compression_gzip_level != -1:
            out["compression.gzip.level"] = str(self.compression_gzip_level)
        return out


def _topology(brokers: int, controllers: int) -> str:
    return f"{brokers} broker(s)" + (f" and {controllers} dedicated controller(s)" if controllers else "")


def _cgroup_name(node: NodeState) -> str:
    return f"guardian-dev-kafka-{node.port}"


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass
class NodeState:
    """One node of the local cluster (a broker, combined with a controller unless the cluster has dedicated
    controllers; a dedicated controller has only ``controller_port``): its process and ports."""

    node_id: int = 1
    pid: int = 0
    port: int = 0
    sasl_port: int = 0
    controller_port: int = 0
    metrics_port: int = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


@dataclass
class KafkaState:
    """What `guardian-dev up` started, written to ``run_dir/kafka.json``.

    The top-level ports and pid are node 1's (the only node of a one-broker run); with several
    brokers ``nodes`` lists every node, node 1 first.
    """

    pid: int = 0
    port: int = 0
    sasl_port: int = 0
    controller_port: int = 0
    metrics_port: int = 0
    cluster_id: str = ""
    version: str = ""
    users: dict[str, str] = field(default_factory=dict)  # name -> password (admin and tenants)
    broker_plugin: bool = False
    capacity: dict[str, int] = field(default_factory=dict)  # BrokerCapacity it runs with ({}: started before)
    nodes: list[dict] = field(default_factory=list)  # NodeState of every node when brokers > 1; [] = one node
    # NodeState of each dedicated controller (process.roles=controller); [] = the brokers are the quorum
    controllers: list[dict] = field(default_factory=list)

    def node_states(self) -> list[NodeState]:
        """The brokers (combined broker+controller nodes unless there are dedicated controllers)."""
        if self.nodes:
            return [NodeState(**n) for n in self.nodes]
        return [NodeState(1, self.pid, self.port, self.sasl_port, self.controller_port, self.metrics_port)]

    def controller_states(self) -> list[NodeState]:
        return [NodeState(**n) for n in self.controllers]

    def all_states(self) -> list[NodeState]:
        """Every process of the cluster: the brokers, then the dedicated controllers."""
        return self.node_states() + self.controller_states()

    @property
    def brokers(self) -> int:
        return len(self.nodes) or 1

    @property
    def bootstrap(self) -> str:
        """Every broker's admin (PLAINTEXT) listener, comma-separated."""
        return ",".join(n.bootstrap for n in self.node_states())

    @property
    def sasl_bootstrap(self) -> str:
        return ",".join(n.sasl_bootstrap for n in self.node_states())

    @property
    def metrics_url(self) -> str:
        """The first broker's JMX exporter (the only one of a one-broker run)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def metrics_urls(self) -> list[str]:
        return [n.metrics_url for n in self.node_states()]

    @property
    def tenants(self) -> dict[str, str]:
        return {u: p for u, p in self.users.items() if u != ADMIN_USER}


class LocalKafka:
    """A local broker, or a cluster of ``brokers`` nodes, rooted at ``run_dir`` (config, data, log, state).

    One broker keeps its config, data and log in ``run_dir/kafka``; node ``i`` of a cluster in
    ``run_dir/kafka/node-<i>``. The configured ``ports`` are node 1's; the other nodes pick free ports.
    """

    def __init__(self, run_dir: Path, home: Path, version: str = "4.1.1",
                 tenants: list[str] | None = None, ports: dict[str, int] | None = None,
                 start_timeout_s: float = 120.0, extra_properties: dict[str, str] | None = None,
                 extra_classpath: list[Path] | None = None, broker_plugin: bool = False,
                 capacity: BrokerCapacity | None = None, brokers: int = 1, controllers: int = 0) -> None:
        if isinstance(brokers, bool) or not isinstance(brokers, int) or not 1 <= brokers <= MAX_BROKERS:
            raise ConfigError(f"the local cluster needs 1 to {MAX_BROKERS} brokers, got {brokers!r}")
        if isinstance(controllers, bool) or not isinstance(controllers, int) or not 0 <= controllers <= MAX_CONTROLLERS:
            raise ConfigError(f"the local cluster has 0 (the brokers are the controller quorum) to {MAX_CONTROLLERS} "
                              f"dedicated controllers, got {controllers!r}")
        self.run_dir = run_dir
        self.home = home
        self.version = version
        self.tenants = tenants or ["tenant-a", "tenant-b"]
        self.ports = ports or {}
        self.start_timeout_s = start_timeout_s
        self.extra_properties = extra_properties or {}
        self.extra_classpath = extra_classpath or []
        self.broker_plugin = broker_plugin
        self.capacity = capacity or BrokerCapacity()
        self.brokers = brokers
        self.controllers = controllers
        self.state_file = run_dir / "kafka.json"
        self.log_file = self.node_dir(brokers, 1) / "server.log"

    def node_dir(self, brokers: int, node_id: int) -> Path:
        """Config, data and log of one node: ``run_dir/kafka`` for a single broker."""
        root = self.run_dir / "kafka"
        return root if brokers == 1 else root / f"node-{node_id}"

    def controller_dir(self, node_id: int) -> Path:
        """Config, metadata log and log of a dedicated controller."""
        return self.run_dir / "kafka" / f"controller-{node_id}"

    def dir_of(self, st: KafkaState, node_id: int) -> Path:
        return self.controller_dir(node_id) if node_id > CONTROLLER_ID_BASE else self.node_dir(st.brokers, node_id)

    def log_of(self, st: KafkaState, node_id: int) -> Path:
        return self.dir_of(st, node_id) / "server.log"

    # -- state -------------------------------------------------------------
    def state(self) -> KafkaState | None:
        try:
            return KafkaState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def is_running(self) -> bool:
        st = self.state()
        return bool(st and all(procs.pid_alive(n.pid) and procs.port_open(n.port or n.controller_port)
                               for n in st.all_states()))

    # -- lifecycle ----------------------------------------------------------
    def start(self, progress: Progress = lambda _: None) -> KafkaState:
        """Start the broker(s) unless they already run; wait until a tenant can authenticate."""
        st = self.state()
        if st and any(procs.pid_alive(n.pid) for n in st.all_states()):
            if (st.brokers, len(st.controllers)) != (self.brokers, self.controllers):
                raise SetupError(f"Kafka already runs with {_topology(st.brokers, len(st.controllers))} (pid {st.pid}), "
                                 f"not {_topology(self.brokers, self.controllers)}; run `guardian-dev down` first "
                                 "to change that")
            dead = [n.node_id for n in st.all_states() if not procs.pid_alive(n.pid)]
            if dead:
                raise SetupError(f"node(s) {dead} of the local Kafka cluster exited while the others run; see "
                                 f"{self.log_of(st, dead[0])}, then `guardian-dev down` and up again")
            if st.broker_plugin != self.broker_plugin:
                raise SetupError(f"Kafka already runs {'with' if st.broker_plugin else 'without'} the broker plugin "
                                 f"(pid {st.pid}); run `guardian-dev down` first to change that")
            if st.capacity and st.capacity != asdict(self.capacity):
                raise SetupError(f"Kafka already runs with capacity {st.capacity} (pid {st.pid}), not "
                                 f"{asdict(self.capacity)}; stop it first (`guardian-dev down`) to change that")
            progress(f"Kafka already running (pid {st.pid}) on {st.bootstrap}")
            self._wait_ready(st, progress)
            return st
        if (st and (st.brokers, len(st.controllers)) != (self.brokers, self.controllers)
                and (self.run_dir / "kafka").exists()):
            # another quorum (voters, node ids) is recorded in the stopped cluster's metadata log
            raise SetupError(f"the stopped local Kafka under {self.run_dir / 'kafka'} has "
                             f"{_topology(st.brokers, len(st.controllers))}, not "
                             f"{_topology(self.brokers, self.controllers)}: run `guardian-dev down --purge` to start "
                             f"over, or keep --brokers {st.brokers} --controllers {len(st.controllers)}")
        lib, agent = ensure_jars(self.home, self.version, progress)
        java = check_java()
        st = self._new_state(st)
        classpath_extra = list(self.extra_classpath)
        if self.broker_plugin:
            from guardian_dev.plugin import ensure_plugin_jar

            classpath_extra.append(ensure_plugin_jar(self.home, progress))
        classpath = os.pathsep.join([str(lib / "*")] + [str(p) for p in classpath_extra])
        nodes = st.node_states()
        controllers = st.controller_states()
        rules_text = resources.files("guardian.ingest").joinpath("jmx_rules.yaml").read_text()
        cmds: list[tuple[NodeState, list[str]]] = []
        to_format: list[list[str]] = []
        for node in controllers + nodes:   # controllers first: brokers wait for a quorum to register with
            cfg_dir = self.dir_of(st, node.node_id)
            data_dir = cfg_dir / "data"
            cfg_dir.mkdir(parents=True, exist_ok=True)
            props = cfg_dir / "server.properties"
            props.write_text(self._properties(st, data_dir, node))
            log4j = cfg_dir / "log4j2.properties"
            log4j.write_text(_LOG4J2)
            rules = cfg_dir / "jmx_rules.yaml"
            rules.write_text(rules_text)
            heap = ["-Xms512m", "-Xmx512m"] if self.capacity.memory_mb else ["-Xms256m", "-Xmx1g"]
            base = [java, *heap, "-XX:+UseG1GC", "-Djava.awt.headless=true",
                    f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={cfg_dir}", "-cp", classpath]
            if not (data_dir / "meta.properties").exists():
                to_format.append(base + ["kafka.tools.StorageTool", "format", f"--cluster-id={st.cluster_id}",
                                         "-c", str(props), "--ignore-formatted"])
            exporter = [f"-javaagent:{agent}=127.0.0.1:{node.metrics_port}:{rules}"] if node.metrics_port else []
            cmds.append((node, base[:1] + exporter + base[1:] + ["kafka.Kafka", str(props)]))
        if to_format:
            progress("formatting KRaft storage ..." if len(nodes) == 1
                     else f"formatting KRaft storage of {len(to_format)} node(s) ...")
            # one JVM each; in parallel, the cluster's formatting costs about one node's
            running = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                       for c in to_format]
            outputs = [fmt.communicate()[0] for fmt in running]   # every one ends before any is judged
            failed = [out for fmt, out in zip(running, outputs) if fmt.returncode != 0]
            if failed:
                raise SetupError(f"formatting Kafka storage failed:\n{failed[0][-2000:]}")
        for node in controllers + nodes:
            where = "" if len(nodes) == 1 and not controllers else f" of node {node.node_id}"
            for name, port in ((f"Kafka PLAINTEXT{where}", node.port), (f"Kafka SASL{where}", node.sasl_port),
                               (f"Kafka controller{where}", node.controller_port),
                               (f"JMX exporter{where}", node.metrics_port)):
                if port:
                    procs.check_port_free(port, name)
        if len(nodes) == 1 and not controllers:
            progress(f"starting Kafka {self.version} on {st.bootstrap} (SASL {st.sasl_bootstrap}) ...")
        else:
            layout = (f"{len(nodes)} brokers (combined broker+controller nodes, one quorum)" if not controllers
                      else _topology(len(nodes), len(controllers)))
            progress(f"starting Kafka {self.version}: {layout} on {st.bootstrap} (SASL {st.sasl_bootstrap}) ...")
        for node, cmd in cmds:
            node.pid = procs.spawn(cmd, self.dir_of(st, node.node_id) / "server.log")
            st.pid = nodes[0].pid
            if len(nodes) > 1:
                st.nodes = [asdict(n) for n in nodes]
            st.controllers = [asdict(n) for n in controllers]
            # recorded after each spawn: `guardian-dev down` stops whatever started, even if a later spawn fails
            self.state_file.write_text(json.dumps(asdict(st), indent=2))
            if self.capacity.confined and node.port:   # the brokers' capacity; a controller runs unconfined
                try:
                    cgroups.confine(node.pid, _cgroup_name(node), self.node_dir(len(nodes), node.node_id) / "data",
                                    self.capacity.memory_mb, self.capacity.disk_read_mb_s)
                except SetupError:
                    self.stop()
                    raise
        if self.capacity.confined:
            memory = f"{self.capacity.memory_mb} MB (heap 512 MB)" if self.capacity.memory_mb else "unlimited"
            progress(f"each broker confined: memory {memory}, "
                     f"disk reads {self.capacity.disk_read_mb_s or 'unlimited'} MB/s")
        self._wait_ready(st, progress)
        self._bootstrap_security(st, progress)
        return st

    def stop(self) -> bool:
        """Stop the broker(s) this run dir started; True when something was stopped."""
        st = self.state()
        if not st:
            return False
        nodes = st.node_states()
        running = any(procs.pid_alive(n.pid) for n in st.all_states())
        if len(st.all_states()) == 1:
            procs.stop(st.pid, timeout=30)
        else:
            # all at once: a node stopped last would wait for a quorum that is already gone
            procs.stop_all([n.pid for n in st.all_states() if n.pid], timeout=30)
        if BrokerCapacity.of(st.capacity).confined:
            for node in nodes:
                cgroups.release(_cgroup_name(node))
        return running

    def destroy(self) -> bool:
        stopped = self.stop()
        shutil.rmtree(self.run_dir / "kafka", ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        return stopped

    # -- internals ---------------------------------------------------------
    def _new_state(self, old: KafkaState | None) -> KafkaState:
        # Keep cluster id, users and ports of an earlier run so data and clients stay valid.
        users = dict(old.users) if old else {}
        users.setdefault(ADMIN_USER, secrets.token_urlsafe(12))
        for t in self.tenants:
            users.setdefault(t, secrets.token_urlsafe(12))

        def port(name: str, previous: int) -> int:
            return self.ports.get(name) or previous or procs.free_port()

        st = KafkaState(
            port=port("kafka", old.port if old else 0),
            sasl_port=port("sasl", old.sasl_port if old else 0),
            controller_port=port("controller", old.controller_port if old else 0),
            metrics_port=port("metrics", old.metrics_port if old else 0),
            cluster_id=old.cluster_id if old else _cluster_id(),
            version=self.version, users=users, broker_plugin=self.broker_plugin, capacity=asdict(self.capacity))
        if self.brokers > 1:
            first = st.node_states()[0]
            previous = old.node_states() if old and old.brokers == self.brokers else []
            taken = {first.port, first.sasl_port, first.controller_port, first.metrics_port}

            def fresh() -> int:
                p = procs.free_port()
                while p in taken:     # free_port releases its socket: two calls may return the same port
                    p = procs.free_port()
                taken.add(p)
                return p

            nodes = [first]
            for i in range(2, self.brokers + 1):
                prev = previous[i - 1] if len(previous) >= i else NodeState(i)
                nodes.append(NodeState(i, 0, prev.port or fresh(), prev.sasl_port or fresh(),
                                       prev.controller_port or fresh(), prev.metrics_port or fresh()))
            st.nodes = [asdict(n) for n in nodes]
        if self.controllers:
            previous = old.controller_states() if old and len(old.controllers) == self.controllers else []
            taken = {p for n in st.node_states() for p in (n.port, n.sasl_port, n.controller_port, n.metrics_port)}
            controllers = []
            for i in range(self.controllers):
                port = previous[i].controller_port if previous else procs.free_port()
                while port in taken:
                    port = procs.free_port()
                taken.add(port)
                controllers.append(NodeState(CONTROLLER_ID_BASE + 1 + i, 0, controller_port=port))
            st.controllers = [asdict(n) for n in controllers]
        return st

    def _properties(self, st: KafkaState, data_dir: Path, node: NodeState | None = None) -> str:
        """One node's server.properties: a broker (combined with a controller unless ``st`` has dedicated
        controllers) or a dedicated controller (a node with no broker port)."""
        jaas_users = " ".join(f'user_{u}="{p}"' for u, p in st.users.items())
        nodes = st.node_states()
        node = node or nodes[0]
        voters = st.controller_states() or nodes
        # internal topics survive one node lost; tenants' acks=all is not failed by one slow follower
        # on a busy machine, so the default min ISR stays 1
        rf, min_isr = min(3, len(nodes)), min(2, len(nodes))
        controller = f"CONTROLLER://127.0.0.1:{node.controller_port}"
        brokers = f"PLAINTEXT://127.0.0.1:{node.port},SASL_PLAINTEXT://127.0.0.1:{node.sasl_port}"
        if not node.port:
            roles, listeners = "controller", {"listeners": controller}
        elif st.controllers:
            roles, listeners = "broker", {"listeners": brokers, "advertised.listeners": brokers,
                                          "inter.broker.listener.name": "PLAINTEXT"}
        else:
            roles, listeners = "broker,controller", {"listeners": f"{brokers},{controller}",
                                                     "advertised.listeners": brokers,
                                                     "inter.broker.listener.name": "PLAINTEXT"}
        props = {
            "process.roles": roles,
            "node.id": str(node.node_id),
            "controller.quorum.voters": ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in voters),
            **listeners,
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config":
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{ADMIN_USER}" password="{st.users[ADMIN_USER]}" {jaas_users};',
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN_USER};User:ANONYMOUS",
            "log.dirs": str(data_dir),
            "num.partitions": "1",
            "default.replication.factor": str(rf),
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": str(rf),
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": str(min_isr),
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": str(rf),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            "share.coordinator.state.topic.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.retention.hours": "24",
            # the stated capacity is the brokers'; a dedicated controller runs with Kafka's defaults
            **(self.capacity.properties() if node.port else {}),
        }
        if st.broker_plugin and node.port:
            from guardian_dev.plugin import plugin_properties

            props.update(plugin_properties(st.bootstrap))
        props.update(self.extra_properties)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _wait_ready(self, st: KafkaState, progress: Progress,
                    alive: Callable[[], bool] | None = None) -> None:
        """Wait until every broker of ``st`` is in the cluster's metadata."""
        from confluent_kafka.admin import AdminClient

        nodes = st.node_states()
        alive = alive or (lambda: all(procs.pid_alive(n.pid) for n in st.all_states()))

        def log_file() -> Path:
            dead = [n for n in st.all_states() if not procs.pid_alive(n.pid)]
            return self.log_of(st, dead[0].node_id if dead else 1)

        deadline = time.monotonic() + self.start_timeout_s
        admin = None
        seen = 0
        while True:
            if not alive():
                log = log_file()
                raise SetupError(f"the Kafka broker exited during start-up. Last lines of {log}:\n{procs.tail(log)}")
            # Ask for metadata only once the port listens: librdkafka logs every refused connect.
            if procs.port_open(st.port):
                admin = admin or AdminClient({"bootstrap.servers": st.bootstrap, "logger": quiet_logger()})
                try:
                    seen = len(admin.list_topics(timeout=2).brokers)
                    if seen >= len(nodes):
                        break
                except Exception:  # noqa: BLE001 - any client error means "not yet"
                    pass
            if time.monotonic() > deadline:
                log = log_file()
                what = "answer metadata" if len(nodes) == 1 else f"all register ({seen} of {len(nodes)} did)"
                raise SetupError(f"the Kafka broker(s) did not {what} within {self.start_timeout_s:.0f}s. "
                                 f"Last lines of {log}:\n{procs.tail(log)}")
            time.sleep(0.3)
        progress(f"Kafka answers metadata on {st.bootstrap}" if len(nodes) == 1
                 else f"Kafka: {len(nodes)} brokers answer metadata on {st.bootstrap}")

    def _bootstrap_security(self, st: KafkaState, progress: Progress) -> None:
        """Tenant ACLs and the sensor-enabling default quota; both idempotent."""
        from guardian_dev.security import allow_tenant, check_tenant_login
        from guardian.clients.kafka_admin import ClientQuotaAdmin, QuotaEntity

        for tenant in self.tenants:
            allow_tenant(st.bootstrap, tenant)
        if st.broker_plugin:
            from guardian_dev.plugin import PLUGIN_TOPICS
            from guardian_dev.security import ensure_topics

            ensure_topics(st.bootstrap, {t: 3 for t in PLUGIN_TOPICS})
        with ClientQuotaAdmin(st.bootstrap) as quotas:
            quotas.alter(QuotaEntity.of(user=None, client_id=None),
                         {"producer_byte_rate": SENSOR_QUOTA_BYTES, "consumer_byte_rate": SENSOR_QUOTA_BYTES,
                          "request_percentage": SENSOR_QUOTA_REQUEST_PCT})
        first = self.tenants[0]
        for node in st.node_states():   # every broker's SASL listener, one at a time
            check_tenant_login(node.sasl_bootstrap, first, st.users[first], timeout=self.start_timeout_s)
        progress(f"tenants {', '.join(self.tenants)} authenticate over SASL/PLAIN on {st.sasl_bootstrap}")


_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
"""
