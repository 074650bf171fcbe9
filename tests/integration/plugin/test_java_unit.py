"""The plugin's own JUnit tests, run with Maven so `make test` covers the Java side too."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from guardian_dev.plugin import plugin_source_dir

pytestmark = pytest.mark.integration


@pytest.mark.skipif(shutil.which("mvn") is None, reason="Maven is not installed (make setup installs it)")
def test_plugin_junit_suite_passes() -> None:
    src = plugin_source_dir()
    reports = src / "target" / "surefire-reports"
    shutil.rmtree(reports, ignore_errors=True)
    proc = subprocess.run(["mvn", "-q", "-B", "test"], cwd=src, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for xml in reports.glob("TEST-*.xml"):
        suite = ET.parse(xml).getroot()
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    print(f"JUnit: {totals}")
    assert totals["tests"] >= 8
    assert totals["failures"] == 0 and totals["errors"] == 0
