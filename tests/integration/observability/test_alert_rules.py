"""The alert rules pass ``promtool check rules`` and ``promtool test rules`` (Debian's prometheus package).

Each alert must have at least one promtool case where it fires and one where
it stays quiet, so no rule is tested only half.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "helm" / "guardian" / "files" / "alerts" / "guardian-alerts.yaml"
TESTS = ROOT / "tests" / "promtool" / "guardian-alerts.test.yaml"
PROMTOOL = shutil.which("promtool")

pytestmark = [pytest.mark.prometheus,
              pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus')")]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules() -> None:
    res = _run("check", "rules", str(ALERTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_unit_tests_pass() -> None:
    res = _run("test", "rules", str(TESTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r}
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts, "no alerts in the rule file"
    assert alerts - fires == set(), f"never shown firing: {sorted(alerts - fires)}"
    assert alerts - quiet == set(), f"never shown quiet: {sorted(alerts - quiet)}"
    assert (fires | quiet) <= alerts, f"tests name unknown alerts: {sorted((fires | quiet) - alerts)}"
