"""Builds the broker plugin jar with Maven, once per source version (cached by a hash of its sources)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from guardian.errors import SetupError

PLUGIN_CLASS = "io.guardian.plugin.GuardianMetricsReporter"
PLUGIN_TOPICS = ("guardian.broker-metrics", "guardian.telemetry")


def plugin_source_dir() -> Path:
    """The Maven module, beside the Python packages in a source checkout."""
    here = Path(__file__).resolve().parents[1] / "broker-plugin"
    if not (here / "pom.xml").exists():
        raise SetupError(f"the broker plugin's sources are not at {here}: run from a source checkout")
    return here


def _source_hash(src: Path) -> str:
    h = hashlib.sha256()
    for path in sorted([src / "pom.xml", *(src / "src" / "main").rglob("*.java")]):
        h.update(path.relative_to(src).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def ensure_plugin_jar(home: Path, progress: Callable[[str], None] = lambda _: None,
                      run_tests: bool = False) -> Path:
    """The plugin jar for the current sources, built with Maven when missing."""
    src = plugin_source_dir()
    jar = home / "broker-plugin" / f"guardian-broker-plugin-{_source_hash(src)}.jar"
    if jar.exists() and not run_tests:
        return jar
    mvn = shutil.which("mvn")
    if not mvn:
        raise SetupError("no `mvn` on PATH: the broker plugin is built with Maven (apt-get install maven)")
    progress(f"building the broker plugin with Maven{' (with its unit tests)' if run_tests else ''} ...")
    cmd = [mvn, "-q", "-B", "package"] + ([] if run_tests else ["-DskipTests"])
    proc = subprocess.run(cmd, cwd=src, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise SetupError(f"building the broker plugin failed:\n{tail}")
    built = src / "target" / "guardian-broker-plugin-0.1.0.jar"
    jar.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(built, jar)
    return jar


def plugin_properties(bootstrap: str, interval_ms: int = 1000) -> dict[str, str]:
    """Broker properties that load the plugin beside the JMX reporter."""
    return {
        "metric.reporters": f"org.apache.kafka.common.metrics.JmxReporter,{PLUGIN_CLASS}",
        "guardian.plugin.bootstrap.servers": bootstrap,
        "guardian.plugin.interval.ms": str(interval_ms),
    }
