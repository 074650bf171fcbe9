"""`guardian-dev up` is idempotent and `guardian-dev down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guardian_dev import procs

pytestmark = pytest.mark.integration


def _guardian_dev(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env["GUARDIAN_DEV__HOME"] = str(home)
    # Share the jar cache so this test does not resolve Maven again.
    return subprocess.run([sys.executable, "-m", "guardian_dev", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _pids(home: Path) -> tuple[int, int]:
    run = home / "run"
    return (json.loads((run / "kafka.json").read_text())["pid"], json.loads((run / "redis.json").read_text())["pid"])


def _descendants_alive(pid: int) -> bool:
    out = subprocess.run(["pgrep", "-s", str(pid)], capture_output=True, text=True).stdout.split()
    return any(procs.pid_alive(int(p)) for p in out)


@pytest.fixture
def home(tmp_path) -> Path:
    """A fresh guardian home that shares the jar cache, so no test resolves Maven again."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "guardian"
    home = tmp_path / "home"
    home.mkdir()
    for entry in cache.glob("kafka-*"):
        (home / entry.name).symlink_to(entry)
    return home


def test_up_twice_leaves_one_broker_and_down_leaves_no_process(home) -> None:
    first = _guardian_dev(home, "up")
    assert first.returncode == 0, first.stderr
    kafka_pid, redis_pid = _pids(home)
    try:
        second = _guardian_dev(home, "up")
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert _pids(home) == (kafka_pid, redis_pid)

        env = json.loads(_guardian_dev(home, "env", "--json").stdout)
        for key in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SASL_BOOTSTRAP_SERVERS", "KAFKA_METRICS_URL", "REDIS_URL"):
            assert env[key], key
        assert set(env["tenants"]) >= {"tenant-a", "tenant-b"}
        status = _guardian_dev(home, "status")
        assert "kafka  running" in status.stdout and "redis  running" in status.stdout
    finally:
        down = _guardian_dev(home, "down")
    assert down.returncode == 0, down.stderr
    for pid in (kafka_pid, redis_pid):
        assert not procs.pid_alive(pid)
        assert not _descendants_alive(pid)
    assert "stopped" in _guardian_dev(home, "status").stdout


def test_busy_port_is_a_clear_error(home) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env_port = {"GUARDIAN_DEV__REDIS_PORT": str(port)}
        os.environ.update(env_port)
        try:
            out = _guardian_dev(home, "up")
        finally:
            for k in env_port:
                os.environ.pop(k)
        _guardian_dev(home, "down")
    assert out.returncode == 2
    assert f"port {port}" in out.stderr and "busy" in out.stderr
    assert "Traceback" not in out.stderr
    # Nothing was started before the port check refused.
    assert not (home / "run" / "kafka.json").exists()


def test_three_brokers_up_env_status_and_down_handle_every_node(home) -> None:
    import httpx

    up = _guardian_dev(home, "up", "--brokers", "3")
    assert up.returncode == 0, up.stderr
    pids = [n["pid"] for n in json.loads((home / "run" / "kafka.json").read_text())["nodes"]]
    try:
        assert len(set(pids)) == 3 and all(procs.pid_alive(p) for p in pids)
        env = json.loads(_guardian_dev(home, "env", "--json").stdout)
        urls = env["KAFKA_METRICS_URLS"].split(",")
        assert len(urls) == 3 and env["KAFKA_METRICS_URL"] == urls[0], env
        assert len(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == 3
        for url in urls:   # each broker its own exporter, each with the sensor-enabling default quota's sensors
            assert "kafka_server_brokertopicmetrics" in httpx.get(url, timeout=10).text, url
        status = json.loads(_guardian_dev(home, "status", "--json").stdout)["kafka"]
        assert status["running"] and [b["running"] for b in status["brokers"]] == [True, True, True]
        assert [b["metrics_url"] for b in status["brokers"]] == urls
        other = _guardian_dev(home, "up")   # one broker asked of a running three
        assert other.returncode == 2 and "3 broker(s)" in other.stderr and "Traceback" not in other.stderr
    finally:
        down = _guardian_dev(home, "down")
    assert down.returncode == 0, down.stderr
    for pid in pids:
        assert not procs.pid_alive(pid) and not _descendants_alive(pid)
    # the stopped cluster's data holds a 3-voter quorum: one broker on it is refused, saying how to start over
    one = _guardian_dev(home, "up")
    assert one.returncode == 2 and "--purge" in one.stderr and "Traceback" not in one.stderr
    assert _guardian_dev(home, "down", "--purge").returncode == 0


def test_zero_brokers_is_a_clear_error(home) -> None:
    out = _guardian_dev(home, "up", "--brokers", "0")
    assert out.returncode == 2 and "--brokers must be 1 to 9, got 0" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (home / "run" / "kafka.json").exists()
