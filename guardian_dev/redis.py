"""A local redis-server with append-only persistence in its own data directory."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from guardian_dev import procs
from guardian.errors import SetupError

Progress = Callable[[str], None]


@dataclass
class RedisState:
    pid: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class LocalRedis:
    def __init__(self, run_dir: Path, port: int = 0, start_timeout_s: float = 30.0) -> None:
        self.run_dir = run_dir
        self.port = port
        self.start_timeout_s = start_timeout_s
        self.data_dir = run_dir / "redis"
        self.state_file = run_dir / "redis.json"
        self.log_file = self.data_dir / "redis.log"

    def state(self) -> RedisState | None:
        try:
            return RedisState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def is_running(self) -> bool:
        st = self.state()
        return bool(st and procs.pid_alive(st.pid) and procs.port_open(st.port))

    def start(self, progress: Progress = lambda _: None) -> RedisState:
        st = self.state()
        if st and procs.pid_alive(st.pid):
            progress(f"Redis already running (pid {st.pid}) on {st.url}")
            self._wait(st)
            return st
        server = shutil.which("redis-server")
        if not server:
            raise SetupError("no `redis-server` on PATH (Debian: apt-get install redis-server), "
                             "or point REDIS_URL at a running Redis.")
        port = self.port or (st.port if st else 0) or procs.free_port()
        procs.check_port_free(port, "Redis")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # appendfsync everysec: at most one second lost on a crash, the usual production trade-off.
        cmd = [server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(self.data_dir),
               "--appendonly", "yes", "--appendfsync", "everysec", "--save", "60 1",
               "--protected-mode", "yes", "--daemonize", "no", "--logfile", ""]
        st = RedisState(pid=procs.spawn(cmd, self.log_file), port=port)
        self.state_file.write_text(json.dumps(asdict(st)))
        progress(f"starting Redis on {st.url} (append-only file in {self.data_dir}) ...")
        self._wait(st)
        return st

    def _wait(self, st: RedisState) -> None:
        import redis

        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if not procs.pid_alive(st.pid):
                break
            try:
                if redis.Redis.from_url(st.url, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.1)
        raise SetupError(f"Redis did not come up on port {st.port}. Last lines of {self.log_file}:\n"
                         f"{procs.tail(self.log_file)}")

    def stop(self) -> bool:
        st = self.state()
        if not st:
            return False
        running = procs.pid_alive(st.pid)
        procs.stop(st.pid)
        return running

    def destroy(self) -> bool:
        stopped = self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        return stopped
