"""The testcontainers provider: used when a Docker engine answers.

The broker runs the official ``apache/kafka`` image with the same
server.properties, JMX rules and agent as the local provider (mounted in), on
host ports equal to container ports so advertised listeners stay valid.
"""

from __future__ import annotations

from importlib import resources
from typing import Callable

from guardian_dev.kafka import LocalKafka, ensure_jars

Progress = Callable[[str], None]


class ContainerStack:
    def __init__(self, kafka: LocalKafka) -> None:
        self.kafka = kafka

    def up(self, progress: Progress):
        from testcontainers.core.container import DockerContainer
        from testcontainers.redis import RedisContainer

        from guardian_dev.stack import Endpoints

        _, agent = ensure_jars(self.kafka.home, self.kafka.version, progress)
        st = self.kafka._new_state(self.kafka.state())
        cfg = self.kafka.run_dir / "kafka-container"
        cfg.mkdir(parents=True, exist_ok=True)
        (cfg / "server.properties").write_text(self.kafka._properties(st, "/var/lib/kafka/data"))  # type: ignore[arg-type]
        (cfg / "jmx_rules.yaml").write_text(resources.files("guardian.ingest").joinpath("jmx_rules.yaml").read_text())
        progress(f"starting apache/kafka:{self.kafka.version} with testcontainers ...")
        container = (DockerContainer(f"apache/kafka:{self.kafka.version}")
                     .with_volume_mapping(str(cfg), "/mnt/guardian", "ro")
                     .with_volume_mapping(str(agent.parent), "/mnt/agent", "ro")
                     .with_env("KAFKA_OPTS", f"-javaagent:/mnt/agent/{agent.name}=0.0.0.0:{st.metrics_port}:"
                                             "/mnt/guardian/jmx_rules.yaml")
                     .with_command(["bash", "-c",
                                    "/opt/kafka/bin/kafka-storage.sh format --cluster-id=" + st.cluster_id +
                                    " -c /mnt/guardian/server.properties --ignore-formatted && exec "
                                    "/opt/kafka/bin/kafka-server-start.sh /mnt/guardian/server.properties"]))
        for port in (st.port, st.sasl_port, st.controller_port, st.metrics_port):
            container = container.with_bind_ports(port, port)
        container.start()
        redis = RedisContainer("redis:7").with_command("redis-server --appendonly yes")
        redis.start()
        st.pid = 0

        def alive() -> bool:
            container.get_wrapped_container().reload()
            return container.get_wrapped_container().status == "running"

        self.kafka._wait_ready(st, progress, alive)
        self.kafka._bootstrap_security(st, progress)
        host, rport = redis.get_container_host_ip(), redis.get_exposed_port(6379)
        return Endpoints(kafka_bootstrap_servers=st.bootstrap, kafka_sasl_bootstrap_servers=st.sasl_bootstrap,
                         kafka_metrics_url=st.metrics_url, redis_url=f"redis://{host}:{rport}/0",
                         kafka_provider="testcontainers", redis_provider="testcontainers",
                         tenants=st.tenants, admin_password=st.users["admin"], kafka_capacity=st.capacity)
