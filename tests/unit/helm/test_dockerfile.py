"""The Dockerfile agrees with the project and the chart. (No container
engine on these machines: the image itself is not built here.)"""

from __future__ import annotations

import fnmatch
import re
import tomllib

import yaml

from .conftest import CHART, ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
LINES = [ln.strip() for ln in DOCKERFILE.splitlines() if ln.strip() and not ln.strip().startswith("#")]
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _instr(name: str) -> list[str]:
    return [ln[len(name) + 1:].strip() for ln in LINES if ln.upper().startswith(name + " ")]


def test_multi_stage_on_a_pinned_python_311_slim_base():
    froms = _instr("FROM")
    assert len(froms) >= 2, "build and runtime stages"
    (arg,) = [a for a in _instr("ARG") if a.startswith("PYTHON_IMAGE=")]
    image = arg.split("=", 1)[1]
    # Pinned to a patch release, not a floating tag like 3.11-slim or latest.
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)
    assert any("COPY --from=build" in ln for ln in LINES), "the runtime stage copies from the build stage"


def test_runs_as_the_non_root_user_the_chart_expects():
    user = _instr("USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert int(uid) == VALUES["podSecurityContext"]["runAsUser"]
    assert int(gid or uid) == VALUES["podSecurityContext"]["runAsGroup"]


def test_entrypoint_and_ports_match_the_chart():
    assert _instr("ENTRYPOINT") == ['["guardian"]']
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "guardian" in project["project"]["scripts"]
    exposed = {int(p.split("/")[0]) for e in _instr("EXPOSE") for p in e.split()}
    assert {VALUES["api"]["port"], VALUES["metricsPort"]} <= exposed


def test_every_package_is_copied_and_not_ignored():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.name for p in ROOT.iterdir()
                if (p / "__init__.py").exists() and any(fnmatch.fnmatch(p.name, pat) for pat in patterns)}
    assert packages == {"guardian"}, "only the guardian package goes into the wheel and the image"
    for dev_tool in ("guardian_dev", "bench"):
        assert (ROOT / dev_tool / "__init__.py").exists()
        assert dev_tool in {ln.strip().rstrip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()}
    copied = {c.split()[0].rstrip("/") for c in _instr("COPY") if not c.startswith("--")}
    ignored = {ln.strip().rstrip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    for package in packages:
        assert package in copied, f"{package}/ is a package (pyproject) but the Dockerfile does not COPY it"
        assert package not in ignored, f"{package}/ is excluded by .dockerignore"
    # pyproject's readme must reach the build stage too, or setuptools refuses to build.
    assert any("README.md" in c for c in _instr("COPY"))
    assert "README.md" not in ignored
