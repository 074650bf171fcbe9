"""Building kube-apiserver from the Go module proxy: the generated module and the errors a user sees."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

from guardian_dev.kubernetes import (
    DEFAULT_VERSION,
    build_module_files,
    ensure_kubernetes_binaries,
    find_go,
    staging_modules,
)
from guardian.errors import SetupError

pytestmark = [pytest.mark.integration, pytest.mark.kubernetes]


@pytest.fixture(scope="module")
def release_go_mod() -> str:
    """The real go.mod of k8s.io/kubernetes at the default version (from Go's module cache or proxy)."""
    go = find_go()
    out = subprocess.run([go, "mod", "download", "-json", f"k8s.io/kubernetes@v{DEFAULT_VERSION}"],
                         capture_output=True, text=True, check=True, cwd=tempfile.gettempdir(),
                         env={**os.environ, "GOTOOLCHAIN": "local"})
    return open(json.loads(out.stdout)["GoMod"]).read()


def test_every_staging_module_is_replaced_by_its_published_version(release_go_mod):
    staging = staging_modules(release_go_mod)
    assert {"k8s.io/api", "k8s.io/apiserver", "k8s.io/client-go", "k8s.io/apimachinery"} <= set(staging)
    assert "\tk8s.io/apiserver v0.0.0\n" in release_go_mod  # why the replacement is needed at all
    minor, patch = DEFAULT_VERSION.split(".")[1:]
    go_mod = build_module_files(DEFAULT_VERSION, release_go_mod)["go.mod"]
    assert f"require k8s.io/kubernetes v{DEFAULT_VERSION}" in go_mod
    for module in staging:
        assert f"\t{module} => {module} v0.{minor}.{patch}\n" in go_mod
    assert "./staging" not in go_mod


def test_a_missing_go_toolchain_is_a_clear_setup_error(monkeypatch):
    monkeypatch.delenv("GUARDIAN_GO", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SetupError, match="needs a Go toolchain"):
        find_go(candidates=())
    monkeypatch.setenv("GUARDIAN_GO", "/nonexistent/go")
    with pytest.raises(SetupError, match="GUARDIAN_GO=/nonexistent/go is not a file"):
        find_go()


def test_a_failed_build_names_the_step_and_shows_the_log(tmp_path):
    # No such release on the proxy: the first step fails; the error carries the log's tail.
    with pytest.raises(SetupError) as info:
        ensure_kubernetes_binaries(tmp_path, "1.34.999")
    message = str(info.value)
    assert "downloading k8s.io/kubernetes v1.34.999 failed" in message
    assert "last lines of" in message and "build.log" in message
    assert "v1.34.999" in (tmp_path / "kubernetes-1.34.999" / "build.log").read_text()
    assert not (tmp_path / "kubernetes-1.34.999" / "bin").exists()
