"""A real kube-apiserver (plus etcd) for the session, built from Go modules once and cached.

The cold build (10-20 min on 2 cores) runs at the end of collection, before
any test starts, so it is not charged to one test's timeout; ``make test``
runs ``python -m guardian_dev.kubernetes build`` first anyway. Later runs find
the binaries under ``<cache>/kubernetes-<version>/bin`` and start in seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from guardian.errors import SetupError

_build: dict[str, Any] = {}


def _cache_dir() -> Path:
    from guardian.settings import GuardianSettings

    return GuardianSettings().dev.home


def _version() -> str:
    from guardian_dev.kubernetes import DEFAULT_VERSION

    return os.environ.get("GUARDIAN_KUBERNETES_VERSION", DEFAULT_VERSION)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(item.get_closest_marker("kubernetes") for item in session.items):
        return
    from guardian_dev.kubernetes import binaries_present, ensure_kubernetes_binaries, find_go

    cache, version = _cache_dir(), _version()
    if binaries_present(cache, version):
        _build["bin"] = ensure_kubernetes_binaries(cache, version)
        return
    try:
        find_go()
    except SetupError as exc:
        _build["skip"] = f"no kube-apiserver binaries cached and no Go toolchain to build them: {exc}"
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    say = (lambda m: reporter.write_line(m)) if reporter else (lambda m: None)
    try:
        _build["bin"] = ensure_kubernetes_binaries(cache, version, progress=say)
    except SetupError as exc:
        _build["error"] = exc  # a failed build fails the tests, it does not skip them


@dataclass
class KubeEnv:
    """The running API server: an admin client for set-up and checks, and the guardian's own credentials."""

    cluster: Any                 # guardian_dev.kubernetes.LocalKubernetes
    admin: Any                   # kubernetes.client.ApiClient as system:masters
    guardian_kubeconfig: Path    # the guardian's service account, bound to the chart's pod-isolation Role
    namespace: str               # where the guardian may act
    other_namespace: str         # where it may not

    def guardian_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.guardian_kubeconfig))


@pytest.fixture(scope="session")
def kubernetes(tmp_path_factory: pytest.TempPathFactory) -> KubeEnv:
    if "skip" in _build:
        pytest.skip(_build["skip"])
    if "error" in _build:
        raise _build["error"]
    from kubernetes import config

    from guardian_dev.kubernetes import (
        OTHER_NAMESPACE,
        TENANT_NAMESPACE,
        LocalKubernetes,
        ensure_kubernetes_binaries,
        seed,
    )

    bins = _build.get("bin") or ensure_kubernetes_binaries(_cache_dir(), _version())
    cluster = LocalKubernetes(tmp_path_factory.mktemp("kubernetes"), bins)
    cluster.start()
    try:
        guardian_kubeconfig = seed(cluster)
        admin = config.new_client_from_config(config_file=str(cluster.kubeconfig_path))
        yield KubeEnv(cluster, admin, guardian_kubeconfig, TENANT_NAMESPACE, OTHER_NAMESPACE)
        admin.close()
    finally:
        cluster.stop()
