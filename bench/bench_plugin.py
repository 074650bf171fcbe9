"""Broker throughput with and without the guardian broker plugin.

Two local brokers run side by side (one plain, one with the plugin loaded and
every client subscribed to KIP-714 pushes at 1 s); Kafka's own
ProducerPerformance drives each in turn, alternating, so slow drift of the
machine hits both equally. Reported: records/s per run, the medians, and
``overhead_pct``: the median over rounds of ``100 * (off - on) / off``, each
round's two runs taken back to back (the median of per-mode medians is reported too).

    guardian-dev bench plugin --json            # or: python -m bench.bench_plugin
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from guardian_dev.kafka import check_java, ensure_jars
from guardian_dev.security import ensure_topics
from guardian_dev.stack import DevStack
from guardian.settings import DevSettings

_RESULT = re.compile(r"(\d+) records sent, ([\d.]+) records/sec")


def producer_performance(lib: Path, bootstrap: str, topic: str, records: int, size: int) -> float:
    """Runs ProducerPerformance once; returns records per second."""
    cmd = [check_java(), "-Xmx512m", "-cp", str(lib / "*"), "org.apache.kafka.tools.ProducerPerformance",
           "--topic", topic, "--num-records", str(records), "--record-size", str(size), "--throughput", "-1",
           "--producer-props", f"bootstrap.servers={bootstrap}", "acks=1", "linger.ms=5", "batch.size=65536",
           "client.id=bench-perf"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    matches = _RESULT.findall(out.stdout)
    if out.returncode != 0 or not matches:
        raise RuntimeError(f"ProducerPerformance failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return float(matches[-1][1])


def run(rounds: int = 5, records: int = 1_000_000, size: int = 100, subscribe: bool = True,
        say: Callable[[str], None] = lambda _: None) -> dict:
    """``subscribe``: every client pushes KIP-714 metrics at 1 s to the plugin's broker (the whole cost,
    the client's share included); without it only the plugin's broker-side work is measured."""
    settings = DevSettings(tenants=["tenant-a"])
    lib, _ = ensure_jars(settings.home, settings.kafka_version, say)
    results: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="bench-plugin-") as tmp:
        stacks = {mode: DevStack(settings, run_dir=Path(tmp) / mode, use_environment=False,
                                 broker_plugin=(mode == "on")) for mode in ("off", "on")}
        try:
            endpoints = {mode: s.up(progress=say) for mode, s in stacks.items()}
            from guardian.clients.telemetry import Subscription, TelemetrySubscriptions

            if subscribe:
                with TelemetrySubscriptions(endpoints["on"].kafka_bootstrap_servers) as subs:
                    subs.subscribe(Subscription("bench-all", interval_ms=1000))
            for ep in endpoints.values():
                ensure_topics(ep.kafka_bootstrap_servers, {"bench.perf": 3})
            for r in range(rounds):
                for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                    rate = producer_performance(lib, endpoints[mode].kafka_bootstrap_servers, "bench.perf",
                                                records, size)
                    results[mode].append(rate)
                    say(f"round {r + 1}/{rounds} plugin {mode}: {rate:,.0f} records/s")
                    time.sleep(1)
        finally:
            for s in stacks.values():
                s.down(progress=lambda _: None, purge=True)
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    # Each round runs both modes back to back: the per-round ratio cancels most of the machine's drift.
    paired = [100 * (o - n) / o for o, n in zip(results["off"], results["on"])]
    return {"overhead_pct": round(statistics.median(paired), 2), "paired_overhead_pct": [round(p, 2) for p in paired],
            "overhead_of_medians_pct": round(100 * (off - on) / off, 2), "median_records_per_s_off": off,
            "median_records_per_s_on": on, "runs_off": results["off"], "runs_on": results["on"],
            "records_per_run": records, "record_size": size, "rounds": rounds,
            "telemetry_subscribed": subscribe}


if __name__ == "__main__":
    print(json.dumps(run(say=print), indent=2))
