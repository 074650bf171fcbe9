"""`guardian-dev up --brokers N`: the cluster's configuration, state and exports, without starting it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from guardian_dev.kafka import BrokerCapacity, KafkaState, LocalKafka
from guardian_dev.stack import Endpoints, external_endpoints
from guardian.errors import ConfigError
from guardian.settings import DevSettings, GuardianSettings


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


@pytest.fixture
def cluster(tmp_path: Path) -> tuple[LocalKafka, KafkaState]:
    kafka = LocalKafka(tmp_path, tmp_path / "home", brokers=3)
    return kafka, kafka._new_state(None)


def test_three_nodes_form_one_quorum_with_their_own_ports(cluster) -> None:
    kafka, st = cluster
    nodes = st.node_states()
    assert [n.node_id for n in nodes] == [1, 2, 3] and st.brokers == 3
    ports = [p for n in nodes for p in (n.port, n.sasl_port, n.controller_port, n.metrics_port)]
    assert len(set(ports)) == 12 and all(ports)
    configs = [props(kafka._properties(st, kafka.node_dir(3, n.node_id) / "data", n)) for n in nodes]
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    for n, c in zip(nodes, configs):
        assert c["node.id"] == str(n.node_id) and c["process.roles"] == "broker,controller"
        assert c["controller.quorum.voters"] == voters
        assert c["listeners"].startswith(f"PLAINTEXT://127.0.0.1:{n.port},")
        assert c["log.dirs"].endswith(f"node-{n.node_id}/data")
        assert c["offsets.topic.replication.factor"] == "3" and c["transaction.state.log.min.isr"] == "2"
        assert c["default.replication.factor"] == "3"


def test_the_state_names_every_broker_and_the_first_stays_the_compatible_one(cluster) -> None:
    _, st = cluster
    nodes = st.node_states()
    assert st.bootstrap == ",".join(f"127.0.0.1:{n.port}" for n in nodes)
    assert st.metrics_urls == [f"http://127.0.0.1:{n.metrics_port}/metrics" for n in nodes]
    assert st.metrics_url == st.metrics_urls[0]
    assert KafkaState(**json.loads(json.dumps(asdict(st)))).node_states() == nodes  # kafka.json round trip


def test_one_broker_keeps_its_layout(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path, tmp_path / "home")
    st = kafka._new_state(None)
    assert st.nodes == [] and st.brokers == 1 and kafka.log_file == tmp_path / "kafka" / "server.log"
    c = props(kafka._properties(st, tmp_path / "kafka" / "data"))
    assert c["node.id"] == "1" and c["controller.quorum.voters"] == f"1@127.0.0.1:{st.controller_port}"
    assert c["offsets.topic.replication.factor"] == "1" and st.bootstrap == f"127.0.0.1:{st.port}"


def test_dedicated_controllers_are_the_quorum_and_the_brokers_only_brokers(tmp_path: Path) -> None:
    """`guardian-dev up --brokers 3 --controllers 1`: Kafka's production layout, where a controller's
    metadata log is not applied behind a broker creating partition logs."""
    kafka = LocalKafka(tmp_path, tmp_path / "home", brokers=3, controllers=1,
                       capacity=BrokerCapacity(io_threads=1, network_threads=1))
    st = kafka._new_state(None)
    brokers, controllers = st.node_states(), st.controller_states()
    assert [n.node_id for n in brokers] == [1, 2, 3] and [n.node_id for n in controllers] == [101]
    (ctl,) = controllers
    assert (ctl.port, ctl.sasl_port, ctl.metrics_port) == (0, 0, 0) and ctl.controller_port
    assert ctl.controller_port not in {p for n in brokers for p in (n.port, n.sasl_port, n.controller_port,
                                                                    n.metrics_port)}
    assert st.all_states() == brokers + controllers and st.brokers == 3
    assert st.metrics_urls == [n.metrics_url for n in brokers]           # the guardian scrapes the brokers
    c = props(kafka._properties(st, kafka.dir_of(st, 101) / "data", ctl))
    assert c["process.roles"] == "controller" and c["node.id"] == "101"
    assert c["listeners"] == f"CONTROLLER://127.0.0.1:{ctl.controller_port}" and "advertised.listeners" not in c
    assert c["controller.quorum.voters"] == f"101@127.0.0.1:{ctl.controller_port}"
    assert c["log.dirs"].endswith("controller-101/data") and "num.io.threads" not in c   # Kafka's default
    assert c["default.replication.factor"] == "3"   # topics created with defaults take the controller's
    assert c["authorizer.class.name"].endswith("StandardAuthorizer")
    for n in brokers:
        b = props(kafka._properties(st, kafka.dir_of(st, n.node_id) / "data", n))
        assert b["process.roles"] == "broker" and b["controller.quorum.voters"] == c["controller.quorum.voters"]
        assert "CONTROLLER://" not in b["listeners"] and b["controller.listener.names"] == "CONTROLLER"
        assert b["num.io.threads"] == "1"                                  # the stated capacity is the brokers'
    assert KafkaState(**json.loads(json.dumps(asdict(st)))).controller_states() == controllers
    assert kafka.log_of(st, 101) == tmp_path / "kafka" / "controller-101" / "server.log"


@pytest.mark.parametrize("controllers", [-1, 4, True])
def test_a_bad_controller_count_is_a_clear_error(tmp_path: Path, controllers) -> None:
    with pytest.raises(ConfigError, match="dedicated controllers"):
        LocalKafka(tmp_path, tmp_path, brokers=3, controllers=controllers)


@pytest.mark.parametrize("brokers", [0, -1, 10, True])
def test_a_bad_broker_count_is_a_clear_error(tmp_path: Path, brokers) -> None:
    with pytest.raises(ConfigError, match="1 to 9 brokers"):
        LocalKafka(tmp_path, tmp_path, brokers=brokers)
    if not isinstance(brokers, bool):
        with pytest.raises(ValueError):
            DevSettings(brokers=brokers)


def test_env_lists_every_metrics_url_and_keeps_the_first(monkeypatch) -> None:
    urls = ["http://127.0.0.1:1/metrics", "http://127.0.0.1:2/metrics", "http://127.0.0.1:3/metrics"]
    ep = Endpoints(kafka_bootstrap_servers="b", kafka_metrics_url=urls[0], kafka_metrics_urls=urls, redis_url="r")
    out = ep.exports()
    assert out["KAFKA_METRICS_URL"] == urls[0] and out["KAFKA_METRICS_URLS"] == ",".join(urls)
    assert Endpoints(kafka_metrics_url=urls[0]).exports()["KAFKA_METRICS_URLS"] == urls[0]
    for k, v in out.items():
        monkeypatch.setenv(k, v)
    assert external_endpoints().metrics_urls == urls
    # what `eval "$(guardian-dev env)"` gives `guardian run`: it scrapes every broker
    assert GuardianSettings().kafka.metrics_url.split(",") == urls
