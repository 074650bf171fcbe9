"""The embedded default: Kafka and Redis for local use and tests.

Provider order, for each service on its own:
1. an existing endpoint named in the environment (``KAFKA_BOOTSTRAP_SERVERS``,
   ``REDIS_URL``): used as is, never started or stopped by us;
2. testcontainers, when a Docker engine answers;
3. local processes (Kafka from Maven Central jars, ``redis-server``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from guardian_dev import procs
from guardian_dev.kafka import BrokerCapacity, LocalKafka
from guardian_dev.redis import LocalRedis
from guardian.errors import SetupError
from guardian.settings import DevSettings

Progress = Callable[[str], None]
# under the dev home: the incident drill's own broker and Redis, for a scenario that states a capacity
DRILL_RUN_DIR = "run-drill"


@dataclass
class Endpoints:
    """Where the services answer; what `guardian-dev env` prints."""

    kafka_bootstrap_servers: str = ""
    kafka_sasl_bootstrap_servers: str = ""
    kafka_metrics_url: str = ""
    redis_url: str = ""
    kafka_provider: str = ""
    redis_provider: str = ""
    tenants: dict[str, str] = field(default_factory=dict)
    admin_user: str = "admin"
    admin_password: str = ""
    kubeconfig: str = ""  # the guardian's service account on the local kube-apiserver, when started
    kafka_capacity: dict[str, int] = field(default_factory=dict)  # the local broker's; {} = not known
    kafka_metrics_urls: list[str] = field(default_factory=list)  # every broker's exporter; [] = the one above

    @property
    def metrics_urls(self) -> list[str]:
        return list(self.kafka_metrics_urls) or ([self.kafka_metrics_url] if self.kafka_metrics_url else [])

    def exports(self) -> dict[str, str]:
        # KAFKA_METRICS_URL stays the first broker's, for what reads one; KAFKA_METRICS_URLS names all
        out = {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
               "KAFKA_SASL_BOOTSTRAP_SERVERS": self.kafka_sasl_bootstrap_servers,
               "KAFKA_METRICS_URL": self.kafka_metrics_url,
               "KAFKA_METRICS_URLS": ",".join(self.metrics_urls),
               "REDIS_URL": self.redis_url}
        if self.kubeconfig:
            out["KUBECONFIG"] = self.kubeconfig
        return out


def docker_answers() -> bool:
    """True when a Docker engine answers a ping (testcontainers can run)."""
    if os.environ.get("GUARDIAN_DEV__NO_DOCKER"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean "no"
        return False


def external_endpoints() -> Endpoints | None:
    """The endpoints named in the environment, when both services are named."""
    boot, redis_url = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("REDIS_URL")
    if not (boot and redis_url):
        return None
    tenants = json.loads(os.environ.get("KAFKA_TENANTS_JSON", "{}") or "{}")
    urls = [u.strip() for u in os.environ.get("KAFKA_METRICS_URLS", "").split(",") if u.strip()]
    return Endpoints(kafka_bootstrap_servers=boot,
                     kafka_sasl_bootstrap_servers=os.environ.get("KAFKA_SASL_BOOTSTRAP_SERVERS", boot),
                     kafka_metrics_url=os.environ.get("KAFKA_METRICS_URL", "") or (urls[0] if urls else ""),
                     kafka_metrics_urls=urls,
                     redis_url=redis_url, kafka_provider="environment", redis_provider="environment",
                     tenants=tenants)


class DevStack:
    """Starts, reports and stops the embedded services rooted at ``run_dir``."""

    def __init__(self, settings: DevSettings | None = None, run_dir: Path | None = None,
                 use_environment: bool = True, use_docker: bool | None = None,
                 kafka_properties: dict[str, str] | None = None,
                 kafka_classpath: list[Path] | None = None, broker_plugin: bool = False,
                 kubernetes: bool = False, brokers: int | None = None, controllers: int | None = None) -> None:
        self.settings = settings or DevSettings()
        self.run_dir = run_dir or (self.settings.home / "run")
        self.use_environment = use_environment
        self.use_docker = docker_answers() if use_docker is None else use_docker
        s = self.settings
        self.brokers = s.brokers if brokers is None else brokers
        self.controllers = s.controllers if controllers is None else controllers
        self.kafka = LocalKafka(self.run_dir, s.home, s.kafka_version, s.tenants,
                                ports={"kafka": s.kafka_port, "sasl": s.kafka_sasl_port,
                                       "controller": s.kafka_controller_port, "metrics": s.kafka_metrics_port},
                                start_timeout_s=s.start_timeout_s, extra_properties=kafka_properties,
                                extra_classpath=kafka_classpath, broker_plugin=broker_plugin,
                                capacity=BrokerCapacity(s.kafka_io_threads, s.kafka_network_threads,
                                                        s.kafka_queued_max_requests,
                                                        s.kafka_flush_interval_messages, s.kafka_compression_type,
                                                        s.kafka_compression_gzip_level, s.kafka_memory_mb,
                                                        s.kafka_disk_read_mb_s),
                                brokers=self.brokers, controllers=self.controllers)
        self.redis = LocalRedis(self.run_dir, s.redis_port)
        self.kubernetes = kubernetes
        self.endpoints_file = self.run_dir / "endpoints.json"

    def _external(self) -> Endpoints | None:
        """Endpoints named in the environment, unless they are our own (after `eval $(guardian-dev env)`)."""
        if not self.use_environment or not (ext := external_endpoints()):
            return None
        own = self._recorded()
        if own and own.kafka_bootstrap_servers == ext.kafka_bootstrap_servers:
            return None
        return ext

    def _recorded(self) -> Endpoints | None:
        try:
            return Endpoints(**json.loads(self.endpoints_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def up(self, progress: Progress = print) -> Endpoints:
        if ext := self._external():
            progress("using the Kafka and Redis named in the environment")
            return ext
        self._check_configured_ports()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.use_docker and (self.brokers > 1 or self.controllers):
            progress(f"testcontainers runs one combined broker here; {self.brokers} broker(s) and "
                     f"{self.controllers} controller(s) run as local processes")
        if self.use_docker and self.brokers == 1 and not self.controllers:
            from guardian_dev.containers import ContainerStack

            ep = ContainerStack(self.kafka).up(progress)
        else:
            ks = self.kafka.start(progress)
            rs = self.redis.start(progress)
            ep = Endpoints(kafka_bootstrap_servers=ks.bootstrap, kafka_sasl_bootstrap_servers=ks.sasl_bootstrap,
                           kafka_metrics_url=ks.metrics_url, redis_url=rs.url,
                           kafka_provider="local", redis_provider="local", tenants=ks.tenants,
                           admin_password=ks.users.get("admin", ""), kafka_capacity=ks.capacity,
                           kafka_metrics_urls=ks.metrics_urls)
        if self.kubernetes:
            ep.kubeconfig = str(self._start_kubernetes(progress))
        self.endpoints_file.write_text(json.dumps(asdict(ep), indent=2))
        return ep

    def _check_configured_ports(self) -> None:
        """Refuse before starting anything when a configured port is taken by someone else."""
        s = self.settings
        ours = self.kafka.is_running(), self.redis.is_running()
        if not ours[0]:
            for port, what in ((s.kafka_port, "Kafka PLAINTEXT"), (s.kafka_sasl_port, "Kafka SASL"),
                               (s.kafka_controller_port, "Kafka controller"), (s.kafka_metrics_port, "JMX exporter")):
                procs.check_port_free(port, what)
        if not ours[1]:
            procs.check_port_free(s.redis_port, "Redis")

    def _local_kubernetes(self, bins: Path | None = None):
        from guardian_dev.kubernetes import LocalKubernetes, binary_dir

        return LocalKubernetes(self.run_dir / "kubernetes", bins or binary_dir(self.settings.home))

    def _start_kubernetes(self, progress: Progress) -> Path:
        """Build (once, cached) and start kube-apiserver + etcd, seed tenants and the guardian's RBAC."""
        from guardian_dev.kubernetes import ensure_kubernetes_binaries, seed

        bins = ensure_kubernetes_binaries(self.settings.home, progress=progress)
        cluster = self._local_kubernetes(bins)
        if not cluster.is_running():
            progress("starting kube-apiserver and etcd ...")
            cluster.start()
        kubeconfig = seed(cluster)
        progress(f"Kubernetes API at {cluster.server_url}; the guardian's kubeconfig: {kubeconfig}")
        return kubeconfig

    def endpoints(self) -> Endpoints:
        if ext := self._external():
            return ext
        if own := self._recorded():
            return own
        raise SetupError("the embedded services are not up: run `guardian-dev up` first")

    def status(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        ks, rs = self.kafka.state(), self.redis.state()
        out["kafka"] = {"running": self.kafka.is_running(), "pid": ks.pid if ks else None,
                        "bootstrap": ks.bootstrap if ks else None,
                        "sasl_bootstrap": ks.sasl_bootstrap if ks else None,
                        "metrics_url": ks.metrics_url if ks else None,
                        "metrics_up": bool(ks and procs.port_open(ks.metrics_port)),
                        "log": str(self.kafka.log_of(ks, 1) if ks else self.kafka.log_file),
                        "brokers": [{"node_id": n.node_id, "running": procs.pid_alive(n.pid) and procs.port_open(n.port),
                                     "pid": n.pid, "bootstrap": n.bootstrap, "sasl_bootstrap": n.sasl_bootstrap,
                                     "metrics_url": n.metrics_url, "metrics_up": procs.port_open(n.metrics_port),
                                     "log": str(self.kafka.log_of(ks, n.node_id))}
                                    for n in (ks.node_states() if ks else [])],
                        "controllers": [{"node_id": n.node_id, "running": procs.pid_alive(n.pid)
                                         and procs.port_open(n.controller_port), "pid": n.pid,
                                         "controller": f"127.0.0.1:{n.controller_port}",
                                         "log": str(self.kafka.log_of(ks, n.node_id))}
                                        for n in (ks.controller_states() if ks else [])]}
        out["redis"] = {"running": self.redis.is_running(), "pid": rs.pid if rs else None,
                        "url": rs.url if rs else None, "data_dir": str(self.redis.data_dir)}
        if (self.run_dir / "kubernetes").exists():
            k8s = self._local_kubernetes()
            running = k8s.is_running()
            out["kubernetes"] = {"running": running, "pid": None, "url": k8s.server_url if running else None,
                                 "kubeconfig": str(k8s.guardian_kubeconfig_path)}
        return out

    def down(self, progress: Progress = print, purge: bool = False) -> None:
        """Stop only what `up` started here; with ``purge`` also delete the data."""
        if (self.run_dir / "kubernetes").exists():
            k8s = self._local_kubernetes()
            was = k8s.is_running()
            k8s.stop()
            progress(f"Kubernetes: {'stopped' if was else 'was not running'}")
        for name, svc in (("Kafka", self.kafka), ("Redis", self.redis)):
            stopped = svc.destroy() if purge else svc.stop()
            progress(f"{name}: {'stopped' if stopped else 'was not running'}{' and data removed' if purge else ''}")
        if purge:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            self.endpoints_file.unlink(missing_ok=True)
