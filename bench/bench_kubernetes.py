"""Benchmark: the local kube-apiserver (warm start) and pod isolation against it.

Measures, with the binaries already built (a cold build is timed separately,
see docs/BENCHMARKS.md): the cache lookup, a start on a fresh run directory
(etcd initialises its data) until ``/readyz``, a restart on existing data,
seeding, and the pod actuator's observe+apply+verify and revert as the
guardian's service account.

    python bench/bench_kubernetes.py --json [--starts 3] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1)))))]


def run(starts: int = 3, rounds: int = 30, say: Callable[[str], None] = print) -> dict[str, Any]:
    from guardian_dev.kubernetes import (
        DEFAULT_VERSION,
        TENANT_NAMESPACE,
        LocalKubernetes,
        ensure_kubernetes_binaries,
        seed,
        tenant_pod,
    )
    from guardian.settings import GuardianSettings

    t = time.monotonic()
    bins = ensure_kubernetes_binaries(GuardianSettings().dev.home, DEFAULT_VERSION, progress=say)
    lookup = time.monotonic() - t
    fresh, restart, seeding = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(starts):
            cluster = LocalKubernetes(Path(tmp) / f"run{i}", bins)
            t = time.monotonic()
            cluster.start()
            fresh.append(time.monotonic() - t)
            t = time.monotonic()
            seed(cluster)
            seeding.append(time.monotonic() - t)
            cluster.stop()
            t = time.monotonic()
            cluster.start()
            restart.append(time.monotonic() - t)
            if i < starts - 1:
                cluster.stop()
        try:
            apply_s, revert_s = _actuator_rounds(cluster, rounds, tenant_pod, TENANT_NAMESPACE)
        finally:
            cluster.stop()
    return {"version": DEFAULT_VERSION, "cache_lookup_s": round(lookup, 3),
            "fresh_start_to_ready_p50_s": round(statistics.median(fresh), 2),
            "fresh_start_to_ready_max_s": round(max(fresh), 2),
            "restart_to_ready_p50_s": round(statistics.median(restart), 2),
            "seed_p50_s": round(statistics.median(seeding), 2),
            "isolate_apply_verified_p50_s": round(_pct(apply_s, 50), 4),
            "isolate_apply_verified_p95_s": round(_pct(apply_s, 95), 4),
            "isolate_revert_p50_s": round(_pct(revert_s, 50), 4),
            "isolate_revert_p95_s": round(_pct(revert_s, 95), 4),
            "starts": starts, "rounds": rounds}


def _actuator_rounds(cluster: Any, rounds: int, tenant_pod: Callable, ns: str) -> tuple[list[float], list[float]]:
    from kubernetes import client, config

    from guardian.actuators.pod import PodActuator

    admin = config.new_client_from_config(config_file=str(cluster.kubeconfig_path))
    api = config.new_client_from_config(config_file=str(cluster.guardian_kubeconfig_path))
    actuator = PodActuator(api)
    core = client.CoreV1Api(admin)
    apply_s, revert_s = [], []
    try:
        for i in range(rounds + 1):
            name = f"bench-{i}"
            core.create_namespaced_pod(ns, tenant_pod(name, {"app": name}, name, "User:bench"))
            plan = actuator.plan({"namespace": ns, "pod": name}, {}, f"bench-{i}")
            t = time.monotonic()
            before = actuator.observe(plan)
            actuator.apply(plan)
            assert actuator.verify(plan)
            a = time.monotonic() - t
            t = time.monotonic()
            actuator.revert(plan, before)
            r = time.monotonic() - t
            if i:  # the first round warms connections up
                apply_s.append(a)
                revert_s.append(r)
    finally:
        api.close()
        admin.close()
    return apply_s, revert_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    result = run(args.starts, args.rounds, say=lambda m: None if args.json else print(m))
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
