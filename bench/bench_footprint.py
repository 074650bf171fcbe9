"""The guardian's own cost to the brokers it watches: broker CPU with the guardian off and on.

    python -m bench.bench_footprint [--run-dir DIR] [--seconds 45] [--workers 2]

The brokers are a local cluster `guardian-dev up` (or the incident drill) started: their processes are
in ``<run-dir>/kafka.json`` (default: the dev stack's, ``~/.cache/guardian/run``; the drill's own is
``~/.cache/guardian/run-drill``). With no client traffic, for ``seconds`` each, after ``warm_s`` of
warm-up for the phases that start something:

* ``idle``: nothing reads the brokers;
* ``scrape``: every broker's JMX exporter page fetched once a second, as the scrape collector does
  (the exporter runs inside the broker: its cost is the broker's);
* ``guardian``: ``guardian run`` with its collectors (scrape every 1 s, Admin-API poll every 2 s),
  its stream processors (exactly-once) and its engine, and ``workers - 1`` more ``guardian run
  --collectors ''``, as the drill runs them, on topics of their own (2 partitions, as the drill's).

Each phase gives the brokers' CPU (the sum of their processes' user + system time, per second: 1.0 is
one core) and the guardian processes'. Figures go to docs/BENCHMARKS.md; nothing is asserted on time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

Say = Callable[[str], None]
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds of the processes ``pids`` so far (a process that is gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])   # utime, stime (fields 14 and 15 of stat)
    return total / _TICK


def measure(pids: Callable[[], list[int]], seconds: float) -> float:
    """CPU of ``pids()`` over ``seconds``, in cores."""
    before, t0 = cpu_seconds(pids()), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pids()) - before) / (time.monotonic() - t0)


def _scraper(urls: list[str], stop: threading.Event) -> threading.Thread:
    import httpx

    def loop() -> None:
        with httpx.Client(timeout=10.0) as client:
            while not stop.is_set():
                t0 = time.monotonic()
                threads = [threading.Thread(target=client.get, args=(u,)) for u in urls]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                stop.wait(max(0.0, 1.0 - (time.monotonic() - t0)))

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def _guardian_env(exports: dict[str, str], run: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
    env.update(exports)
    env.update({"GUARDIAN_INGEST__APP_ID": run, "GUARDIAN_REDIS__PREFIX": f"{run}:",
                "GUARDIAN_TOPICS__METRICS": f"{run}.metrics", "GUARDIAN_TOPICS__METRICS_DLQ": f"{run}.metrics.dlq",
                "GUARDIAN_TOPICS__DETECTIONS": f"{run}.detections", "GUARDIAN_TOPICS__DECISIONS": f"{run}.decisions",
                "GUARDIAN_TOPICS__PARTITIONS": "2"})
    return env


def run(run_dir: Path | None = None, seconds: float = 45.0, warm_s: float = 20.0, workers: int = 2,
        say: Say = print) -> dict[str, Any]:
    from guardian_dev.kafka import KafkaState
    from guardian_dev.stack import Endpoints
    from guardian.settings import GuardianSettings

    run_dir = run_dir or GuardianSettings().dev.home / "run"
    state = KafkaState(**json.loads((run_dir / "kafka.json").read_text()))
    ep = Endpoints(**json.loads((run_dir / "endpoints.json").read_text()))
    brokers = [n.pid for n in state.all_states()]
    out: dict[str, Any] = {"brokers": state.brokers, "controllers": len(state.controllers),
                           "capacity": state.capacity, "seconds": seconds, "workers": workers,
                           "load_average_start": os.getloadavg()}
    say(f"{state.brokers} broker(s) ({run_dir}), {seconds:.0f} s a phase")
    out["idle"] = {"brokers_cores": round(measure(lambda: brokers, seconds), 3)}
    say(f"  idle: brokers {out['idle']['brokers_cores']:.3f} cores")
    stop = threading.Event()
    _scraper(state.metrics_urls, stop)
    time.sleep(warm_s / 4)
    out["scrape"] = {"brokers_cores": round(measure(lambda: brokers, seconds), 3)}
    stop.set()
    say(f"  scrape every 1 s: brokers {out['scrape']['brokers_cores']:.3f} cores")
    env = _guardian_env(ep.exports(), f"bench-footprint-{uuid.uuid4().hex[:8]}")
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for i in range(workers):
                cmd = [sys.executable, "-m", "guardian.app.cli", "run", "--worker-id", f"footprint-{i + 1}"]
                if i:
                    cmd += ["--collectors", ""]
                log = open(Path(tmp) / f"guardian-{i + 1}.log", "wb")   # noqa: SIM115 - closed with the process
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
            time.sleep(warm_s)
            dead = [p.args for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"guardian exited during warm-up: {dead}; logs in {tmp}: "
                                   + (Path(tmp) / "guardian-1.log").read_text(errors="replace")[-1500:])
            t_b0, t_g0, t0 = cpu_seconds(brokers), cpu_seconds(p.pid for p in procs), time.monotonic()
            time.sleep(seconds)
            span = time.monotonic() - t0
            out["guardian"] = {"brokers_cores": round((cpu_seconds(brokers) - t_b0) / span, 3),
                               "guardian_cores": round((cpu_seconds(p.pid for p in procs) - t_g0) / span, 3)}
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
    say(f"  guardian on ({workers} process(es)): brokers {out['guardian']['brokers_cores']:.3f} cores, "
        f"guardian {out['guardian']['guardian_cores']:.3f} cores")
    out["load_average_end"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, help="the local cluster's run directory (default: the dev stack's)")
    p.add_argument("--seconds", type=float, default=45.0)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    print(json.dumps(run(args.run_dir, args.seconds, workers=args.workers,
                         say=lambda m: print(m, file=sys.stderr))))


if __name__ == "__main__":
    main()
