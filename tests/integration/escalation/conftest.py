"""A real HTTP receiver on 127.0.0.1 standing in for Slack, PagerDuty, a webhook consumer or an agent.

Each path can be scripted with the statuses to answer, in order (then 200 or
the path's default), and can be *held*: requests on a held path wait until
``release(path)``, like a third party that hangs.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from guardian.escalation.senders import RetryPolicy

# Fast but real retries: the backoff path runs, the tests stay short.
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.02, multiplier=2.0, max_delay_s=0.1, timeout_s=5.0)


@dataclass
class Received:
    path: str
    headers: dict[str, str]   # lower-cased names
    body: bytes
    status: int               # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, list[int]] = {}
        self._defaults: dict[str, int] = {}
        self._retry_after: dict[str, str] = {}
        self._gates: dict[str, threading.Event] = {}
        self.holding: dict[str, int] = {}
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver._handle(self, body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def script(self, path: str, statuses: list[int], default: int = 200, retry_after: str | None = None) -> None:
        self._scripts[path] = list(statuses)
        self._defaults[path] = default
        if retry_after is not None:
            self._retry_after[path] = retry_after

    def hold(self, path: str) -> None:
        self._gates[path] = threading.Event()

    def release(self, path: str) -> None:
        self._gates.pop(path, threading.Event()).set()

    def _handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        path = h.path
        gate = self._gates.get(path)
        if gate is not None:
            with self._cond:
                self.holding[path] = self.holding.get(path, 0) + 1
                self._cond.notify_all()
            gate.wait(timeout=60)
            with self._cond:
                self.holding[path] -= 1
        with self._cond:
            script = self._scripts.get(path, [])
            status = script.pop(0) if script else self._defaults.get(path, 200)
            self.requests.append(Received(path, {k.lower(): v for k, v in h.headers.items()}, body, status))
            self._cond.notify_all()
        payload = b'{"status":"success","message":"Event processed"}' if status < 300 else b'{"error":"nope"}'
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            if path in self._retry_after and status >= 400:
                h.send_header("Retry-After", self._retry_after[path])
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up (its timeout) while this request was held: that is the scenario

    def on(self, path: str) -> list[Received]:
        with self._cond:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, n: int, timeout_s: float = 15.0) -> list[Received]:
        """Block until ``n`` requests on ``path`` arrived; fail the test (not assert a time) otherwise."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len([r for r in self.requests if r.path == path]) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{n} request(s) on {path} never arrived; got "
                                         f"{len([r for r in self.requests if r.path == path])}")
                self._cond.wait(left)
            return [r for r in self.requests if r.path == path]

    def wait_holding(self, path: str, n: int = 1, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.holding.get(path, 0) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no request held on {path}")
                self._cond.wait(left)

    def close(self) -> None:
        for gate in list(self._gates.values()):
            gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
