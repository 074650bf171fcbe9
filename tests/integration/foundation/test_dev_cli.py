"""`guardian dev up` is idempotent and `dev down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guardian.dev import procs

pytestmark = pytest.mark.integration


def _guardian(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env["GUARDIAN_DEV__HOME"] = str(home)
    # Share the jar cache so this test does not resolve Maven again.
    return subprocess.run([sys.executable, "-m", "guardian.cli", *args], env=env, capture_output=True,
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
    first = _guardian(home, "dev", "up")
    assert first.returncode == 0, first.stderr
    kafka_pid, redis_pid = _pids(home)
    try:
        second = _guardian(home, "dev", "up")
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert _pids(home) == (kafka_pid, redis_pid)

        env = json.loads(_guardian(home, "dev", "env", "--json").stdout)
        for key in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SASL_BOOTSTRAP_SERVERS", "KAFKA_METRICS_URL", "REDIS_URL"):
            assert env[key], key
        assert set(env["tenants"]) >= {"tenant-a", "tenant-b"}
        status = _guardian(home, "dev", "status")
        assert "kafka  running" in status.stdout and "redis  running" in status.stdout
    finally:
        down = _guardian(home, "dev", "down")
    assert down.returncode == 0, down.stderr
    for pid in (kafka_pid, redis_pid):
        assert not procs.pid_alive(pid)
        assert not _descendants_alive(pid)
    assert "stopped" in _guardian(home, "dev", "status").stdout


def test_busy_port_is_a_clear_error(home) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env_port = {"GUARDIAN_DEV__REDIS_PORT": str(port)}
        os.environ.update(env_port)
        try:
            out = _guardian(home, "dev", "up")
        finally:
            for k in env_port:
                os.environ.pop(k)
        _guardian(home, "dev", "down")
    assert out.returncode == 2
    assert f"port {port}" in out.stderr and "busy" in out.stderr
    assert "Traceback" not in out.stderr
    # Nothing was started before the port check refused.
    assert not (home / "run" / "kafka.json").exists()
