"""Fixtures of the Helm chart tests: a helm binary built from its Go module
(scripts/install-helm.sh, cached under ~/.cache/guardian/bin) and rendered
manifests per values variant."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "guardian"
CI_VALUES = sorted((ROOT / "helm" / "ci").glob("*.yaml"))
# "default" = the chart's own values.yaml alone; the rest are helm/ci/*.yaml.
VARIANTS = ["default"] + [p.stem for p in CI_VALUES]
RELEASE, NAMESPACE = "kwg", "guardian-system"


@dataclass
class Helm:
    binary: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary), *args], env=self.env, capture_output=True,
                              text=True, timeout=120, check=False)

    def template(self, *values_args: str) -> subprocess.CompletedProcess[str]:
        return self.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    # Built from source the first time (minutes, see docs/helm.md), cached after.
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "install-helm.sh")],
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/install-helm.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    binary = Path(proc.stdout.strip().splitlines()[-1])
    home = tmp_path_factory.mktemp("helm-home")
    # Keep helm away from the user's repositories, plugins and kubeconfig.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBECONFIG"))}
    env.update(HELM_CACHE_HOME=str(home / "cache"), HELM_CONFIG_HOME=str(home / "config"),
               HELM_DATA_HOME=str(home / "data"), KUBECONFIG=str(home / "kubeconfig"))
    return Helm(binary, env)


def values_args(variant: str) -> list[str]:
    return [] if variant == "default" else ["-f", str(ROOT / "helm" / "ci" / f"{variant}.yaml")]


def values_of(variant: str) -> dict:
    """The merged values a variant renders with (maps merge, lists replace, as helm does)."""
    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return out
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    if variant == "default":
        return base
    return merge(base, yaml.safe_load((ROOT / "helm" / "ci" / f"{variant}.yaml").read_text()))


@pytest.fixture(scope="session")
def render(helm: Helm) -> Callable[[str], list[dict]]:
    cache: dict[str, list[dict]] = {}

    def _render(variant: str) -> list[dict]:
        if variant not in cache:
            proc = helm.template(*values_args(variant))
            assert proc.returncode == 0, f"helm template ({variant}) failed:\n{proc.stderr}"
            cache[variant] = [d for d in yaml.safe_load_all(proc.stdout) if d]
        return cache[variant]

    return _render


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]
